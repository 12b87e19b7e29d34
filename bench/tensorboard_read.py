"""A 100k-scalar TensorBoard event file (written by torch's SummaryWriter), read whole.

Whole readers: urbanrun's TensorBoardReader vs TensorBoard's EventAccumulator (goal >= 10x), and
vs a plain loop doing the same job with the libraries (framing, google_crc32c on the length and
the data, protobuf's Event.FromString). Then each hand-written piece against the library doing
the same job on the same records (it stays only where it is >= 2x faster):
  frame  lengths' repeating pattern checked at once vs  the walk, record by record
  CRC   numpy table over records grouped by length  vs  google_crc32c record by record
  decode numpy over SummaryWriter's fixed layout    vs  Event.FromString record by record
Other layouts (e.g. tensor-form scalars) are decoded by protobuf itself (engine/metrics/parsers/
tb_proto.py): the hand-written wire walk it replaced was 2-3x slower than Event.FromString. The
last section shows the cost of urbanrun's scalar extraction around Event.FromString.
Median of REPEATS, interleaved."""

import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from urbanrun.engine.metrics.parsers import tensorboard as tb  # noqa: E402

SCALARS = int(os.environ.get("SCALARS", 100_000))
REPEATS = int(os.environ.get("REPEATS", 3))


def write_simple(folder: str) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(folder, max_queue=10_000, flush_secs=3600)
    for step in range(SCALARS // 2):
        writer.add_scalar("train/loss", 1 / (1 + step), step)
        writer.add_scalar("lr", 1e-3, step)
    writer.close()
    (path,) = Path(folder).glob("events.out.tfevents.*")
    return path


def tensor_records(n: int) -> list[bytes]:
    """Tensor-form scalars (TF2's tf.summary.scalar layout), serialized by protobuf itself."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2

    out = []
    for step in range(n):
        value = summary_pb2.Summary.Value(tag="train/loss", tensor=tensor_pb2.TensorProto(dtype=1, float_val=[1 / (1 + step)]))
        value.metadata.plugin_data.plugin_name = "scalars"
        out.append(event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(value=[value]))
                   .SerializeToString())
    return out


def framing(data: bytes) -> tuple[list[int], list[int]]:
    starts, lengths, pos = [], [], 0
    while pos + 12 <= len(data):
        length = struct.unpack_from("<Q", data, pos)[0]
        starts.append(pos)
        lengths.append(length)
        pos += 16 + length
    return starts, lengths


def library_points(records: list[bytes], Event) -> list[dict]:
    points = []
    for raw in records:
        event = Event.FromString(raw)
        point = None
        for v in event.summary.value:
            if v.HasField("simple_value"):
                value = v.simple_value
            elif v.HasField("tensor") and v.tensor.float_val:
                value = v.tensor.float_val[0]
            else:
                continue
            point = point or {"step": event.step, "time": event.wall_time}
            point[v.tag] = value
        if point:
            points.append(point)
    return points


def library_reader(data: bytes, Event) -> list[dict]:
    """The plain loop with the libraries: framing, both CRCs by google_crc32c, Event.FromString."""
    records = []
    starts, lengths = framing(data)
    for start, length in zip(starts, lengths):
        if tb.masked_crc(data[start:start + 8]) != struct.unpack_from("<I", data, start + 8)[0]:
            break
        body = data[start + 12:start + 12 + length]
        if tb.masked_crc(body) == struct.unpack_from("<I", data, start + 12 + length)[0]:
            records.append(body)
    return library_points(records, Event)


def timed(jobs: dict) -> dict:
    """Each job's median wall time, its result and its median CPU time (less swayed by other
    processes on a shared machine), interleaved."""
    times = {name: [] for name in jobs}
    cpu = {name: [] for name in jobs}
    results = {}
    for _ in range(REPEATS):
        for name, job in jobs.items():
            t, c = time.perf_counter(), time.process_time()
            results[name] = job()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {name: (statistics.median(ts), results[name], statistics.median(cpu[name])) for name, ts in times.items()}


def show(title: str, figures: dict, ours: str, theirs: str, goal: str) -> None:
    print(title)
    for name, (seconds, _, cpu) in figures.items():
        print(f"  {name:<44} {seconds:7.3f} s  (CPU {cpu:.3f} s)")
    print(f"  -> {theirs} / {ours} = {figures[theirs][0] / figures[ours][0]:.1f}x ({goal}); "
          f"in CPU time {figures[theirs][2] / figures[ours][2]:.1f}x")


def main():
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.proto.event_pb2 import Event

    path = write_simple(tempfile.mkdtemp())
    data = path.read_bytes()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"{SCALARS:,} scalars, {len(data) / 1e6:.1f} MB, median of {REPEATS}, load average {load}")

    def accumulator():
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        return [s for tag in acc.Tags()["scalars"] for s in acc.Scalars(tag)]

    whole = timed({"urbanrun TensorBoardReader": lambda: tb.TensorBoardReader(path).poll(),
                   "library loop (crc32c + Event.FromString)": lambda: library_reader(data, Event),
                   "EventAccumulator": accumulator})
    assert len(whole["urbanrun TensorBoardReader"][1]) == len(whole["EventAccumulator"][1]) == SCALARS
    assert whole["urbanrun TensorBoardReader"][1] == whole["library loop (crc32c + Event.FromString)"][1]
    show("whole file", whole, "urbanrun TensorBoardReader", "EventAccumulator", "goal >= 10x")
    print(f"  -> library loop / urbanrun = {whole['library loop (crc32c + Event.FromString)'][0] / whole['urbanrun TensorBoardReader'][0]:.1f}x")

    starts, lengths = framing(data)
    st, ln = np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)

    frames = timed({"lengths' pattern checked at once": lambda: tb.frame_records(data, raw)[:2],
                    "the walk, record by record": lambda: framing(data)})
    ours_frames = frames["lengths' pattern checked at once"][1]
    assert (ours_frames[0].tolist(), ours_frames[1].tolist()) == frames["the walk, record by record"][1]
    show("framing (every record's start and length)", frames, "lengths' pattern checked at once",
         "the walk, record by record", "kept if >= 2x")
    bodies = [data[s + 12:s + 12 + n] for s, n in zip(starts, lengths)]

    def crc_numpy():
        heads = tb._masked(tb.crc32c_rows(raw[st[:, None] + np.arange(8)])) == tb._u32_at(raw, st + 8)
        return bool(heads.all()) and bool(tb.TensorBoardReader._data_crcs_ok(data, raw, st, ln).all())

    def crc_library():
        ok = True
        for s, n in zip(starts, lengths):
            ok &= tb.masked_crc(data[s:s + 8]) == struct.unpack_from("<I", data, s + 8)[0]
            ok &= tb.masked_crc(data[s + 12:s + 12 + n]) == struct.unpack_from("<I", data, s + 12 + n)[0]
        return ok

    crc = timed({"numpy CRC32C table (grouped by length)": crc_numpy, "google_crc32c record by record": crc_library})
    assert crc["numpy CRC32C table (grouped by length)"][1] and crc["google_crc32c record by record"][1]
    show("CRC of every record (length and data)", crc, "numpy CRC32C table (grouped by length)",
         "google_crc32c record by record", "kept if >= 2x")

    body_starts = [s + 12 for s in starts]
    body_stops = [s + 12 + n for s, n in zip(starts, lengths)]
    simple = timed({"numpy fixed-layout decode": lambda: tb.decode_records(data, body_starts, body_stops)[0],
                    "Event.FromString": lambda: library_points(bodies, Event)})
    assert simple["numpy fixed-layout decode"][1] == simple["Event.FromString"][1]
    show("decode SummaryWriter scalars", simple, "numpy fixed-layout decode", "Event.FromString", "kept if >= 2x")

    tensors = tensor_records(SCALARS // 2)
    tensor = timed({"urbanrun decode_event (protobuf)": lambda: [p for p in map(tb.decode_event, tensors) if p],
                    "plain Event.FromString loop": lambda: library_points(tensors, Event)})
    assert [p["train/loss"] for p in tensor["urbanrun decode_event (protobuf)"][1]] == \
        [p["train/loss"] for p in tensor["plain Event.FromString loop"][1]]
    show(f"decode tensor-form scalars ({len(tensors):,})", tensor, "urbanrun decode_event (protobuf)",
         "plain Event.FromString loop", "one path: the library's")


if __name__ == "__main__":
    main()
