"""The event engine: poll() turns a real run into events, the reducer builds state, the recorder
writes every event, and replaying the recording rebuilds the same state, at its own pace when timed."""

from __future__ import annotations


from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.engine.core.events import LogLines, MetricPoints, Notice, RunChanged, decode, encode
from urbanrun.engine.session.recorder import read_session
from urbanrun.engine.core.state import State, loss_name

from conftest import ROOT, drive, wait_for




def test_poll_follows_a_real_run_and_replay_rebuilds_the_state(workspace):
    engine = Engine(load_config(workspace / "config.toml"))
    record = engine.launch("cones", {"epochs": "2"})
    events = drive(engine, lambda e=engine: e.state.runs[record.id].status == "exited"
                    and e.state.runs[record.id].log_lines_total > 0)
    engine.poll()
    engine.close()
    kinds = {type(e) for e in events}
    assert {RunChanged, LogLines, MetricPoints} <= kinds
    run = engine.state.runs[record.id]
    assert run.record["exit_code"] == 0
    assert any(line.startswith("Epoch 2/2 | Train Loss") for line in run.log)
    assert loss_name(run) == "loss" and run.metrics["loss"].count == 4  # 14 train cones, 8 a batch, 2 epochs
    assert run.metrics["val_loss"].count == 2
    statuses = [e.run["status"] for e in events if isinstance(e, RunChanged) and e.run_id == record.id]
    assert statuses[0] == "running" and statuses[-1] == "exited"

    recorded = read_session(engine.recorder.path)
    assert [encode(e) for e in recorded] == [encode(e) for e in events]
    replayed = State()
    replayed.apply_all(recorded)
    again = replayed.runs[record.id]
    assert again.record == run.record and list(again.log) == list(run.log)
    assert list(again.metrics["loss"].values) == list(run.metrics["loss"].values)


def test_runs_launched_elsewhere_and_killed_elsewhere_are_seen(workspace):
    """Two engines on one runs folder (the TUI and a CLI): each sees the other's launch and kill."""
    config = load_config(workspace / "config.toml")
    watcher = Engine(config, record_session=False)
    actor = Engine(config, record_session=False)
    watcher.poll()
    record = actor.launch("held")  # ends only when killed, however long the watcher takes to see it
    wait_for(lambda: watcher.poll() is not None and record.id in watcher.state.runs)
    actor.kill(record.id, grace=5)
    drive(watcher, lambda e=watcher: e.state.runs[record.id].status == "killed")
    assert watcher.state.runs[record.id].record["signal"] == 15


