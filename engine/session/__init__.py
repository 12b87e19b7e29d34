"""The polled engine loop (one poll turns sources into events and feeds the one State), the
session recorder and replay, a run's end (summary, diagnosis, notes) and import of foreign runs.
May import every engine subpackage except cli."""
