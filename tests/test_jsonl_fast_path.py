"""The JSONL fast path (lines of one key layout parsed as blocks of columns) against the plain
path (every line parsed alone into a dict): the same points, the same series, the same bad-line
count and first error, for any file: torn lines, NaN, null, strings, nested objects, booleans,
integers past 2**53 and past any float, 1e-300, -0.0, duplicate keys, keys that differ only in
digits, a value's number moved out of its place (`{1"a": }`, `{"a1": }`, `{"a": }1`), escaped and
unicode keys (and one holding NUL), whitespace variants, CRLF, blank lines, JSON-invalid numbers;
read in one piece or in pieces of any size, through parse blocks of any size."""

from __future__ import annotations

import json
import math
from unittest import mock

import numpy as np
from hypothesis import given, settings, strategies as st

from urbanrun.engine.core.points import Block, Points
from urbanrun.engine.core.events import MetricPoints
from urbanrun.engine.core.state import RunState, State, add_points
from urbanrun.engine.metrics.parsers import jsonl
from urbanrun.engine.metrics.parsers.jsonl import JsonlParser
from urbanrun.engine.metrics.sources import MetricSource

KEYS = ["step", "epoch", "time", "loss", "lr", "acc1", "acc5", "gpu_mem", "überloss", "val/loss", "e1", "a\"b", "a\x00b",
        "st3p", "stp", "ste", "a,b", "a:b", "{x}", "1e5", "-", ""]  # keys equal but for number characters, or odd ones
ODD_TOKENS = ["01", "1.", "+1", ".5", "-", "1e400", "-1e400", "1E5", "1e+5", "-0", "0.0e0", "1" + "0" * 400,
              "NaN", "Infinity", "-Infinity", "null", "true", "false", '"x"', '"1"', "[1, 2]", '{"a": 1}', "{}", ""]
numbers = st.one_of(st.integers(-10, 10**6), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([1e-300, -0.0, 5e-324, 1.7976931348623157e308, 2.0**53 + 1, 0.1]))


def _token(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def jsonl_files(draw) -> bytes:
    layouts = draw(st.lists(st.lists(st.sampled_from(KEYS), min_size=1, max_size=5, unique=True), min_size=1, max_size=3))
    colon, comma = draw(st.sampled_from([(": ", ", "), (":", ","), (" : ", " , ")]))
    ascii_keys = draw(st.booleans())
    lines = []
    for _ in range(draw(st.integers(0, 60))):
        keys = list(draw(st.sampled_from(layouts)))
        kind = draw(st.sampled_from(["layout"] * 6 + ["odd", "torn", "dup", "swap", "blank", "other", "spaces", "stray",
                                           "alias", "moved"]))
        tokens = [_token(draw(numbers)) for _ in keys]
        if kind == "odd":
            tokens[draw(st.integers(0, len(keys) - 1))] = draw(st.sampled_from(ODD_TOKENS))
        elif kind == "dup":
            keys.append(keys[0])
            tokens.append(_token(draw(numbers)))
        elif kind == "alias":  # a key that differs from its layout's only in a number character: the same shape
            j = draw(st.integers(0, len(keys) - 1))
            spots = [i for i, c in enumerate(keys[j]) if c in "0123456789.-+eE"]
            if spots:
                i = draw(st.sampled_from(spots))
                other = draw(st.sampled_from([c for c in "0123456789.-+eE" if c != keys[j][i]]))
                keys[j] = keys[j][:i] + other + keys[j][i + 1:]
        elif kind == "moved":  # a value's number out of its place, into a key or around the braces: the same shape
            tokens[draw(st.integers(0, len(keys) - 1))] = ""
        elif kind == "swap" and len(keys) > 1:
            keys[0], keys[1] = keys[1], keys[0]
        sep = comma if kind != "spaces" else comma + "  "
        line = "{" + sep.join(f"{json.dumps(k, ensure_ascii=ascii_keys)}{colon}{t}" for k, t in zip(keys, tokens)) + "}"
        if kind == "torn":
            line = line[:draw(st.integers(1, len(line) - 1))]
        elif kind in ("stray", "moved"):  # a number character (or a comma) anywhere: the line's shape stays its layout's
            at = draw(st.integers(0, len(line)))
            line = line[:at] + draw(st.sampled_from(list("0123456789.-+eE,"))) + line[at:]
        elif kind == "blank":
            line = draw(st.sampled_from(["", "  ", "\t"]))
        elif kind == "other":
            line = draw(st.sampled_from(["[1, 2]", "3", '"x"', "null", "true", "{", "}", "not json", "{}"]))
        lines.append(line + draw(st.sampled_from(["\n"] * 5 + ["\r\n"])))
    data = "".join(lines).encode("utf-8")
    if data and draw(st.booleans()):
        data = data.rstrip(b"\r\n")  # the last line without its newline (a file read to its end)
    return data


def _plain(data: bytes) -> tuple[list[dict], JsonlParser]:
    """Every line parsed alone, as text."""
    parser = JsonlParser()
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return parser.feed(lines), parser


def _fast(data: bytes, pieces: list[int]) -> tuple[Points, JsonlParser]:
    """The file in pieces split at newlines (as a follower hands them over)."""
    parser, points, start = JsonlParser(), Points(), 0
    for size in pieces + [len(data)]:
        if start >= len(data):
            break
        end = data.find(b"\n", start + size)
        end = len(data) if end < 0 else end + 1
        parser.feed_block(data[start:end], points)
        start = end
    return points, parser


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b) if isinstance(a, bool) or isinstance(b, bool) else a == b


