"""The UI process's garbage collector, set for a long-lived app that repaints every second or two.

Once started, the process holds over 100k objects (textual, rich, plotext, numpy, the app's
widgets) that live as long as it does. CPython's full collection walks every one of them: while
4 runs were watched, one came about every minute and took 100-400 ms, the largest single cost of
a minute of watching; the young generation was collected about twice a second (700 allocations
of containers; Textual allocates at every message). Frozen once the app's panes are mounted,
those objects are left out of every later collection (they are never garbage), and the young
generation is collected every YOUNG allocations. Cyclic garbage is still collected, a little
later; everything else is freed by reference counting as before. Once per process: the tests
start many apps in one."""

from __future__ import annotations

import gc

YOUNG = 7000  # allocations between young collections (CPython's default: 700)

_settled = False


def settle() -> None:
    global _settled
    if _settled:
        return
    _settled = True
    gc.freeze()
    young, *older = gc.get_threshold()
    if young:  # 0: collection is off (the user's choice); left as it is
        gc.set_threshold(max(young, YOUNG), *older)
