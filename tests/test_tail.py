"""The file follower never drops or repeats a line: partial writes, truncation, rotation,
rewrite in place, deletion and re-creation, undecodable bytes, over-long lines; a run log truncated
mid-run is marked in the state where it restarted."""

from __future__ import annotations

import os

from urbanrun.engine.metrics.follower import FileFollower, last_lines


def test_partial_writes_byte_by_byte(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"")
    f = FileFollower(path)
    data = "first line\nsecond ✓ line\r\nthird\n".encode()
    got = []
    with open(path, "ab") as fh:
        for byte in data:
            fh.write(bytes([byte]))
            fh.flush()
            got += f.poll()
    assert got == ["first line", "second ✓ line\r", "third"]


def test_truncation_restarts_from_zero(tmp_path):
    path = tmp_path / "log"
    path.write_text("a\nb\nc\n")
    f = FileFollower(path)
    assert f.poll() == ["a", "b", "c"]
    path.write_text("x\n")
    assert f.poll() == ["x"] and f.restarted


def test_rewrite_in_place_to_a_larger_size_is_detected(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n1,0.5\n")
    f = FileFollower(path)
    assert f.poll() == ["step,loss", "1,0.5"]
    with open(path, "r+") as fh:  # rewritten whole, longer than before (a new column, Lightning-style)
        fh.write("step,loss,acc\n1,0.5,\n2,0.4,0.9\n")
    assert f.poll() == ["step,loss,acc", "1,0.5,", "2,0.4,0.9"] and f.restarted


def test_rotation_finishes_the_old_file_then_follows_the_new(tmp_path):
    path = tmp_path / "log"
    path.write_text("1\n2\n")
    f = FileFollower(path)
    assert f.poll() == ["1", "2"]
    with open(path, "a") as fh:
        fh.write("3\npartial")
    os.rename(path, tmp_path / "log.1")
    path.write_text("new 1\n")
    assert f.poll() == ["3", "partial"]  # the old file's rest, its last line included
    assert f.poll() == ["new 1"] and f.restarted


def test_deleted_then_recreated(tmp_path):
    path = tmp_path / "log"
    path.write_text("a\n")
    f = FileFollower(path)
    assert f.poll() == ["a"]
    path.unlink()
    assert f.poll() == []
    path.write_text("b\n")
    assert f.poll() == ["b"]


def test_undecodable_bytes_and_a_10mb_line(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"ok\n\xff\xfebad\n" + b"x" * (10 << 20) + b"\nafter\n")
    f = FileFollower(path, max_line=1 << 20)
    lines = []
    for _ in range(3):
        lines += f.poll()
    assert lines == ["ok", "\ufffd\ufffdbad", "", "after"] and f.skipped_lines == 1  # "" keeps line numbers


def test_nothing_changed_costs_no_read(tmp_path):
    path = tmp_path / "log"
    path.write_text("a\n")
    f = FileFollower(path)
    f.poll()
    offset = f.offset
    assert f.poll() == [] and f.offset == offset


def test_last_lines(tmp_path):
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(10000)))
    assert last_lines(path, 3) == ["line 9997", "line 9998", "line 9999"]
    path.write_text("no newline at end")
    assert last_lines(path, 5) == ["no newline at end"]


def test_a_run_log_truncated_mid_run_is_marked_where_it_restarted(tmp_path):
    """Through a run's sources into the state the views draw: the old lines, then the mark, then the
    new content (a log rewritten from zero must not read as one continuous output)."""
    from urbanrun.engine.core.state import State
    from urbanrun.engine.metrics.run_files import RunSources
    from urbanrun.engine.runs.store import RunRecord

    run_dir = tmp_path / "20260101-000000-cones-0000"
    run_dir.mkdir()
    record = RunRecord(id=run_dir.name, recipe="cones", argv=["x"], cwd=str(tmp_path), status="running")
    (run_dir / "output.log").write_text("epoch 1\nepoch 2\n")
    sources, state = RunSources(run_dir, record), State()
    state.apply_all(sources.read(1.0))
    (run_dir / "output.log").write_text("again\n")
    state.apply_all(sources.read(2.0))
    (run_dir / "output.log").write_text("")  # truncated with nothing new yet: marked all the same
    state.apply_all(sources.read(3.0))
    sources.close()
    mark = "── log restarted (file truncated or replaced) ──"
    assert list(state.runs[record.id].log) == ["epoch 1", "epoch 2", mark, "again", mark]


def test_lines_across_read_chunks_come_whole_and_once(tmp_path):
    """Lines cut by the follower's 1 MiB reads (and by a bounded poll) are joined with their
    rest exactly once; the last, unfinished line waits for its newline."""
    import random

    rng = random.Random(3)
    lines = [b"x" * rng.randrange(0, 3000) + b"%d" % i for i in range(3000)]
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(data + b"unfinished")
    f = FileFollower(path, max_read=3 << 20)
    blocks = []
    while True:
        before = f.position
        blocks += f.poll_blocks()
        if f.position == before:
            break
    assert len(data) > 4 << 20 and all(block.endswith(b"\n") for block in blocks)
    assert b"".join(blocks) == data and f.pending_line() == "unfinished"


def test_a_csv_logger_rewriting_its_file_is_an_info_notice_a_jsonl_rewritten_a_warning(tmp_path):
    """Lightning's CSVLogger rewrites metrics.csv with a new header when a new column comes (the first
    validation): a matter of course, said as info (no pop-up in the TUI at each new column); a
    metrics.jsonl rewritten in place is not how it is written, and stays a warning."""
    from urbanrun.engine.core.events import Notice
    from urbanrun.engine.metrics.run_files import RunSources
    from urbanrun.engine.runs.store import RunRecord

    run_dir = tmp_path / "20260101-000000-cones-0000"
    run_dir.mkdir()
    csv = tmp_path / "metrics.csv"
    record = RunRecord(id=run_dir.name, recipe="cones", argv=["x"], cwd=str(tmp_path), status="running",
                       metrics_files=[str(csv)])
    csv.write_text("step,train_loss\n0,1.0\n1,0.9\n2,0.8\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.9}\n')
    sources = RunSources(run_dir, record)
    sources.read(1.0)
    csv.write_text("step,train_loss,val_loss\n0,1.0,\n1,0.9,\n2,0.8,0.85\n")  # rewritten in place, a new column
    (run_dir / "metrics.jsonl").write_text('{"step": 5}\n')
    said = {(e.code, e.path): e.level for e in sources.read(2.0) if isinstance(e, Notice)}
    sources.close()
    assert said[("file_rewritten", str(csv))] == "info"
    assert said[("file_rewritten", str(run_dir / "metrics.jsonl"))] == "warning"
