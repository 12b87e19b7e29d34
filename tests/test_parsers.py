"""Every metrics format parses to the values its own library wrote (or reads back)."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest

from urbanrun.engine.metrics.sources import MetricSource, discover
from urbanrun.engine.metrics.parsers.loglines import LogLineParser
from urbanrun.engine.metrics.parsers.tensorboard import TensorBoardReader
from urbanrun.engine.metrics.parsers.wandb_offline import WandbRunReader

FIX = Path(__file__).parent / "fixtures"
METRICS = FIX / "metrics"


def loss_at(step):  # what tests/fixtures/make_metrics_fixtures.py logged
    return 1.0 / (1 + 0.1 * step) + 0.01 * math.sin(step)


def _by_tag(points):
    out = {}
    for p in points:
        for k, v in p.items():
            if k not in ("step", "time"):
                out.setdefault(k, []).append((p["step"], v, p["time"]))
    return out


def test_tensorboard_matches_event_accumulator():
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboard.util import tensor_util

    (event_file,) = (METRICS / "tensorboard" / "run1").glob("events.out.tfevents.*")
    ours = _by_tag(TensorBoardReader(event_file).poll())
    acc = ea_mod.EventAccumulator(str(event_file), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
        theirs = [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
        assert ours[tag] == theirs
    assert set(acc.Tags()["scalars"]) == {"train/loss", "lr"}
    theirs = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)), e.wall_time) for e in acc.Tensors("val/acc")]
    assert ours["val/acc"] == pytest.approx(theirs)
    assert "weights" not in ours and "note" not in ours  # histogram and text are skipped


def test_tensorboard_cut_mid_record_then_completed(tmp_path):
    (full,) = (METRICS / "tensorboard" / "run1").glob("events.out.tfevents.*")
    data = full.read_bytes()
    path = tmp_path / "events.out.tfevents.grow"
    path.write_bytes(data[:-7])
    reader = TensorBoardReader(path)
    first = reader.poll()
    assert reader.offset < len(data) - 7  # the partial record is held back
    with open(path, "ab") as fh:
        fh.write(data[-7:])
    rest = reader.poll()
    assert first + rest == TensorBoardReader(full).poll()
    assert reader.bad_records == 0


def test_tensorboard_corrupt_records(tmp_path):
    """A record whose data CRC fails is counted and skipped; a corrupt length stops the file, reported."""
    import struct

    (full,) = (METRICS / "tensorboard" / "run1").glob("events.out.tfevents.*")
    data = bytearray(full.read_bytes())
    clean = TensorBoardReader(full).poll()
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    bad_data = bytearray(data)
    bad_data[starts[3] + 14] ^= 0xFF  # inside record 3's data (a scalar event)
    path = tmp_path / "events.out.tfevents.bad"
    path.write_bytes(bytes(bad_data))
    reader = TensorBoardReader(path)
    points = reader.poll()
    assert reader.bad_records == 1 and not reader.broken
    assert len(points) == len(clean) - 1 and points[0] == clean[0] and points[-1] == clean[-1]
    bad_length = bytearray(data)
    bad_length[starts[10]] ^= 0x01
    path.write_bytes(bytes(bad_length))
    reader = TensorBoardReader(path)
    head = tmp_path / "events.out.tfevents.head"
    head.write_bytes(bytes(data[:starts[10]]))
    assert reader.poll() == TensorBoardReader(head).poll() and "corrupt record length" in reader.broken


def test_lightning_csv_matches_csv_reader_and_survives_the_rewrite(tmp_path):
    src = METRICS / "lightning" / "lightning_logs" / "version_0" / "metrics.csv"
    rows = list(csv.DictReader(src.open()))
    source = MetricSource(src, "csv")
    points, _ = source.poll()
    assert len(points) == len(rows)
    for point, row in zip(points, rows):
        for key, text in row.items():
            if text:
                assert point[key] == pytest.approx(float(text))
    # a growing file rewritten with a new column (what CSVLogger does on a new key): nothing repeated
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss\n0,0,1.0\n0,1,0.9\n")
    growing = MetricSource(path, "csv")
    first, _ = growing.poll()
    path.write_text("epoch,step,train_loss,val_loss\n0,0,1.0,\n0,1,0.9,\n0,1,,0.95\n0,2,0.8,\n")
    second, _ = growing.poll()
    assert [p["step"] for p in first] == [0, 1]
    assert second == [{"epoch": 0, "step": 1, "val_loss": 0.95}, {"epoch": 0, "step": 2, "train_loss": 0.8}]


def test_loss_history_csv_uses_epoch_as_step():
    points, _ = MetricSource(METRICS / "training_loss_history.csv", "csv").poll()
    assert [p["step"] for p in points] == list(range(25))
    assert points[3]["total_loss"] == pytest.approx(loss_at(3))


def test_wandb_offline_run_history_config_and_summary(tmp_path):
    (run_dir,) = (METRICS / "wandb_project" / "wandb").glob("offline-run-*")
    (wandb_file,) = run_dir.glob("run-*.wandb")
    reader = WandbRunReader(wandb_file)
    points = reader.poll()
    assert [p["step"] for p in points] == list(range(20))
    for p in points:
        assert p["loss"] == pytest.approx(loss_at(p["step"]))
        assert p["val/loss"] == pytest.approx(loss_at(p["step"]) + 0.1)
    assert reader.config["lr"] == 1e-3 and reader.config["dims"] == [64, 128, 256]
    assert reader.summary["_step"] == 19 and reader.summary["loss"] == pytest.approx(points[-1]["loss"])
    # read while it grows, in odd-sized pieces: the same points
    data = wandb_file.read_bytes()
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"")
    growing, got = WandbRunReader(path), []
    for i in range(0, len(data), 333):
        with open(path, "ab") as fh:
            fh.write(data[i:i + 333])
        got += growing.poll()
    assert got == points and growing.bad_records == 0
    # a poll reads a bounded amount (the whole file once took up to 1 GB a poll): 300 bytes a poll
    # still gives every point, once, with records split across reads (and a chunk longer than a
    # read is read whole)
    bounded, got, polls = WandbRunReader(wandb_file), [], 0
    bounded.max_read = 300
    while polls < len(data):
        before = bounded.offset
        got += bounded.poll()
        polls += 1
        if bounded.offset == before:
            break
    assert got == points and bounded.bad_records == 0 and polls > len(data) // 300 // 2


def test_urbanrepml_logging_lines():
    points, progress = MetricSource(METRICS / "logs" / "urbanrepml_logging.log", "log").poll()
    assert [p["epoch"] for p in points] == list(range(1, 11))
    assert points[0]["loss"] == pytest.approx(round(loss_at(10), 6))
    assert progress == {"epoch": {"unit": "epoch", "n": 10, "total": 100}}


def test_tqdm_bar_from_a_real_capture():
    points, progress = MetricSource(METRICS / "logs" / "tqdm.log", "log").poll()
    progress = progress["batch"]
    assert progress["n"] == 40 and progress["total"] == 40 and progress["epoch"] == 2 and progress["epochs"] == 2
    assert points[-1]["loss"] == pytest.approx(round(loss_at(39), 4))


def test_demo_trainer_output_log():
    points, progress = MetricSource(FIX / "logs" / "cones_demo_output.log", "log").poll()
    epochs = [p for p in points if "val_loss" in p]
    assert [p["epoch"] for p in epochs] == list(range(1, 31))
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    assert {"train_loss", "val_loss", "lr"} <= set(epochs[0])


@pytest.mark.parametrize("line, expected", [
    ("Epoch 1/1 | Train Loss: 0.5 | Val Loss: 0.6 | LR: 1e-3",
     {"epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "lr": 1e-3}),
    ("12:01:02 INFO Epoch   10/100  loss=0.012345  best=0.012001", {"epoch": 10, "loss": 0.012345, "best": 0.012001}),
    ("2026-01-02 10:00:00,123 - train - INFO - step=5 loss=0.0123", {"step": 5, "loss": 0.0123}),
    ("[INFO] val_acc: 0.91", {"val_acc": 0.91}),
    ("Model: params=80,264 amp=False", None),
    ("Saving checkpoint to /tmp/x_3/model.pt", None),
    # a settings printout (words and lists beside numbers): its numbers are settings, not metrics
    ("Model: ConeUNet dims=[32, 64, 128] params=80,264 device=cpu amp=False batch_size=8 cones/batch", None),
    ("config: lr=0.001 optimizer=adamw", None),
    # nan and inf are values, not words
    ("step=5 loss=nan grad_norm=infinity lr=-inf", {"step": 5, "loss": math.nan, "grad_norm": math.inf, "lr": -math.inf}),
])
def test_log_line_patterns(line, expected):
    point = LogLineParser().parse_line(line)[0]
    assert point == expected or (point and point.keys() == expected.keys()
                                 and all(str(point[k]) == str(expected[k]) for k in point))  # nan != nan


def test_the_demo_logs_settings_line_is_no_metric():
    points, _ = MetricSource(FIX / "logs" / "cones_demo_output.log", "log").poll()
    assert not any("batch_size" in p or "params" in p for p in points)


def test_recipe_regex_named_groups():
    import re

    parser = LogLineParser([re.compile(r"it (?P<step>\d+): recon (?P<recon>[\d.]+)")])
    assert parser.parse_line("it 7: recon 0.25 (custom format)")[0] == {"step": 7, "recon": 0.25}


def test_jsonl_nan_infinity_nested_and_corrupt():
    source = MetricSource(METRICS / "ours.jsonl", "jsonl")
    points, _ = source.poll()
    assert len(points) == 12 and source.bad == 1 and "line 13" in source.first_error
    assert points[0]["train/acc"] == 0 and math.isnan(points[10]["loss"]) and points[11]["loss"] == math.inf


def _torn_jsonl(tmp_path, n=3000):
    """A metrics file with the ways a line goes bad mid-block: torn writes (a line cut short, the
    next line glued on; the cut inside a string so the error shows on the next line), two torn
    lines in a row, NaN tokens, a blank line, non-ASCII names before a bad line, a torn first
    and last line. Returns the path and what a line-by-line json reader makes of it."""
    import json

    lines = []
    for i in range(n):
        lines.append(json.dumps({"step": i, "loss": 1 / (1 + i), "lr": 1e-3, "acc/top1": i % 7}))
    for k in (0, 17, 18, 900, 1799, n - 1):
        lines[k] = lines[k][: len(lines[k]) // 2]  # torn: the rest never written
    lines[400] = lines[400][:12]  # cut inside the key string: `{"step": 400` -> `{"step": 40`
    lines[401] = '{"step": 401, "loss": NaN, "lr": Infinity}'
    lines[1200] = ""
    lines[2000] = '{"step": 2000, "überloss": 0.5, "lr": 1e-3}'
    lines[2001] = '{"step": 2001, "loss": 0.1, "lr": '
    path = tmp_path / "torn.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected, bad = [], []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            expected.append(json.loads(line))
        except ValueError:
            bad.append(no)
    return path, expected, bad


def test_jsonl_torn_lines_cost_only_themselves(tmp_path, monkeypatch):
    from urbanrun.engine.metrics.parsers.jsonl import JsonlParser

    path, expected, bad = _torn_jsonl(tmp_path)
    alone = []
    real_one = JsonlParser._one
    monkeypatch.setattr(JsonlParser, "_one", staticmethod(lambda line: alone.append(line) or real_one(line)))
    source = MetricSource(path, "jsonl")
    points, _ = source.poll()
    assert len(points) == len(expected)
    for got, want in zip(points, expected):
        assert got.keys() == want.keys()
        assert all(got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])) for k in want)
    assert source.bad == len(bad) and source.first_error.startswith(f"line {bad[0]}:")
    # only the bad lines (and the NaN line) went the per-line way, not the 64 KiB blocks around them
    assert len(alone) <= len(bad) + 3, len(alone)


def test_jsonl_torn_line_parsing_does_not_depend_on_where_blocks_split(tmp_path):
    """The same file read in pieces of every size from 1 byte to 8 KiB gives the same points."""
    from urbanrun.engine.metrics.parsers.jsonl import JsonlParser

    path, expected, bad = _torn_jsonl(tmp_path)
    data = path.read_bytes()
    for size in (97, 1000, 8192):
        parser, points, start = JsonlParser(), [], 0
        while start < len(data):
            end = data.find(b"\n", start + size)
            end = len(data) if end < 0 else end + 1
            points += parser.feed_block(data[start:end])
            start = end
        assert [p.get("step") for p in points] == [e.get("step") for e in expected], size
        assert parser.bad_lines == len(bad)


def test_discovery_finds_every_format(tmp_path):
    shutil.copytree(METRICS, tmp_path / "m")
    (tmp_path / "m" / "data.csv").write_text("h3,population\n891,20\n")  # a data table, not metrics
    found = {(p.relative_to(tmp_path / "m").as_posix().split("/")[0], fmt) for p, fmt in discover(tmp_path / "m")}
    assert found == {("ours.jsonl", "jsonl"), ("training_loss_history.csv", "csv"), ("lightning", "csv"),
                     ("tensorboard", "tensorboard"), ("wandb_project", "wandb")}


def test_wandb_corrupt_chunk_is_counted_and_the_rest_flows(tmp_path):
    (run_dir,) = (METRICS / "wandb_project" / "wandb").glob("offline-run-*")
    (wandb_file,) = run_dir.glob("run-*.wandb")
    clean = WandbRunReader(wandb_file).poll()
    data = bytearray(wandb_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "run-bad.wandb"
    path.write_bytes(bytes(data))
    reader = WandbRunReader(path)
    points = reader.poll()
    assert reader.bad_records >= 1 and len(points) >= len(clean) - 1
    assert all(p in clean for p in points)


def test_tensorboard_huge_corrupt_length_is_reported_not_waited_for(tmp_path):
    (full,) = (METRICS / "tensorboard" / "run1").glob("events.out.tfevents.*")
    data = bytearray(full.read_bytes())
    data[7] ^= 0x40  # the first record's length becomes enormous
    path = tmp_path / "events.out.tfevents.huge"
    path.write_bytes(bytes(data))
    reader = TensorBoardReader(path)
    assert reader.poll() == [] and "corrupt record length at byte 0" in reader.broken


def test_vectorised_crc32c_matches_google_crc32c():
    import os

    import google_crc32c
    import numpy as np

    from urbanrun.engine.metrics.parsers.tensorboard import crc32c_rows

    rows = np.frombuffer(os.urandom(53 * 64), dtype=np.uint8).reshape(64, 53)
    assert [int(c) for c in crc32c_rows(rows)] == [google_crc32c.value(bytes(r)) for r in rows]


def _tfrecord(records: list[bytes]) -> bytes:
    import struct

    from urbanrun.engine.metrics.parsers.tensorboard import masked_crc

    out = b""
    for data in records:
        head = struct.pack("<Q", len(data))
        out += head + struct.pack("<I", masked_crc(head)) + data + struct.pack("<I", masked_crc(data))
    return out


def test_tensorboard_tensor_scalars_of_every_dtype_match_tensorboard(tmp_path):
    """Tensor-form scalars (TF2's layout) of each dtype, as content bytes and as typed values, read
    as TensorBoard reads them; tensors with dims, other plugins and undecodable records are not
    points (the last counted as bad)."""
    pytest.importorskip("tensorboard")
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.util import tensor_util

    def event(step, tensor, plugin="scalars"):
        value = summary_pb2.Summary.Value(tag=f"m{step}", tensor=tensor)
        value.metadata.plugin_data.plugin_name = plugin
        return event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(value=[value]))

    tensors = [tensor_util.make_tensor_proto(np.array(v, dtype=t))
               for v, t in [(0.25, np.float32), (1e300, np.float64), (-7, np.int32), (2**40, np.int64),
                            (1.5, np.float16)]]
    tensors += [tensor_pb2.TensorProto(dtype=1, float_val=[0.5]), tensor_pb2.TensorProto(dtype=2, double_val=[2.5]),
                tensor_pb2.TensorProto(dtype=3, int_val=[-3]), tensor_pb2.TensorProto(dtype=9, int64_val=[-2**40]),
                tensor_pb2.TensorProto(dtype=19, half_val=[0x3C00]),  # 1.0 as IEEE half
                tensor_pb2.TensorProto(dtype=14, half_val=[0x3FC0])]  # 1.5 as bfloat16
    events = [event(i, t) for i, t in enumerate(tensors)]
    expected = [{"step": e.step, "time": e.wall_time, e.summary.value[0].tag:
                 float(tensor_util.make_ndarray(e.summary.value[0].tensor)) if i < 10 else 1.5}
                for i, e in enumerate(events)]
    shaped = tensor_pb2.TensorProto(dtype=1, float_val=[1, 2], tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]))
    skipped = [event(20, shaped), event(21, tensor_pb2.TensorProto(dtype=1, float_val=[3.0]), plugin="histograms")]
    path = tmp_path / "events.out.tfevents.tensors"
    path.write_bytes(_tfrecord([e.SerializeToString() for e in events + skipped] + [b"\xff\xff\xff"]))
    reader = TensorBoardReader(path)
    assert reader.poll() == expected
    assert reader.bad_records == 1 and not reader.broken
