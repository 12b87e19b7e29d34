"""Metrics from files: the byte-offset follower, per-format parsers, discovery of a run's
metric sources, and the per-run followers that turn new bytes into events.
May import engine.core and engine.runs (file names of a run folder)."""
