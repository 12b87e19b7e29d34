"""The babysitter: started by urbanrun in a session of its own, it runs one command, waits for it,
and writes how it ended to RUN_DIR/exit_status.json — so an exit is known even when no urbanrun
was open at the time. Standard library only; run as a script:

    python babysitter.py RUN_DIR -- ARGV...

It ignores SIGTERM/SIGINT/SIGHUP (through a handler, not SIG_IGN, so the child does not inherit
the ignoring): a kill signals the whole tree, and the babysitter must outlive its child to record
the child's end. stdout/stderr are inherited from urbanrun (the run's output.log).
"""

import json
import os
import signal
import subprocess
import sys
import time

EXIT_FILE = "exit_status.json"


def _write_json(path, data):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _ignore(signum, frame):
    pass


def main(argv):
    if len(argv) < 3 or argv[1] != "--":
        print("usage: babysitter.py RUN_DIR -- ARGV...", file=sys.stderr)
        return 2
    run_dir, command = argv[0], argv[2:]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    started = time.time()
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"urbanrun: could not start {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        _write_json(os.path.join(run_dir, EXIT_FILE),
                    {"exit_code": 127, "signal": None, "started": started, "ended": time.time(),
                     "child_pid": None, "error": str(exc)})
        return 127
    _write_json(os.path.join(run_dir, "child.json"), {"pid": child.pid, "started": started})
    code = child.wait()
    _write_json(os.path.join(run_dir, EXIT_FILE),
                {"exit_code": code if code >= 0 else None, "signal": -code if code < 0 else None,
                 "started": started, "ended": time.time(), "child_pid": child.pid})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
