"""Follow a growing file by byte offset, line by line, never dropping or repeating a line.

- Only new bytes are read; an unchanged file costs one stat().
- An incomplete last line is held until its newline arrives.
- Truncation, or a rewrite in place (the bytes before our offset changed), restarts from 0 and
  sets `restarted` so a parser can drop what it derived from the old content.
- Replacement or rotation (new inode): the old file is read to its end (its last partial line
  included), then the new one is followed from its start. A deleted file is finished the same way.
- Each of those changes, and a path that cannot be read (a symlink loop, no permission, a FIFO:
  `refused`, never an exception), is said once by take_notices(), so a stream can tell its reader.
- Undecodable bytes become U+FFFD; a line over `max_line` bytes is skipped and counted; an empty
  line takes its place, so line numbers after it stay true.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from pathlib import Path

from urbanrun.engine import platform
from urbanrun.engine.core.files import not_regular

READ_CHUNK = 1 << 20
MAX_READ_PER_POLL = 32 << 20  # bound one poll's work; the rest comes next poll
GUARD = 32  # bytes before the offset remembered to detect a rewrite in place
NOTICE_LEVELS = {"file_gone": "warning", "file_replaced": "info", "file_rewritten": "warning",
                 "file_unreadable": "error"}


class FileFollower:
    def __init__(self, path: str | os.PathLike, max_line: int = 4 << 20, start_at_end: bool = False,
                 max_read: int = MAX_READ_PER_POLL):
        self.path = Path(path)
        self.max_read = max_read
        self.max_line = max_line
        self.start_at_end = start_at_end
        self.restarted = False  # set by poll() when the lines it returns start a new file content
        self.skipped_lines = 0  # lines over max_line, dropped
        self._fh = None
        self._id: tuple[int, int] | None = None
        self._offset = 0
        self._guard = b""
        self._pending = b""
        self._skipping = False
        self._opened = False
        self.refused: str | None = None  # why the path cannot be followed (a FIFO, a device, a symlink loop)
        self._changes: deque = deque(maxlen=8)  # (code, sentence) of what happened to the file, not yet taken
        self._told_refused: str | None = None

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def position(self) -> tuple:
        """Changes whenever a poll consumed bytes or moved to a new file; unchanged means drained."""
        return self._id, self._offset

    def poll(self) -> list[str]:
        """Complete lines appended since the last poll."""
        return [line for block in self._poll_blocks() for line in block.decode("utf-8", errors="replace").split("\n")[:-1]]

    def poll_blocks(self) -> list[bytes]:
        """The same lines as poll(), as bytes blocks of newline-terminated lines (fast path)."""
        return self._poll_blocks()

    def _poll_blocks(self) -> list[bytes]:
        self.restarted = False
        out: list[bytes] = []
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._fh is not None:  # deleted: finish what the old file had, then wait for a new one
                self._finish_old(out)
                self._changes.append(("file_gone", f"{self.path} was deleted (or moved away) after its last line was read; "
                                            f"a new file there will be read from its start."))
            return out
        except OSError as exc:  # a symlink loop, no permission on a folder: it cannot be looked at
            return self._refuse(out, f"{self.path} cannot be read ({exc.strerror or exc}).")
        ident = (st.st_dev, st.st_ino)
        if not stat.S_ISREG(st.st_mode):  # opening a FIFO blocks, a device never ends: never read one
            return self._refuse(out, not_regular(self.path, st))
        self.refused = None
        if self._fh is not None and ident != self._id:
            self._finish_old(out)  # the new file is opened by the next poll, so `restarted`
            self._changes.append(("file_replaced", f"{self.path} was replaced by another file after the old one was read "
                                            f"to its end; the new one is read from its start."))
            return out  # always applies to a whole batch
        if self._fh is None:
            try:
                self._fh = platform.open_shared(self.path)  # the writer may still rotate or delete it
            except FileNotFoundError:
                return out
            except OSError as exc:  # no permission to read it
                return self._refuse(out, f"{self.path} cannot be read ({exc.strerror or exc}).")
            self._id = ident
            self._offset = st.st_size if self.start_at_end else 0
            self._guard = b""
            if self._opened:
                self.restarted = True
            self._opened = True
            self.start_at_end = False
        elif st.st_size < self._offset or not self._guard_intact(st.st_size):
            self._offset, self._guard, self._pending, self._skipping = 0, b"", b"", False
            self.restarted = True
            self._changes.append(("file_rewritten", f"{self.path} was truncated or rewritten in place; it is read again "
                                             f"from its start."))
        if st.st_size > self._offset:
            self._read_into(out)
        return out

    @property
    def has_notices(self) -> bool:
        return bool(self._changes) or self.refused != self._told_refused

    def take_notices(self) -> list[tuple[str, str, str]]:
        """(code, level, sentence) for each change seen since the last call, and for the path
        becoming unreadable: each said once (a file unreadable for an hour is one notice)."""
        out = [(code, NOTICE_LEVELS[code], text) for code, text in self._changes]
        self._changes.clear()
        if self.refused != self._told_refused:
            self._told_refused = self.refused
            if self.refused:
                out.append(("file_unreadable", "error", self.refused))
        return out

    def _refuse(self, out: list[bytes], why: str) -> list[bytes]:
        if self._fh is not None:  # what the file had before it went is still read
            self._finish_old(out)
        self.refused = why
        return out

    def partial_frame(self) -> str | None:
        """The last carriage-return frame of the incomplete last line (a live tqdm bar), if any."""
        if b"\r" not in self._pending or self._skipping:
            return None
        frames = [f for f in self._pending.split(b"\r") if f.strip()]
        return frames[-1].decode("utf-8", errors="replace") if frames else None

    def pending_line(self) -> str | None:
        """The incomplete last line read so far (a file that ends without a newline), if any."""
        if not self._pending or self._skipping:
            return None
        return self._pending.decode("utf-8", errors="replace")

    def read_all(self):
        """Every line to the end of the file, a bounded batch at a time (memory stays bounded
        whatever the file's size), the last line included even without its newline."""
        while True:
            before = self.position
            lines = self.poll()
            if lines:
                yield lines
            if self.position == before:
                break
        if (pending := self.pending_line()) is not None:
            yield [pending]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _guard_intact(self, size: int) -> bool:
        if not self._guard or size == self._offset:
            return True  # unchanged size: nothing new to read, skip the extra read
        self._fh.seek(self._offset - len(self._guard))
        return self._fh.read(len(self._guard)) == self._guard

    def _finish_old(self, out: list[bytes]) -> None:
        self._read_into(out)
        if self._pending and not self._skipping:
            out.append(self._pending + b"\n")
        self._pending, self._skipping = b"", False
        self.close()
        self._id = None

    def _read_into(self, out: list[bytes]) -> None:
        self._fh.seek(self._offset)
        budget = self.max_read
        while budget > 0:
            data = self._fh.read(min(READ_CHUNK, budget))
            if not data:
                break
            budget -= len(data)
            self._offset += len(data)
            self._guard = (self._guard + data[-GUARD:])[-GUARD:]  # not a copy of the whole chunk
            self._split(data, out)

    def _split(self, data: bytes, out: list[bytes]) -> None:
        """Append the complete lines of pending + data to `out` as one block; keep the rest pending."""
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            if not self._skipping:
                if len(self._pending) + len(data) > self.max_line:
                    self._pending, self._skipping = b"", True
                    self.skipped_lines += 1
                else:
                    self._pending += data
            return
        rest = data[last_nl + 1:]
        if self._skipping:  # the rest of an over-long line: drop it, keep its newline
            block = data[data.find(b"\n"):last_nl + 1]
            self._skipping = False
        elif self._pending:  # one copy of the chunk's lines, not a slice and then the joined copy
            block = b"".join((self._pending, memoryview(data)[:last_nl + 1]))
        else:
            block = data[:last_nl + 1]
        if len(block) > self.max_line:  # only a block this big can hold an over-long line
            lines = block.split(b"\n")[:-1]
            kept = [line if len(line) <= self.max_line else b"" for line in lines]
            self.skipped_lines += sum(1 for line in lines if len(line) > self.max_line)
            block = b"".join(line + b"\n" for line in kept)
        if block:
            out.append(block)
        self._pending = b""
        if len(rest) > self.max_line:
            self._skipping = True
            self.skipped_lines += 1
        else:
            self._pending = rest


def read_new_bytes(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Bytes of a binary file from `offset` (at most `limit`), and the file's size; a file that
    shrank below `offset` was replaced, so the caller should start again (size < offset)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return b"", offset
    if size <= offset:
        return b"", size
    with platform.open_regular(path) as fh:
        fh.seek(offset)
        return fh.read(min(size - offset, limit)), size


def last_lines(path: str | os.PathLike, n: int, block: int = 1 << 16, max_bytes: int = 64 << 20) -> list[str]:
    """The last n complete-or-final lines of a file, reading backwards from its end (at most
    max_bytes of it: lines longer than that are not worth holding in memory)."""
    if n <= 0:
        return []
    with platform.open_regular(path) as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        pos, data = end, b""
        while pos > 0 and data.count(b"\n") <= n and len(data) < max_bytes:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0:
        lines = lines[1:]  # the first piece may be a partial line
    return [line.decode("utf-8", errors="replace") for line in deque(lines, maxlen=n)]
