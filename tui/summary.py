"""The deterministic plain-text summary a headless replay prints: the same recording always
gives the same bytes (no wall clock, sorted everywhere)."""

from __future__ import annotations

from pathlib import Path

from urbanrun.engine.core.state import State, loss_name

from .formatting import duration, num


def replay_summary(state: State, path: str, events: int) -> str:
    lines = [f"replay of {Path(path).name}: {events} events"]
    lines.append(f"runs: {len(state.runs)}")
    for run_id in state.newest_first():  # as everywhere
        run = state.runs[run_id]
        rec = run.record
        how = f"signal {rec['signal']}" if rec.get("signal") else f"exit {rec.get('exit_code')}"
        name = loss_name(run)
        series = run.metrics.get(name) if name else None
        loss = (f"{name}: best {num(series.best)} at step {num(series.best_step)}, last {num(series.last)}, "
                f"{series.count} points") if series else "no loss metric"
        runtime = duration(rec["ended"] - rec["started"]) if rec.get("ended") and rec.get("started") else "-"
        peak = rec.get("gpu_mem_peak_mb") or (run.gpu_mem_peak / 2 ** 20 if run.gpu_mem_peak else None)
        lines.append(f"  {run_id}  {rec.get('recipe')}  {rec.get('status')} ({how})  time {runtime}")
        lines.append(f"    {loss}")
        lines.append(f"    GPU peak {'-' if not peak else f'{peak:.0f} MiB'}"
                     f"{'' if run.gpu_util_mean is None else f', mean util {run.gpu_util_mean:.0f}%'}")
        if rec.get("diagnosis"):
            lines.append(f"    diagnosis: {rec['diagnosis']}")
    status = state.gpu_status
    if status.get("available"):
        lines.append(f"GPUs: {len(state.gpus)} (driver {status.get('driver')})")
        for g in state.gpus:
            history = state.gpu_history.get(g.get("index"), [])
            peak = max((h[2] or 0 for h in history), default=0)
            lines.append(f"  GPU{g.get('index')} {g.get('name')}: peak memory {peak / 2**20:.0f} MiB")
    else:
        lines.append(f"GPUs: none ({status.get('reason', 'no GPU readings in the recording')})")
    warnings = [n for n in state.notices if n.level in ("warning", "error")]
    lines.append(f"warnings: {len(warnings)}")
    for n in warnings[-10:]:
        lines.append(f"  {n.level}: {n.text}")
    return "\n".join(lines) + "\n"
