"""A run's code state, taken at launch: the commit of its cwd's git repository, whether the tree was
dirty, and a content hash of the uncommitted diff (the diff itself is kept in the run folder as
code.diff, size-capped). git is run as argv with a timeout; a cwd outside any repository (or no git
on the machine) simply has no code state."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from urbanrun.engine.core import redact
from urbanrun.engine.core.atomic import atomic_write_bytes

DIFF_FILE = "code.diff"
DIFF_CAP = 1 << 20  # bytes of the uncommitted diff kept in the run folder
GIT_TIMEOUT = 5.0


def git(repo: str | Path, *args: str, timeout: float = GIT_TIMEOUT) -> str | None:
    """git's stdout, or None when git is missing, fails or takes too long."""
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode("utf-8", errors="replace") if out.returncode == 0 else None


@dataclass(frozen=True)
class CodeState:
    commit: str
    root: str  # the repository's top folder
    dirty: bool
    diff: str  # `git diff HEAD` (staged and unstaged changes of tracked files)
    diff_sha: str | None  # sha256 of the diff, None when clean

    def record_fields(self) -> dict:
        return {"git_commit": self.commit, "git_dirty": self.dirty, "git_root": self.root,
                "git_diff_sha": self.diff_sha}


def capture(cwd: str | Path) -> CodeState | None:
    commit = git(cwd, "rev-parse", "HEAD")
    root = git(cwd, "rev-parse", "--show-toplevel")
    if not commit or not root:
        return None
    diff = git(root.strip(), "diff", "HEAD", "--no-color", "--no-ext-diff") or ""
    sha = hashlib.sha256(diff.encode("utf-8", errors="replace")).hexdigest() if diff else None
    return CodeState(commit=commit.strip(), root=root.strip(), dirty=bool(diff), diff=diff, diff_sha=sha)


def keep_diff(run_dir: Path, state: CodeState | None) -> None:
    """Write the uncommitted diff beside the run's record (capped; a note says when it was cut)."""
    if state is None or not state.diff:
        return
    data = redact.text(state.diff).encode("utf-8", errors="replace")  # a diff may add a token to a file
    if len(data) > DIFF_CAP:
        data = data[:DIFF_CAP] + f"\n# urbanrun: diff cut at {DIFF_CAP} of {len(data)} bytes\n".encode()
    try:
        atomic_write_bytes(run_dir / DIFF_FILE, data)  # whole or not at all: a cut one would pass for the diff
    except OSError:
        pass  # the hash in the record still says which diff it was


def diff_files(diff: str) -> list[str]:
    """Paths (relative to the repository) touched by a unified git diff."""
    files = []
    for line in diff.splitlines():
        if line.startswith("diff --git a/"):
            path = line.split(" b/", 1)[-1]
            if path not in files:
                files.append(path)
    return files
