"""The scratchpad protocol: the right files at start (both naming patterns), auto-logged entries
for launch, finish, failure (a diagnosed OOM) and kill without duplicates across a restart, no
line lost when the engine, the editor and another process write at once, and a finish summary
whose numbers match the day's runs."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from urbanrun.engine.notes import scratchpad
from urbanrun.engine.notes.autolog import AutoLog, draft_summary
from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.runs.store import RunRecord, RunStore

from conftest import ROOT, cli, cli_json, drive, wait_for

FIX = Path(__file__).parent / "fixtures" / "scratchpad"


@pytest.fixture
def pad(workspace):
    shutil.copytree(FIX, workspace / ".claude" / "scratchpad")
    return workspace / ".claude" / "scratchpad"


def test_show_picks_the_coordinators_latest_and_the_previous_day(pad, workspace):
    store = RunStore(workspace / "runs")
    store.root.mkdir()
    store.create(RunRecord(id="20260114-224000-cones-cc03", recipe="cones", argv=["x"], cwd="/", status="failed"))
    info = scratchpad.show(scratchpad.Settings(root=pad), store, today=dt.date(2026, 1, 15))
    assert info["coordinator"]["path"].endswith("coordinator/2026-01-14-planning.md")
    assert info["previous"]["path"].endswith("training-runner/2026-01-14-nightly.md")  # not 01-15, not by calendar
    open_runs = {r["id"]: r["status"] for r in info["open_runs"]}
    assert open_runs == {"20260114-221000-full-area-unet-bb02": "unknown here", "20260114-224000-cones-cc03": "failed"}
    assert any("retry with 32" in line for line in info["unresolved"])
    assert any("2023 target year" in line for line in info["unresolved"])


def test_show_cli(pad, workspace):
    out = cli_json("scratchpad", "show", cwd=workspace)
    assert out["coordinator"]["path"].endswith("2026-01-14-planning.md")  # the latest, whatever today is
    assert out["today"].endswith(f"training-runner/{dt.date.today().isoformat()}.md")


def _today(pad) -> str:
    return (pad / "training-runner" / f"{dt.date.today().isoformat()}.md").read_text()




def test_launch_finish_fail_and_kill_are_logged_once(pad, workspace):
    config = load_config(workspace / "config.toml")
    engine = Engine(config, gpu_source=None, record_session=False)
    ok = engine.launch("cones")
    oom = engine.launch("fake_oom", values={"batch_size": 16})
    sleeper = engine.launch("sleeper")
    log = engine.store.run_dir(sleeper.id) / "output.log"  # killed once its script runs: a kill sent while
    wait_for(lambda: "working for" in log.read_text(), what="the sleeper to run")  # it starts may end in KILL
    engine.kill(sleeper.id, grace=1)
    drive(engine, lambda: all(engine.state.runs[r].status not in ("starting", "running")
                               for r in engine.state.runs) and len(engine.state.runs) >= 4)
    text = _today(pad)
    assert f"launched {ok.id} (cones)" in text and "--epochs 2" in text and "- changed: recipe defaults" in text
    assert re.search(rf"{ok.id} exited \(code 0\)\n- loss: best [\d.]+, last [\d.]+ after 4 steps", text)
    assert f"{oom.id} failed (code 1)" in text
    assert "## " in text and f"{oom.id}: cuda_oom\n- cause: CUDA out of memory" in text
    assert "- remedy: Smaller batch: --set batch_size=8" in text
    assert f"stopped {sleeper.id} (sleeper) from urbanrun" in text and f"{sleeper.id} killed (signal 15)" in text
    child = next(r for r in engine.state.runs.values() if r.record.get("parent") == oom.id)
    assert f"relaunch of {oom.id}: batch_size 16 -> 8" in text and child.id in text
    engine.close()
    again = Engine(config, gpu_source=None, record_session=False)  # a restarted urbanrun reattaches
    for _ in range(3):
        again.poll()
        time.sleep(0.1)
    assert cli("ls", "--all", cwd=workspace).returncode == 0
    after = _today(pad)
    assert after == text
    for marker in re.findall(r"<!-- urbanrun:([^ ]+) -->", after):
        assert after.count(f"<!-- urbanrun:{marker} -->") == 1


def test_three_writers_lose_nothing(pad, tmp_path):
    path = pad / "training-runner" / f"{dt.date.today().isoformat()}.md"
    path.write_text("# notes\n")
    log = AutoLog(scratchpad.Settings(root=pad))
    records = [RunRecord(id=f"20261125-000000-cones-{i:04x}", recipe="cones", argv=["python", "t.py"], cwd="/",
                         started=time.time()) for i in range(1000)]
    other = subprocess.Popen([sys.executable, "-c", (
        "import sys; sys.path.insert(0, %r)\n"
        "from pathlib import Path\nfrom urbanrun.engine.notes import scratchpad\n"
        "for i in range(200):\n"
        "    scratchpad.append(Path(%r), f'## other agent note {i}')\n") % (str(ROOT), str(path))])
    edits: list[str] = []

    def editor():
        base = scratchpad.read(path)
        for i in range(60):
            line = f"editor line {i}"
            text, _ = scratchpad.save(path, base.rstrip("\n") + f"\n{line}\n", base)
            edits.append(line)
            base = text

    thread = threading.Thread(target=editor)
    thread.start()
    for record in records:
        log.launched(record)
    thread.join()
    other.wait()
    final = path.read_text()
    for record in records:
        assert f"launched {record.id}" in final
    for i in range(200):
        assert f"## other agent note {i}\n" in final
    for line in edits:
        assert line in final
    assert not list(path.parent.glob("*.theirs-*"))  # appends merged, nothing set aside


def test_editor_save_keeps_a_changed_file_beside_ours(pad):
    path = pad / "training-runner" / "x.md"
    path.write_text("base\n")
    path.write_text("someone rewrote it\n")  # not an append
    text, note = scratchpad.save(path, "base\nmine\n", "base\n")
    assert path.read_text() == "base\nmine\n" and "kept as" in note
    (kept,) = path.parent.glob("x.theirs-*.md")
    assert kept.read_text() == "someone rewrote it\n"


def test_finish_summary_matches_the_days_runs(pad, workspace):
    now = time.time()
    records = [
        RunRecord(id="20261125-090000-cones-0001", recipe="cones", argv=[], cwd="/", status="exited", created=now,
                  loss_name="loss", loss_best=0.0123, loss_last=0.013, gpu_mem_peak_mb=4608),
        RunRecord(id="20261125-100000-cones-0002", recipe="cones", argv=[], cwd="/", status="failed", created=now,
                  diagnosis="CUDA out of memory on GPU 0: tried to allocate 2.00 GiB"),
        RunRecord(id="20261125-110000-cones-0003", recipe="cones", argv=[], cwd="/", status="running", created=now,
                  loss_name="loss", loss_best=0.02),
        RunRecord(id="20261124-110000-cones-0004", recipe="cones", argv=[], cwd="/", status="exited",
                  created=now - 86400 * 2),
    ]
    draft = draft_summary(records)
    lines = draft.splitlines()
    assert 2 <= len(lines) <= 3
    assert lines[0] == "Training: 3 run(s) launched today (1 exited, 1 failed, 1 running)."
    assert "20261125-090000-cones-0001 loss 0.0123, GPU peak 4.5 GiB" in lines[1]
    assert "CUDA out of memory" in lines[2] and "Still running: 20261125-110000-cones-0003" in lines[2]
    store = RunStore(workspace / "runs")
    store.root.mkdir()
    for r in records:
        store.create(r)
    out = cli_json("scratchpad", "finish", "--yes", cwd=workspace)
    assert out["written"] and out["draft"] == draft
    text = _today(pad)
    assert "session summary" in text and f"<!-- SUMMARY: {' '.join(lines)} -->" in text


def test_log_cli_and_bad_input(pad, workspace):
    out = cli("scratchpad", "log", "data loader fixed", cwd=workspace, check=True).stdout
    assert "logged to" in out and "— data loader fixed" in _today(pad)
    bad = cli("scratchpad", "log", cwd=workspace)
    assert bad.returncode == 2 and "needs the text" in bad.stderr


def test_a_byte_that_is_not_utf8_stops_no_launch_and_is_never_lost(pad, workspace):
    """A line pasted by a Latin-1 editor (and a NUL) in today's notes: launch, log and finish
    used to end in a UnicodeDecodeError traceback, launch after its run had started."""
    path = pad / "training-runner" / f"{dt.date.today().isoformat()}.md"
    odd = b"# notes\ncaf\xe9 from a Latin-1 editor\nnul\x00byte\n"
    path.write_bytes(odd)
    run = cli("launch", "exit_after", "--set", "seconds=0.1", "--json", cwd=workspace)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    run_id = json.loads(run.stdout)["id"]
    logged = cli("scratchpad", "log", "after the odd byte", cwd=workspace)
    assert logged.returncode == 0 and "Traceback" not in logged.stderr, logged.stderr
    raw = path.read_bytes()
    assert raw.startswith(odd)  # appended after, never rewritten
    assert f"launched {run_id}".encode() in raw and "— after the odd byte".encode() in raw
    text, note = scratchpad.save(path, scratchpad.read(path) + "edited in the TUI\n", scratchpad.read(path))
    assert "not UTF-8" in note and "edited in the TUI" in path.read_text()
    kept = list(path.parent.glob("*.theirs-bytes-*.md"))
    assert len(kept) == 1 and kept[0].read_bytes() == raw  # the original bytes, as they were


def test_odd_text_is_one_entry_under_its_own_heading(pad, workspace):
    """Text with newlines, its own markdown headings, a carriage return and 100 KB (near the
    128 KB an argument may hold) is one entry: the first line its heading, the rest kept whole."""
    body = "## Unresolved\n- fake item\r\n" + "x" * 100_000
    out = cli("scratchpad", "log", f"first line\n{body}", cwd=workspace)
    assert out.returncode == 0, out.stderr
    text = _today(pad)
    assert re.search(r"^## \d\d:\d\d — first line\n## Unresolved\n- fake item\r?\n" + "x" * 100_000 + "\n", text, re.M)


def test_a_latin1_byte_a_nul_or_a_lone_surrogate_in_an_entry_is_written_as_text(pad, workspace):
    """`scratchpad log` typed in a Latin-1 terminal (a byte that is not UTF-8 in argv), or an agent's
    text with a NUL or a lone surrogate (MCP): log and observe ended in a UnicodeEncodeError
    traceback, and a NUL made the notes binary to grep."""
    for action in ("log", "observe"):
        proc = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "scratchpad", action.encode(),
                               b"caf\xe9 " + action.encode()], cwd=workspace, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    from urbanrun.engine.cli.scratchpad import log_entry

    log_entry(scratchpad.Settings(root=pad), "agent note\nwith a NUL \x00 and \ud800 here")
    raw = (pad / "training-runner" / f"{dt.date.today().isoformat()}.md").read_bytes()
    assert b"\x00" not in raw
    text = raw.decode("utf-8")  # strict: the file stays UTF-8
    assert "caf\ufffd log" in text and "caf\ufffd observe" in text
    assert "with a NUL \ufffd and \ufffd here" in text