def _run_summary(points) -> dict:
    """What the reducer makes of the points: every series, the epoch, the run's own GPU memory."""
    state = State()
    state.apply(MetricPoints(ts=5.0, run_id="r", points=points))
    run = state.runs["r"]
    out = {"points_total": run.points_total, "epoch": run.epoch, "epoch_type": type(run.epoch).__name__,
           "names": list(run.metrics), "gpu_mem": [run.gpu_mem, run.gpu_mem_peak, run.gpu_mem_source,
                                                  *run.gpu_mem_history.values.tolist()]}
    for name, s in run.metrics.items():
        out[name] = [s.count, s.best, s.best_step, s.worst, s.last, s.first_step, s.last_step,
                     *s.steps.tolist(), *s.times.tolist(), *s.values.tolist()]
        out[name] = ["nan" if isinstance(v, float) and math.isnan(v) else v for v in out[name]]
    return out


@settings(max_examples=400, deadline=None)
@given(data=jsonl_files(), pieces=st.lists(st.integers(1, 400), max_size=6), parse_block=st.sampled_from([1, 64, 65536]))
def test_fast_path_matches_each_line_parsed_alone(data, pieces, parse_block):
    want, plain = _plain(data)
    with mock.patch.object(jsonl, "PARSE_BLOCK", parse_block):
        got, fast = _fast(data, pieces)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys() and all(_same(float(g[k]), float(w[k])) for k in w), (g, w)
    assert (fast.bad_lines, fast.first_error, fast.lines_seen) == (plain.bad_lines, plain.first_error, plain.lines_seen)
    assert _run_summary(got) == _run_summary(want)


