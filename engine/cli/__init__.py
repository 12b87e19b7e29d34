"""The command line: one module per command group; `main` parses and dispatches. Sits on top
of the engine; imports the TUI only when it is asked for."""
