"""The scratchpad protocol: dated notes files under one lock, and the auto-log of launches, ends,
diagnoses and kills. May import engine.core and engine.runs."""
