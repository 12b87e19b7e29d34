"""A 100k-scalar TensorBoard event file (written by torch's SummaryWriter): urbanrun's reader vs
TensorBoard's EventAccumulator, and bare record framing without CRC or decode (the floor)."""

import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from urbanrun.engine.metrics.parsers.tensorboard import TensorBoardReader  # noqa: E402

SCALARS = int(os.environ.get("SCALARS", 100_000))


def main():
    from torch.utils.tensorboard import SummaryWriter
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = tempfile.mkdtemp()
    writer = SummaryWriter(folder, max_queue=10_000, flush_secs=3600)
    for step in range(SCALARS // 2):
        writer.add_scalar("train/loss", 1 / (1 + step), step)
        writer.add_scalar("lr", 1e-3, step)
    writer.close()
    (path,) = Path(folder).glob("events.out.tfevents.*")

    t = time.perf_counter()
    points = TensorBoardReader(path).poll()
    ours = time.perf_counter() - t

    t = time.perf_counter()
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    theirs_n = sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])
    theirs = time.perf_counter() - t

    t = time.perf_counter()
    data, pos, records = path.read_bytes(), 0, 0
    while pos + 12 <= len(data):
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
        records += 1
    framing = time.perf_counter() - t

    assert len(points) == theirs_n == SCALARS, (len(points), theirs_n)
    print(f"{SCALARS:,} scalars, {path.stat().st_size / 1e6:.1f} MB")
    print(f"  urbanrun TensorBoardReader   {ours:7.3f} s")
    print(f"  EventAccumulator             {theirs:7.3f} s   urbanrun is {theirs / ours:5.1f}x faster (goal >= 10x)")
    print(f"  bare framing (no CRC/decode) {framing:7.3f} s   {framing / theirs * 100:.1f}% of EventAccumulator")


if __name__ == "__main__":
    main()
