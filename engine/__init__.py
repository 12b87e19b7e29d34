"""urbanrun's engine: everything that works without a terminal.

It never imports textual or torch. Subpackages, lowest layer first (each may import only the
layers below it, checked by import-linter contracts in pyproject.toml):
core (events, the reducer, series, config) <- runs, metrics, gpu (sources of facts) <- diagnosis,
notes (what is made of those facts) <- session (the polled loop) <- cli (and the TUI beside it)."""
