"""`urbanrun gpus`: an nvidia-smi style table with each process's run, or nvidia-smi's own
`--query-gpu=... --format=csv` output; `-l SECONDS` to loop; `--json`."""

from __future__ import annotations

import sys
import time

from urbanrun.engine.cli.output import emit
from urbanrun.engine.gpu.smi_format import parse_format, query_csv, table
from urbanrun.engine.gpu.sources import annotate, default_gpu_source
from urbanrun.engine.gpu.host import pid_map, run_trees
from urbanrun.engine.runs.store import RunStore


def with_runs(reading, store: RunStore):
    """The reading's processes with their run ids."""
    status, gpus, procs = reading
    records, _ = store.load_all()
    runs = {r.id: (r.pid, r.pid_create_time, store.run_dir(r.id)) for r in records if r.active and r.pid}
    procs, _ = annotate(procs, pid_map(run_trees(runs)))
    return status, gpus, procs


def gpu_snapshot(store: RunStore) -> dict:
    """NVML's status, the GPUs and their processes (with run ids) now, as `gpus --json` prints them."""
    status, gpus, procs = with_runs(default_gpu_source().snapshot(), store)
    if not status.get("available"):
        return {"status": status, "gpus": [], "processes": []}
    return {"status": status, "gpus": gpus, "processes": procs}


def cmd_gpus(args, store: RunStore) -> int:
    if args.format and not args.query_gpu:
        parse_format(args.format)
    source = default_gpu_source()
    reading = source.snapshot()
    while True:
        status, gpus, procs = with_runs(reading, store)
        if not status.get("available"):
            if args.query_gpu:  # as nvidia-smi: nothing on stdout, the reason on stderr, exit 1
                print(status.get("reason", "no NVIDIA GPU found"), file=sys.stderr)
                return 1
            if args.json:
                emit({"status": status, "gpus": [], "processes": []})
            else:
                print(f"{status.get('reason', 'no NVIDIA GPU found')}. urbanrun keeps working without GPU panes.")
            return 0
        if args.query_gpu:
            print(query_csv(args.query_gpu, args.format or "csv", status, gpus))
        elif args.json:
            emit({"status": status, "gpus": gpus, "processes": procs})
        else:
            print(table(status, gpus, procs))
        sys.stdout.flush()
        if not args.loop:
            return 0
        try:
            time.sleep(args.loop)
        except KeyboardInterrupt:
            return 0
        reading = source.sample(time.time()) or reading
