"""Which paths may be read as files: only regular ones. Opening a FIFO blocks until a writer
comes, a device such as /dev/zero never ends, a socket cannot be opened: each is refused with
a sentence, before any open()."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from urbanrun.engine.core.errors import UserError

KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def kind_of(st: os.stat_result) -> str:
    return next((name for test, name in KINDS if test(st.st_mode)), "not a regular file")


def not_regular(path: str | os.PathLike, st: os.stat_result) -> str:
    return f"{path} is {kind_of(st)}, not a regular file; urbanrun reads only regular files."


def path_stat(path: str | os.PathLike, what: str) -> os.stat_result | None:
    """The path's stat (following links), None if it does not exist; a name the OS rejects (too
    long, a NUL byte, no permission on a folder) is a UserError naming it."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a component of the path is a file: the path does not exist
    except ValueError as exc:  # an embedded NUL byte
        raise UserError(f"{what} {str(path)[:120]!r} is not a usable path ({exc}).") from None
    except OSError as exc:
        raise UserError(f"{what} {short(path)}: {exc.strerror or exc}.") from None


def regular_file(path: str | os.PathLike, what: str) -> Path:
    """The path, if it is an existing regular file; otherwise a UserError saying what it is."""
    st = path_stat(path, what)
    if st is None:
        raise UserError(f"{what} {short(path)} does not exist.")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{what} {not_regular(short(path), st)}")
    return Path(path)


def short(path: str | os.PathLike) -> str:
    """A path for a message: a 5,000-character name is cut, not printed whole."""
    text = str(path)
    return text if len(text) <= 200 else f"{text[:100]}…{text[-60:]} ({len(text)} characters)"
