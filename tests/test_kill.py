"""Kill takes the whole tree: children, grandchildren and an orphan left in the run's session,
with SIGTERM, and with SIGKILL after the grace period when the tree ignores SIGTERM."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from conftest import cli, cli_json, wait_for


def _tree_pids(run_dir: Path) -> dict[int, str]:
    """pid -> role (main, child, grandchild, parent-of-orphan, orphan), as the script wrote them."""
    lines = (run_dir / "pids.txt").read_text().split("\n") if (run_dir / "pids.txt").exists() else []
    return {int(pid): role for role, pid in (l.split() for l in lines if l)}


@pytest.mark.parametrize("ignore_term", [False, True])
def test_kill_leaves_no_process_of_the_tree(workspace, ignore_term):
    run = cli_json("launch", "forker", "--set", f"ignore_term={str(ignore_term).lower()}", cwd=workspace)
    run_dir = Path(run["run_dir"])
    pids = wait_for(lambda: len(p := _tree_pids(run_dir)) == 7 and p, what="the tree of 7 processes")
    parent_of_orphan = next(pid for pid, role in pids.items() if role == "parent-of-orphan")
    wait_for(lambda: not psutil.pid_exists(parent_of_orphan)
             or psutil.Process(parent_of_orphan).status() == psutil.STATUS_ZOMBIE,
             what="the orphan's parent to exit")
    alive_before = [p for p in pids if psutil.pid_exists(p)]
    assert len(alive_before) >= 6
    proc = cli("kill", run["id"], "--grace", "1", cwd=workspace, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "no process of the run is left" in proc.stdout
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert not psutil.pid_exists(run["pid"]) or psutil.Process(run["pid"]).status() == psutil.STATUS_ZOMBIE
    final = cli_json("show", run["id"], cwd=workspace)
    assert final["status"] == "killed"
    assert final["signal"] == (9 if ignore_term else 15)


def test_force_kill_and_killing_a_finished_run(workspace):
    run = cli_json("launch", "forker", cwd=workspace)
    wait_for(lambda: len(_tree_pids(Path(run["run_dir"]))) >= 3)
    assert cli("kill", run["id"], "--force", cwd=workspace).returncode == 0
    assert cli_json("show", run["id"], cwd=workspace)["signal"] == 9
    again = cli("kill", run["id"], cwd=workspace)
    assert again.returncode == 0 and "already ended: killed" in again.stdout


def test_a_run_ending_between_the_exit_status_read_and_the_process_look_is_not_lost(workspace, monkeypatch):
    """Two commands on one run at once (kill + kill + wait): one reconcile read no exit status, the
    babysitter then wrote it and ended, and the process look found nothing alive: the run was
    recorded `lost` ("ended while no exit status was recorded") though its status was on disk, and
    `wait` reported it so. The exit status is read once more before a run is called lost."""
    from urbanrun.engine.core.config import load_config
    from urbanrun.engine.runs import proctree
    from urbanrun.engine.runs.store import RunStore
    from urbanrun.engine.runs.supervisor import Supervisor

    config = load_config(workspace / "config.toml")
    store = RunStore(workspace / "runs")
    record = Supervisor(config, store).launch("exit_after", {"seconds": "0.1", "code": "3"})
    wait_for(lambda: store.read_exit_status(record.id) is not None
             and proctree.run_root(record, store.run_dir(record.id)) is None, what="the run and its babysitter to end")
    seen, real = [], store.read_exit_status

    def read_before_it_was_written(run_id):  # the first read came just before the babysitter's write
        seen.append(run_id)
        return None if len(seen) == 1 else real(run_id)

    monkeypatch.setattr(store, "read_exit_status", read_before_it_was_written)
    assert Supervisor(config, store).reconcile(record)
    assert (record.status, record.exit_code, record.error) == ("failed", 3, None), record
    assert store.load(record.id).status == "failed"
