"""The graceful stop asked of a run's babysitter (engine/runs/stop_request.py): how a kill reaches a
Windows run, whose console only the babysitter shares. Exercised for real here with the request
path switched on (platform.STOP_BY_REQUEST, Windows' setting): the stop is sent by the babysitter,
not by the process that kills (the script learns the sender's pid), once, answered in the run
folder; the hard kill after the grace comes whether or not the babysitter answered."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import SCRIPTS, wait_for
from urbanrun.engine import platform
from urbanrun.engine.cli.main import main
from urbanrun.engine.core.config import load_config
from urbanrun.engine.runs import stop_request
from urbanrun.engine.session.loop import Engine

RECIPE = f"""
[recipes.graceful]
command = ["{{python}}", "{SCRIPTS / 'graceful_stop.py'}"]
"""

pytestmark = pytest.mark.skipif(not hasattr(signal, "sigwaitinfo"),
                                reason="the script learns its sender by sigwaitinfo")


@pytest.fixture
def engine(workspace, monkeypatch):
    monkeypatch.setattr(platform, "STOP_BY_REQUEST", True)  # as on Windows
    with open(workspace / "config.toml", "a") as fh:
        fh.write(RECIPE)
    engine = Engine(load_config(workspace / "config.toml"), record_session=False, gpu_source=None, host=False)
    yield engine
    engine.close()


def _pids(run_dir: Path) -> dict[str, int] | None:
    path = run_dir / "pids.txt"
    if not path.exists():
        return None
    return {role: int(pid) for role, pid in (line.split() for line in path.read_text().splitlines())}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_and_settle(engine, run_id, grace):
    engine.kill(run_id, grace=grace)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        engine.poll()
        record = engine.store.load(run_id)
        if not record.watched:
            return record
        time.sleep(0.1)
    raise AssertionError(f"{run_id} was not settled after its kill")


def test_the_babysitter_sends_the_stop_once_and_answers(engine):
    record = engine.launch("graceful", {})
    run_dir = engine.store.run_dir(record.id)
    pids = wait_for(lambda: _pids(run_dir), what="the script's pids")
    wait_for(lambda: "training" in (run_dir / "output.log").read_text(), what="the script to wait for its stop")
    final = _kill_and_settle(engine, record.id, grace=1.0)
    log = (run_dir / "output.log").read_text()
    assert f"SIGTERM from {record.pid}; checkpoint saved" in log  # sent by the babysitter, not by us
    assert log.count("checkpoint saved") == 1
    answer = stop_request.served(run_dir)
    assert answer["sent"] == platform.STOP_NAME and answer["child_pid"] == pids["main"] and answer["error"] is None
    assert final.status == "killed" and final.exit_code == 3  # the script ended on its own, after its checkpoint
    assert not _alive(pids["helper"])  # it ignored the stop: the hard kill after the grace ended it
    assert not stop_request.request(run_dir)  # one graceful stop per run
    assert stop_request.outcome(run_dir) is None  # nothing to add to the kill's report


def test_the_hard_kill_comes_when_the_babysitter_cannot_answer(engine, capsys):
    """The babysitter is frozen (SIGSTOP) through the grace: no stop is sent, `urbanrun kill` ends the
    run anyway and says so; thawed, the babysitter finds its child gone and records how, serving nothing."""
    record = engine.launch("graceful", {})
    run_dir = engine.store.run_dir(record.id)
    pids = wait_for(lambda: _pids(run_dir), what="the script's pids")
    os.kill(record.pid, signal.SIGSTOP)

    def thaw_once_the_run_is_gone():
        wait_for(lambda: not _alive(pids["main"]) and not _alive(pids["helper"]), what="the hard kill")
        os.kill(record.pid, signal.SIGCONT)

    thawer = threading.Thread(target=thaw_once_the_run_is_gone, daemon=True)
    thawer.start()
    try:
        assert main(["kill", record.id, "--grace", "0.5"]) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):  # thawed, ended and reaped by now, if all went well
            os.kill(record.pid, signal.SIGCONT)
    thawer.join(30)
    final = engine.store.load(record.id)
    said = capsys.readouterr().out
    assert f"killed {record.id}" in said and "note: its babysitter did not answer the stop request" in said
    assert (run_dir / stop_request.STOP_REQUEST).exists() and stop_request.served(run_dir) is None
    assert "did not answer the stop request" in stop_request.outcome(run_dir)
    assert final.status == "killed" and final.signal == signal.SIGKILL
    assert "checkpoint saved" not in (run_dir / "output.log").read_text()


def test_serve_answers_once_and_says_why_a_stop_could_not_be_sent(tmp_path):
    sent = []
    assert stop_request.outcome(tmp_path) is None  # no stop asked (POSIX, or a forced kill)
    assert not stop_request.serve(tmp_path, 42, lambda: sent.append(1))  # nothing asked
    assert stop_request.request(tmp_path, now=5.0) and not stop_request.request(tmp_path)
    assert json.loads((tmp_path / stop_request.STOP_REQUEST).read_text())["requested"] == 5.0

    def refused():
        raise ProcessLookupError(3, "No such process")

    assert stop_request.outcome(tmp_path).startswith("its babysitter did not answer")
    assert stop_request.serve(tmp_path, 42, refused)
    assert stop_request.outcome(tmp_path) == (f"its babysitter's graceful stop failed: {platform.STOP_NAME} could "
                                              f"not be sent: [Errno 3] No such process.")
    answer = stop_request.served(tmp_path)
    assert answer["child_pid"] == 42
    assert answer["error"] == f"{platform.STOP_NAME} could not be sent: [Errno 3] No such process"
    assert not stop_request.serve(tmp_path, 42, lambda: sent.append(1)) and sent == []  # answered: never again
    (tmp_path / stop_request.STOP_SERVED).write_text("{half")
    assert stop_request.served(tmp_path) is None  # an unreadable answer is no answer
