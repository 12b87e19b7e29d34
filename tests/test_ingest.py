"""Metric points into the series: the column-wise path (a batch whose points all have the same
names, each always a number or never one) gives exactly what the value-by-value path gives, for
any batch; batches it cannot take go the value-by-value way unchanged."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from urbanrun.engine.core.state import RunState, _add_columns, _add_rows, add_points

NAMES = ["step", "epoch", "time", "loss", "lr", "val/acc", "phase"]
values = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.none(), st.text(max_size=3))


def _summary(run: RunState) -> dict:
    out = {"points_total": run.points_total, "formats": dict(run.metric_formats)}
    for name, series in run.metrics.items():
        steps, times, vals = series.steps, series.times, series.values
        out[name] = _nan_free([series.count, series.best, series.best_step, series.worst, series.last,
                               series.first_step, *steps.tolist(), *times.tolist(), *vals.tolist()])
    return out


def _nan_free(items: list) -> list:
    return ["nan" if isinstance(v, float) and math.isnan(v) else v for v in items]


def _run() -> RunState:
    return RunState(record={"id": "r", "status": "running"})


@settings(max_examples=300, deadline=None)
@given(names=st.lists(st.sampled_from(NAMES), min_size=0, max_size=5, unique=True),
       rows=st.integers(1, 30), data=st.data(), fmt=st.sampled_from(["jsonl", "log"]),
       before=st.integers(0, 3))
def test_columns_and_rows_give_the_same_series(names, rows, data, fmt, before):
    kinds = {name: data.draw(st.sampled_from(["int", "float", "mixed", "text"])) for name in names}
    draw = {"int": st.integers(-5, 10**6), "float": st.floats(allow_nan=True, allow_infinity=True),
            "mixed": values, "text": st.one_of(st.text(max_size=3), st.none(), st.booleans())}
    points = [{name: data.draw(draw[kinds[name]]) for name in names} for _ in range(rows)]
    if data.draw(st.booleans()) and points:  # now and then a point with a name more or less
        points[-1] = {**points[-1], "extra": 1.5} if data.draw(st.booleans()) else dict(list(points[-1].items())[1:])
    a, b = _run(), _run()
    for run in (a, b):  # earlier points (a log-fed name a structured source replaces, a running count)
        _add_rows(run, [{"loss": 2.0}] * before, "log", 1.0)
    taken = _add_columns(a, points, fmt, 7.0)
    if not taken:
        assert _summary(a) == _summary(b)  # nothing changed: the rows path takes it
        _add_rows(a, points, fmt, 7.0)
    _add_rows(b, points, fmt, 7.0)
    assert _summary(a) == _summary(b)


def test_a_writers_usual_batch_goes_by_columns():
    points = [{"step": i, "time": 1e9 + i, "loss": 1 / (1 + i), "lr": 1e-3, "note": "x"} for i in range(1000)]
    run = _run()
    assert _add_columns(run, points, "jsonl", 0.0)
    assert sorted(run.metrics) == ["loss", "lr"] and run.metrics["loss"].count == 1000
    assert run.metrics["loss"].best_step == 999 and np.array_equal(run.metrics["lr"].steps[:3], [0, 1, 2])
    mixed = [{"step": 0, "loss": 1.0}, {"step": 1, "loss": True}]
    assert not _add_columns(run, mixed, "jsonl", 0.0)
    add_points(run, mixed, "jsonl", 0.0)
    assert run.metrics["loss"].count == 1001  # the bool was not taken for a number
