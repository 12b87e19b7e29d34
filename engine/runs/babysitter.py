"""The babysitter: started by urbanrun in a session of its own, it runs one command, waits for it,
and writes how it ended to RUN_DIR/exit_status.json — so an exit is known even when no urbanrun
was open at the time. The standard library, the platform layer and the stop request only; run as a script:

    python babysitter.py RUN_DIR [--cgroup PATH] -- ARGV...

It ignores the stop signals (through a handler, not SIG_IGN, so the child does not inherit the
ignoring): a stop reaches the whole tree, and the babysitter must outlive its child to record the
child's end. While it waits it serves a stop asked through the run folder (stop_request.py: the way a
kill reaches a Windows run, whose console only the babysitter shares). On Windows the child starts
suspended, joins the run's named Job Object (kill-on-close, held open while the babysitter lives)
and only then runs; if it cannot join, it never runs. stdout/stderr are inherited from urbanrun
(the run's output.log).

On Linux it is a child subreaper: processes of the run whose parent exits (double-forked,
daemons in sessions of their own included) are reparented to it rather than to init, so they stay findable as
its descendants; after writing the exit status it stays, reaping them, until none is left (that
is what "exited · N leftover processes" counts). With --cgroup, the command starts inside the
run's own cgroup v2 (the babysitter stays outside it, so killing the cgroup spares the recorder).
"""

import json
import os
import subprocess
import sys
import time

from urbanrun.engine import platform
from urbanrun.engine.platform import cgroup as platform_cgroup
from urbanrun.engine.runs import stop_request

EXIT_FILE = "exit_status.json"


def _write_json(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        platform.replace(tmp, path)  # retried on Windows while urbanrun reads the file
    except OSError:
        try:
            os.unlink(tmp)  # a half-written temp file would hold the space the retry needs
        except OSError:
            pass
        raise


def _write_until_written(path, data, first_wait=0.5, longest_wait=30.0):
    """The exit status is the one fact nobody else can recover: on a full (or failing) disk,
    keep it in memory and retry until it lands, so the run is never taken for `lost`."""
    wait = first_wait
    while True:
        try:
            _write_json(path, data)
            return
        except OSError as exc:
            if not os.path.isdir(os.path.dirname(path)):  # the run's folder was deleted: nobody will read it
                return
            if wait == first_wait:  # said once
                try:
                    print(f"urbanrun: cannot write {path} ({exc.strerror or exc}); retrying every "
                          f"{longest_wait:g} s at most until it can.", file=sys.stderr, flush=True)
                except OSError:
                    pass  # the log is on the same full disk
            time.sleep(wait)
            wait = min(wait * 2, longest_wait)


def _ignore(signum, frame):
    pass


def _wait_serving_stop_requests(run_dir, child):
    """Wait for the child; meanwhile, a stop asked through the run folder (stop_request.py) is sent
    to it once, by this process: on Windows the only one sharing the run's console."""
    while child.poll() is None:
        if stop_request.serve(run_dir, child.pid, lambda: platform.stop_child(child)):
            return child.wait()  # one graceful stop per run: nothing more to look for
        time.sleep(stop_request.POLL_SECONDS)  # five looks a second (a stat), no busy wait
    return child.returncode


def main(argv):
    cgroup = None
    if len(argv) >= 3 and argv[1] == "--cgroup":
        cgroup, argv = argv[2], [argv[0], *argv[3:]]
    if len(argv) < 3 or argv[1] != "--":
        print("usage: babysitter.py RUN_DIR [--cgroup PATH] -- ARGV...", file=sys.stderr)
        return 2
    run_dir, command = argv[0], argv[2:]
    run_id = os.path.basename(os.path.normpath(run_dir))
    platform.handle_stop_signals(_ignore)
    platform.become_subreaper()
    started = time.time()
    try:
        job = platform.create_job(platform.job_name(run_id))
        child = platform.start_child(command, job, cgroup, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"urbanrun: could not start {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        _write_until_written(os.path.join(run_dir, EXIT_FILE),
                    {"exit_code": 127, "signal": None, "started": started, "ended": time.time(),
                     "child_pid": None, "error": str(exc)})
        return 127
    try:
        _write_json(os.path.join(run_dir, "child.json"), {"pid": child.pid, "started": started})
    except OSError:
        pass  # only a hint for finding a child whose babysitter was killed; the wait matters more
    code = _wait_serving_stop_requests(run_dir, child)
    _write_until_written(os.path.join(run_dir, EXIT_FILE),
                {"exit_code": code if code >= 0 else None, "signal": -code if code < 0 else None,
                 "started": started, "ended": time.time(), "child_pid": child.pid})
    platform.reap_children()  # the run's leftovers, reparented here: their end is waited for
    platform_cgroup.remove(cgroup, run_id)  # empty now: every process of the run has ended
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