def test_corrupt_metrics_lines_are_counted_and_the_rest_flows(workspace):
    config = load_config(workspace / "config.toml")
    engine = Engine(config, record_session=False)
    record = engine.launch("exit_after", {"seconds": "0.1"})
    metrics = engine.store.run_dir(record.id) / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 1.0}\n{not json\n{"step": 2, "loss": NaN, "nested": {"acc": 0.5}}\n')
    drive(engine, lambda e=engine: e.state.runs[record.id].status == "exited")
    run = engine.state.runs[record.id]
    assert run.metrics["loss"].count == 2 and run.metrics["nested/acc"].last == 0.5
    notices = [n.text for n in engine.state.notices if isinstance(n, Notice)]
    assert any("1 bad record(s) skipped" in t and "line 2" in t for t in notices)


def test_events_round_trip_through_json():
    event = MetricPoints(ts=1.5, run_id="r", source="m", points=({"step": 1, "loss": float("nan")},))
    back = decode(encode(event))
    assert back.run_id == "r" and back.points[0]["step"] == 1 and back.points[0]["loss"] != back.points[0]["loss"]


def test_typed_values_from_the_form_all_reach_the_command(workspace):
    from urbanrun.engine.core.config import DEFAULT_CONFIG

    engine = Engine(load_config(DEFAULT_CONFIG), workspace / "runs", record_session=False, gpu_source=None)
    record = engine.launch("cones", values={"epochs": 1, "batch_size": 2, "device": "cpu", "amp": True,
                                            "dims": [8, 8, 8], "max_steps": 1})
    assert record.changed == {"epochs": 1, "batch_size": 2, "device": "cpu", "amp": True, "dims": [8, 8, 8],
                              "max_steps": 1}
    argv = record.argv
    assert argv[argv.index("--epochs") + 1] == "1" and argv[argv.index("--batch-size") + 1] == "2"
    assert argv[argv.index("--device") + 1] == "cpu" and "--amp" in argv and "--max-steps" in argv
    drive(engine, lambda e=engine: e.state.runs[record.id].status != "running")


def test_a_log_lines_metric_yields_to_the_structured_sources_copy_of_it():
    # the demo prints `Epoch 3/30 | Train Loss: 0.14 | Val Loss: 0.12` (stepped by epoch) and writes
    # train_loss_epoch and val_loss to metrics.jsonl: the log's copies must not join the plot, while
    # what only the log says (grad_norm) stays
    from urbanrun.engine.core.state import State

    state = State()
    state.apply(MetricPoints(ts=1, run_id="r", source="output.log", format="log",
                             points=({"epoch": 1, "Train Loss": 0.5, "val_loss": 0.6, "grad_norm": 3.0},)))
    assert set(state.runs["r"].metrics) == {"Train Loss", "val_loss", "grad_norm"}  # log-only so far
    state.apply(MetricPoints(ts=2, run_id="r", source="metrics.jsonl", format="jsonl",
                             points=({"step": 6, "epoch": 1, "train/loss_step": 0.55, "train/loss_epoch": 0.5,
                                      "val_loss": 0.6},)))
    state.apply(MetricPoints(ts=3, run_id="r", source="output.log", format="log",
                             points=({"epoch": 2, "Train Loss": 0.4, "val_loss": 0.5, "grad_norm": 2.0},)))
    run = state.runs["r"]
    assert set(run.metrics) == {"train/loss_step", "train/loss_epoch", "val_loss", "grad_norm"}
    assert run.metrics["val_loss"].count == 1 and run.metric_formats["val_loss"] == "jsonl"
    assert run.metrics["grad_norm"].count == 2 and run.metric_formats["grad_norm"] == "log"


def test_a_timed_replay_keeps_the_recordings_pace_times_its_speed_and_stands_still_when_paused():
    """--replay without --headless: the events come as the recording's clock, run at `speed`, reaches
    them; time spent paused does not count; at the end the state is the fast replay's."""
    from urbanrun.engine.session.replay import ReplaySource

    path = ROOT / "tests" / "fixtures" / "sessions" / "cones_cpu.jsonl"
    clock = [1000.0]
    replay = ReplaySource(path, speed=2.0, clock=lambda: clock[0])
    t0, every = replay.t0, read_session(path)
    due = lambda recorded_seconds: [e for e in every if e.ts <= t0 + recorded_seconds]  # noqa: E731
    got = replay.poll(1000.0)  # the start: what the recording has at its first instant
    assert got == due(0.0)
    got += replay.poll(1001.0)  # one second at speed 2: two seconds of the recording
    assert got == due(2.0) and len(got) < len(every)
    clock[0] = 1001.0
    assert replay.toggle_pause() is True
    assert replay.poll(1100.0) == []  # paused: nothing comes, however long
    clock[0] = 1100.0
    assert replay.toggle_pause() is False
    got += replay.poll(1100.5)  # 99 s paused do not count: 1.5 s played, 3 s of the recording
    assert got == due(3.0)
    got += replay.poll(1100.0 + 1 + 99 + 10)
    assert got == every and replay.done
    fast = ReplaySource(path, fast=True)
    fast.poll()
    assert [encode(e) for e in got] == [encode(e) for e in every]
    assert {k: r.record for k, r in replay.state.runs.items()} == {k: r.record for k, r in fast.state.runs.items()}