def test_a_trainers_lines_become_one_block_and_bad_lines_cost_only_themselves(tmp_path, monkeypatch):
    lines = [json.dumps({"step": i, "epoch": i // 10, "loss": 1 / (i + 1), "lr": 1e-3}) for i in range(3000)]
    lines[700] = lines[700][:15]  # torn
    lines[1500] = '{"step": 1500, "loss": NaN, "lr": 0.001}'
    lines[2200] = '{"step": 2200, "val_loss": 0.5}'  # another layout, once
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n")
    alone = []
    real_one = JsonlParser._one
    monkeypatch.setattr(JsonlParser, "_one", staticmethod(lambda line: alone.append(line) or real_one(line)))
    points, _ = MetricSource(path, "jsonl").poll()
    blocks = [p for p in points.parts if type(p) is Block]
    # the first line teaches the layout; then only the three odd lines are parsed alone
    assert len(alone) == 4 and sum(len(b) for b in blocks) == 2996
    # line 700 was torn: the points after it sit one place earlier
    assert len(points) == 2999 and math.isnan(points[1499]["loss"]) and points[2199] == {"step": 2200, "val_loss": 0.5}
    assert points[1] == {"step": 1, "epoch": 0, "loss": 0.5, "lr": 0.001}


def test_a_live_follower_poll_takes_the_fast_path_and_holds_a_partial_line(tmp_path):
    """A growing metrics.jsonl: each poll's complete lines arrive as blocks; a line without its
    newline waits for it, and is neither lost nor parsed twice."""
    path = tmp_path / "metrics.jsonl"
    source = MetricSource(path, "jsonl")
    run = RunState(record={"id": "r"})
    line = lambda i: json.dumps({"step": i, "loss": 1.0 / (i + 1), "time": 1e9 + i}).encode()  # noqa: E731
    written = b"".join(line(i) + b"\n" for i in range(500)) + line(500)[:9]  # a writer mid-line
    path.write_bytes(written)
    points, _ = source.poll()
    assert len(points) == 500 and all(type(p) is Block for p in points.parts[1:])
    add_points(run, points)
    assert source.bad == 0  # the partial line is not a torn one (yet)
    with open(path, "ab") as fh:
        fh.write(line(500)[9:] + b"\n" + b"".join(line(i) + b"\n" for i in range(501, 800)))
    points, _ = source.poll()
    assert [p.names for p in points.parts] == [("step", "loss", "time")] and len(points) == 300
    add_points(run, points)
    series = run.metrics["loss"]
    assert series.count == 800 and np.array_equal(series.steps, np.arange(800)) and source.bad == 0
    assert source.poll()[0] == []


def test_epochs_and_steps_past_2_to_the_53_reduce_alike_on_both_paths():
    data = b"".join(b'{"epoch": %d, "step": %d, "gpu_mem": %d, "loss": 1}\n' % (2**60 + i, 2**54 + i, 2**40 + i)
                    for i in range(1, 10))
    for more in (b"", b'{"epoch": 1e400, "loss": 2}\n{"epoch": -1%s, "loss": 3}\n' % (b"0" * 400)):  # past any float
        want, _ = _plain(data + more)
        got, _ = _fast(data + more, [])
        assert _run_summary(got) == _run_summary(want)


def test_points_record_and_replay_as_the_dicts_they_stand_for():
    from urbanrun.engine.core.events import decode, encode

    points = Points()
    points.add_block(("step", "epoch", "loss"), np.array([[1.0, 0.0, 0.5], [2.0, 1.0, -0.0]]))
    points.add({"step": 3, "loss": float("nan")})
    event = MetricPoints(ts=1.0, run_id="r", source="m", points=points)
    back = decode(encode(event))
    assert back.points[:2] == ({"step": 1, "epoch": 0, "loss": 0.5}, {"step": 2, "epoch": 1, "loss": -0.0})
    assert math.copysign(1, back.points[1]["loss"]) == -1 and math.isnan(back.points[2]["loss"])
    assert _run_summary(back.points) == _run_summary(points)


def test_lines_of_the_layouts_length_that_only_parse_together_are_bad_lines():
    """Odd lines are found by their length; lines of the layout's length must also have its shape.
    Here a torn line and the rest of it (one record in two lines) and a line of two records
    without braces, each padded to the layout's length: parsed as one array they give the right
    count of records with the right keys, yet each is a bad line on its own. (A short torn line
    makes the block one with odd lines.)"""
    template = '{"a"  :  %d  ,  "b"  :  %d}'
    size = len((template % (0, 0)).encode().translate(None, jsonl.NUMBER_CHARS))

    def pad(text: str, front: bool = False) -> str:
        spaces = " " * (size - len(text.encode().translate(None, jsonl.NUMBER_CHARS)))
        return spaces + text if front else text + spaces

    odd = [pad('{"a" : 5 , "b"'), pad("6}", front=True), pad('"a":7,"b":8,"a":9,"b":1')]
    assert all(len(line.encode().translate(None, jsonl.NUMBER_CHARS)) == size for line in odd)
    lines = [template % (i, i) for i in range(4)] + odd + ['{"a'] + [template % (i, i) for i in range(4, 8)]
    data = ("\n".join(lines) + "\n").encode()
    want, plain = _plain(data)
    got, fast = _fast(data, [len(lines[0]) + 1])  # the layout is known when the block with the odd lines comes
    assert plain.bad_lines == 4 and len(want) == 8
    assert list(got) == want and (fast.bad_lines, fast.first_error) == (plain.bad_lines, plain.first_error)


def test_a_number_out_of_its_values_place_is_a_bad_line_not_a_point():
    """A line of the layout's shape whose value's number sits before a key, inside one, or after
    the closing brace is not JSON: each is a bad line, as parsed alone, not a point with that number."""
    good = b'{"a": 1, "step": 2}\n'
    for bad in (b'{"a1": , "step": 2}\n', b'{1"a": , "step": 2}\n', b'{"a": 1, "step": }3\n',
                b'7{"a": , "step": 2}\n', b'{"a": 1, 3"step": }\n', b'{"a" 5: , "step": 2}\n'):
        data = good * 3 + bad + good
        want, plain = _plain(data)
        got, fast = _fast(data, [len(good)])  # the layout is known when the bad line comes
        assert list(got) == want and len(want) == 4, bad
        assert (fast.bad_lines, fast.first_error) == (plain.bad_lines, plain.first_error) == (1, plain.first_error), bad
