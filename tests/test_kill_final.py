"""Kill is final and verified, and identity is never guessed: each way a real run leaves processes
behind (children that ignore SIGTERM, a setsid'd double-forked daemon, leftovers after exit 0),
a stale record whose pid now belongs to an unrelated session leader, a record without a create
time, and a kill of a run that already ended."""

from __future__ import annotations

import json
import os
import sys
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import SCRIPTS, cli, cli_json, wait_for

LEAVER = f"""
[recipes.leaver]
command = ["{{python}}", "{SCRIPTS / 'leaver.py'}"]
[recipes.leaver.params.mode]
type = "choice"
choices = ["mixed", "daemon", "exit0"]
positional = true
default = "mixed"
"""


@pytest.fixture
def workspace(workspace):
    """The shared test workspace, plus the recipe of the script that leaves processes behind."""
    with open(workspace / "config.toml", "a") as fh:
        fh.write(LEAVER)
    return workspace


def _pids(run_dir: Path) -> dict[str, list[int]] | None:
    """role -> pids, once the script has written them all."""
    path = run_dir / "pids.txt"
    if not path.exists():
        return None
    roles: dict[str, list[int]] = {}
    for line in path.read_text().split("\n"):
        if line:
            role, pid = line.split()
            roles.setdefault(role, []).append(int(pid))
    return roles


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_after_its_babysitter_died(workspace, run: dict, everyone: list[int]) -> None:
    """The babysitter killed from outside leaves the run's processes alive; `kill` still ends every one."""
    psutil.Process(run["pid"]).kill()
    wait_for(lambda: not _alive(run["pid"]), what="the babysitter to die")
    assert all(_alive(pid) for pid in everyone)
    proc = cli("kill", run["id"], "--grace", "1", cwd=workspace, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert [pid for pid in everyone if _alive(pid)] == []


def _launch(workspace, mode: str):
    run = cli_json("launch", "leaver", "--set", f"mode={mode}", cwd=workspace)
    roles = wait_for(lambda: _pids(Path(run["run_dir"])), what="the script's processes")
    return run, roles


def _cleanup(pids):
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def test_main_dies_on_sigterm_while_its_children_ignore_it(workspace):
    run, roles = _launch(workspace, "mixed")
    everyone = [pid for pids in roles.values() for pid in pids]
    try:
        proc = cli("kill", run["id"], "--grace", "1", cwd=workspace, timeout=90)
        assert proc.returncode == 0, proc.stderr
        assert "no process of the run is left" in proc.stdout
        assert [pid for pid in everyone if _alive(pid)] == []
        final = cli_json("show", run["id"], cwd=workspace)
        assert final["status"] == "killed" and final["signal"] == 15  # the main process ended on SIGTERM
        assert final["leftovers"] == []
    finally:
        _cleanup(everyone)


def test_a_setsid_double_forked_daemon_is_killed_too(workspace):
    run, roles = _launch(workspace, "daemon")
    daemon = roles["daemon"][0]
    try:
        assert _alive(daemon) and psutil.Process(daemon).ppid() == run["pid"]  # the babysitter reaps orphans
        assert os.getsid(daemon) != run["pid"]  # not in the run's session
        proc = cli("kill", run["id"], "--grace", "1", cwd=workspace, timeout=90)
        assert proc.returncode == 0, proc.stderr
        assert not _alive(daemon) and not _alive(roles["main"][0])
        assert cli_json("show", run["id"], cwd=workspace)["status"] == "killed"
    finally:
        _cleanup([daemon, *roles["main"]])


def test_leftovers_after_exit_0_are_shown_and_kill_stops_them(workspace):
    run, roles = _launch(workspace, "exit0")
    left = roles["child"] + roles["daemon"]
    try:
        shown = wait_for(lambda: (r := cli_json("show", run["id"], cwd=workspace))["status"] != "running" and r,
                         what="the main process to exit")
        assert shown["status"] == "exited" and shown["exit_code"] == 0
        assert sorted(p["pid"] for p in shown["leftovers"]) == sorted(left)
        listing = cli("ls", cwd=workspace, check=True).stdout
        assert "exited · 2 leftover processes" in listing
        assert "exited · 2 leftover processes" in cli("show", run["id"], cwd=workspace, check=True).stdout
        record_before = (Path(run["run_dir"]) / "run.toml").read_text()
        assert "leftovers" in record_before
        proc = cli("kill", run["id"], "--grace", "1", cwd=workspace, timeout=90)
        assert proc.returncode == 0, proc.stderr
        assert "2 leftover processes" in proc.stdout
        assert [pid for pid in left if _alive(pid)] == []
        final = cli_json("show", run["id"], cwd=workspace)
        assert final["status"] == "exited" and final["exit_code"] == 0 and final["leftovers"] == []
        assert "leftover" not in cli("ls", cwd=workspace, check=True).stdout
    finally:
        _cleanup(left)


def test_a_stale_record_never_signals_the_session_leader_that_now_has_its_pid(workspace):
    """A record says running with pid P; P is now an unrelated `setsid` session leader with a
    member. Neither is touched: the record's create time does not match, so it is lost."""
    leader = subprocess.Popen(["setsid", "bash", "-c", "sleep 300 & wait"], start_new_session=False)
    try:
        member = wait_for(lambda: psutil.Process(leader.pid).children(), what="the session's member")[0].pid
        assert os.getsid(member) == leader.pid  # a real session led by that pid
        run_id = "20260101-000000-leaver-dead"
        run_dir = workspace / "runs" / run_id
        run_dir.mkdir(parents=True)
        created = psutil.Process(leader.pid).create_time()
        (run_dir / "run.toml").write_text(
            f'id = "{run_id}"\nrecipe = "leaver"\nargv = ["x"]\ncwd = "/"\nstatus = "running"\n'
            f'pid = {leader.pid}\npid_create_time = {created - 500}\nstarted = {created - 500}\n')
        proc = cli("kill", run_id, "--grace", "0", cwd=workspace, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "lost" in proc.stdout and "nothing was signalled" in proc.stdout
        time.sleep(0.5)
        assert leader.poll() is None and _alive(member)
        assert cli_json("show", run_id, cwd=workspace)["status"] == "lost"
    finally:
        _cleanup([p.pid for p in psutil.Process(leader.pid).children(recursive=True)] if leader.poll() is None else [])
        leader.kill()
        leader.wait()


def test_a_record_without_create_time_is_lost_and_its_pid_untouched(workspace):
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        run_id = "20260101-000000-leaver-noct"
        run_dir = workspace / "runs" / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "run.toml").write_text(
            f'id = "{run_id}"\nrecipe = "leaver"\nargv = ["x"]\ncwd = "/"\nstatus = "running"\n'
            f'pid = {bystander.pid}\nstarted = {time.time() - 60}\n')
        shown = cli_json("show", run_id, cwd=workspace)
        assert shown["status"] == "lost" and "no process create time" in shown["problem"]
        proc = cli("kill", run_id, cwd=workspace)
        assert proc.returncode == 0 and bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_kill_of_an_ended_run_changes_nothing(workspace):
    run = cli_json("launch", "exit_after", "--set", "code=0", "--set", "seconds=0.1", cwd=workspace)
    wait_for(lambda: cli_json("show", run["id"], cwd=workspace)["status"] == "exited", what="the run to exit")
    record = Path(run["run_dir"]) / "run.toml"
    before = record.read_text()
    pad = workspace / ".claude" / "scratchpad"
    pad_before = {p: p.read_text() for p in pad.rglob("*.md")} if pad.exists() else {}
    proc = cli("kill", run["id"], cwd=workspace)
    assert proc.returncode == 0, proc.stderr
    assert "already ended: exited (code 0)" in proc.stdout
    assert record.read_text() == before
    assert ({p: p.read_text() for p in pad.rglob("*.md")} if pad.exists() else {}) == pad_before
    as_json = cli_json("kill", run["id"], cwd=workspace)
    assert as_json["status"] == "exited" and as_json["exit_code"] == 0


def _cgroup_possible() -> bool:
    """Whether this machine lets this process make a cgroup v2 child of its own (root here)."""
    from urbanrun.engine.platform import cgroup

    path = cgroup.create("probe-0000")
    if path:
        os.rmdir(path)
    return path is not None


def test_with_the_babysitter_killed_from_outside_the_runs_cgroup_still_finds_every_process(workspace):
    """The babysitter is SIGKILLed by someone else: its orphans go to init, out of any tree that
    urbanrun can verify. Where the run has its own cgroup v2, kill still finds and ends them all."""
    run, roles = _launch(workspace, "daemon")
    everyone = roles["main"] + roles["daemon"]
    try:
        if not _cgroup_possible():
            assert run["cgroup"] is None
            pytest.skip("no cgroup v2 can be created here (not root, no delegated subtree)")
        assert run["cgroup"] and Path(run["cgroup"]).name == f"urbanrun-{run['id']}"
        for pid in everyone:  # both inside it, the setsid'd daemon too
            assert f"/urbanrun-{run['id']}" in Path(f"/proc/{pid}/cgroup").read_text()
        _kill_after_its_babysitter_died(workspace, run, everyone)
        wait_for(lambda: not Path(run["cgroup"]).exists(), timeout=10, what="the empty cgroup to be removed")
    finally:
        _cleanup(everyone)


def test_a_run_that_ends_with_no_urbanrun_open_leaves_no_cgroup_behind(workspace):
    """The babysitter removes the run's emptied cgroup itself: no urbanrun looks at the run after its
    launch (a look would remove it too)."""
    if not _cgroup_possible():
        pytest.skip("no cgroup v2 can be created here")
    run = cli_json("launch", "exit_after", "--set", "seconds=0.1", cwd=workspace)
    assert run["cgroup"] and Path(run["cgroup"]).is_dir()
    wait_for(lambda: not _alive(run["pid"]), what="the babysitter to end")
    assert not Path(run["cgroup"]).exists()


def test_a_record_naming_another_cgroup_is_never_killed_through_it(workspace):
    """A record edited to name the root cgroup (or another run's) gets nothing killed through it."""
    from urbanrun.engine.platform import cgroup

    if not _cgroup_possible():
        pytest.skip("no cgroup v2 can be created here")
    other = cgroup.create("20260101-000000-other-0000")
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        (Path(other) / "cgroup.procs").write_text(str(bystander.pid))
        for forged in (other, str(Path(other).parent)):
            assert cgroup.pids(forged, "20260101-000000-mine-0000") == []
            assert cgroup.kill(forged, "20260101-000000-mine-0000") is False
        assert bystander.poll() is None
        assert cgroup.pids(other, "20260101-000000-other-0000") == [bystander.pid]
    finally:
        bystander.kill()
        bystander.wait()
        time.sleep(0.2)
        cgroup.remove(other, "20260101-000000-other-0000")


def test_the_engine_the_tui_drives_shows_leftovers_and_its_kill_stops_them(workspace):
    """The TUI's path: Engine.kill and poll (the same request and escalation as the CLI's)."""
    from conftest import drive
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.runs.store import status_text
    from urbanrun.engine.session.loop import Engine

    engine = Engine(load_config(workspace / "config.toml"), record_session=False, gpu_source=None, host=False)
    record = engine.launch("leaver", {"mode": "exit0"})
    roles = wait_for(lambda: _pids(engine.store.run_dir(record.id)), what="the script's processes")
    left = roles["child"] + roles["daemon"]
    try:
        drive(engine, lambda: len(engine.state.runs[record.id].record.get("leftovers", [])) == 2)
        shown = engine.state.runs[record.id].record
        assert status_text(shown) == "exited · 2 leftover processes" and shown["exit_code"] == 0
        engine.kill(record.id, grace=1)
        drive(engine, lambda: not engine.state.runs[record.id].record.get("leftovers"), timeout=30)
        assert [pid for pid in left if _alive(pid)] == []
        assert engine.state.runs[record.id].record["status"] == "exited"
        engine.kill(record.id)  # now nothing of it is alive: a notice, nothing changed
        notices = [e for e in engine.poll() if type(e).__name__ == "Notice" and e.run_id == record.id]
        assert any("already ended (exited): nothing to stop" in n.text for n in notices)
    finally:
        engine.close()
        _cleanup(left)


def _freezer_group(name: str) -> Path | None:
    """A cgroup v1 freezer group: a process frozen there is in state D and a SIGKILL takes effect
    only when it is thawed, as with a process stuck in I/O (root on a v1/hybrid host only)."""
    group = Path("/sys/fs/cgroup/freezer") / name
    try:
        group.mkdir()
    except OSError:
        return None
    return group if (group / "freezer.state").exists() else None


def test_a_process_that_survives_the_hard_kill_is_named_with_why_and_kill_exits_1(workspace):
    run, roles = _launch(workspace, "mixed")
    stuck, other = roles["child"]
    group = _freezer_group(f"urbanrun-test-{run['id']}")
    if group is None:
        _cleanup([pid for pids in roles.values() for pid in pids])
        pytest.skip("no cgroup v1 freezer to put a process in uninterruptible sleep")
    try:
        (group / "tasks").write_text(str(stuck))
        (group / "freezer.state").write_text("FROZEN")
        wait_for(lambda: psutil.Process(stuck).status() == psutil.STATUS_DISK_SLEEP, what="state D")
        proc = cli("kill", run["id"], "--grace", "0", cwd=workspace, timeout=90)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"still alive: {stuck} python" in proc.stderr and "uninterruptible sleep (state D)" in proc.stderr
        assert not _alive(other) and not _alive(roles["main"][0])  # the rest of the run is gone
        shown = cli_json("show", run["id"], cwd=workspace)
        assert shown["status"] == "running" and shown["kill_requested"]  # not `killed`: something lives
        assert [(d["pid"], d["state"]) for d in shown["leftovers"]] == [(stuck, "disk-sleep")]
        assert "stopping · 1 process survives the kill" in cli("ls", cwd=workspace, check=True).stdout
        (group / "freezer.state").write_text("THAWED")  # its I/O "returns": the pending kill lands
        wait_for(lambda: not _alive(stuck), what="the thawed process to die")
        final = wait_for(lambda: (r := cli_json("show", run["id"], cwd=workspace))["status"] != "running" and r,
                         what="the record to say killed")
        assert final["status"] == "killed" and final["leftovers"] == []
    finally:
        (group / "freezer.state").write_text("THAWED")
        _cleanup([pid for pids in roles.values() for pid in pids])
        wait_for(lambda: not (group / "tasks").read_text().strip(), timeout=10, what="the freezer group to empty")
        group.rmdir()


def test_killing_a_copy_of_a_live_runs_folder_never_stops_the_original(workspace):
    """`cp -r runs/A runs/B` (an id fixed to match its folder) while A runs: B's record names A's
    babysitter, with its true create time. Killing B used to stop A's whole tree and call B killed."""
    run, roles = _launch(workspace, "mixed")
    original = Path(run["run_dir"])
    copy_id = run["id"][:-4] + "c0de"
    copy = original.parent / copy_id
    shutil.copytree(original, copy)
    (copy / "run.toml").write_text((copy / "run.toml").read_text().replace(run["id"], copy_id))
    try:
        proc = cli("kill", copy_id, "--grace", "0", cwd=workspace, timeout=60)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "nothing was signalled" in proc.stdout, proc.stdout
        time.sleep(0.5)
        assert all(_alive(pid) for pids in roles.values() for pid in pids)  # A's whole tree
        assert cli_json("show", run["id"], cwd=workspace)["status"] == "running"
        assert cli_json("show", copy_id, cwd=workspace)["status"] == "lost"
    finally:
        cli("kill", run["id"], "--grace", "0", cwd=workspace, timeout=60)
    assert not any(_alive(pid) for pids in roles.values() for pid in pids)


@pytest.mark.parametrize("mode", ["mixed", "daemon"])
def test_with_the_babysitter_killed_and_no_cgroup_kill_still_ends_every_process(workspace, mode):
    """No cgroup (a user without a delegated subtree, macOS) and the babysitter SIGKILLed from
    outside: kill found nothing, waited, and said 'still alive: the babysitter' (dead) while the
    run's processes all lived on. Every process of a run carries its URBANRUN_RUN_ID."""
    run, roles = _launch(workspace, mode)
    everyone = [pid for pids in roles.values() for pid in pids]
    record = Path(run["run_dir"]) / "run.toml"
    record.write_text("".join(line for line in record.read_text().splitlines(True)
                              if not line.startswith("cgroup =")))  # as made where none can be
    try:
        _kill_after_its_babysitter_died(workspace, run, everyone)
        assert cli_json("show", run["id"], cwd=workspace)["status"] in ("killed", "lost")
    finally:
        _cleanup(everyone)
        if run["cgroup"] and Path(run["cgroup"]).exists():
            os.rmdir(run["cgroup"])


def test_two_kills_at_once_from_two_processes_agree_and_leave_nothing(workspace):
    """Two `urbanrun kill` of one run started together (a person and an agent): both end when
    nothing of the run is alive, both say killed, and neither reports it while a process lives."""
    run, roles = _launch(workspace, "mixed")
    everyone = [pid for pids in roles.values() for pid in pids]
    try:
        kills = [subprocess.Popen([sys.executable, "-m", "urbanrun.engine.cli", "kill", run["id"], "--grace", "1",
                                   "--json"], cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [k.communicate(timeout=90) for k in kills]
        assert [k.returncode for k in kills] == [0, 0], outs
        assert [pid for pid in everyone if _alive(pid)] == []
        assert all(json.loads(out)["status"] == "killed" for out, _ in outs)
    finally:
        _cleanup(everyone)
