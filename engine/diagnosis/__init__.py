"""What went wrong and what to do: rules over logs and exit status, live metric trends, the
per-run doctor, and the memory advisor. May import engine.core, engine.runs and engine.metrics."""
