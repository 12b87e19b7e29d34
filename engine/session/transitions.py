"""What a watcher has not yet told about a run: its diagnoses of kinds not told before, and its
end (once). A pure function of (what was told, the run now), shared by `urbanrun events` and the
TUI's notifications, so both tell the same things, each once: a diagnosis that comes, goes and
comes back (a live trend) is told the first time only."""

from __future__ import annotations

from dataclasses import dataclass

from urbanrun.engine.runs.store import CLEAN_ENDS


@dataclass(frozen=True)
class Told:
    """What has been told about one run so far."""
    kinds: frozenset = frozenset()
    ended: bool = False


@dataclass(frozen=True)
class News:
    diagnoses: tuple = ()  # the diagnoses (dicts) of kinds not told before, in the run's order
    ended: bool = False  # the run ended since the last look

    def __bool__(self) -> bool:
        return bool(self.diagnoses) or self.ended


def transition(told: Told, active: bool, diagnoses) -> tuple[Told, News]:
    """What is new about a run now active (or not) with these diagnoses, and what is then told."""
    kinds, new = set(told.kinds), []
    for d in diagnoses:
        if d.get("kind") not in kinds:
            kinds.add(d.get("kind"))
            new.append(d)
    ended = not active and not told.ended
    return Told(frozenset(kinds), told.ended or ended), News(tuple(new), ended)


def failed(status: str, diagnoses=()) -> bool:
    """A finished run that did not end well: a non-zero exit, killed, lost, or an error diagnosis."""
    return status not in CLEAN_ENDS or any(d.get("severity") == "error" for d in diagnoses)
