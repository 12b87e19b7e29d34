"""Errors that reach a person as one clear sentence, never as a traceback: UserError (their
input; CLI exit 2) and CommandFailed (reasons outside their input, such as a full disk; exit 1)."""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """A mistake in the user's input: config, form field, run id. The message is the whole story.
    `code` names the kind of mistake for agents (`{"error": {"code": ...}}` under --json)."""

    def __init__(self, message: str = "", code: str = "bad_input"):
        super().__init__(message)
        self.code = code


class CommandFailed(Exception):
    """A command that could not do what was asked for reasons outside the user's input (CLI exit 1)."""

    def __init__(self, message: str = "", code: str = "failed"):
        super().__init__(message)
        self.code = code


class StorageError(CommandFailed):
    """A write the machine refused that is not the user's input (a full disk, an I/O error)."""

    def __init__(self, message: str = "", code: str = "storage"):
        super().__init__(message, code)


NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}
FULL = {errno.ENOSPC, errno.EDQUOT}
RUNS_FOLDER_FIX = "make it writable, or choose another runs folder (--runs-dir or URBANRUN_RUNS_DIR)"


def storage_error(exc: OSError, folder: str | os.PathLike, doing: str, fix: str = RUNS_FOLDER_FIX) -> Exception:
    """One sentence for a write that failed in `folder`: a read-only or forbidden folder is the
    user's to fix (UserError, with `fix` saying how); a full disk or an I/O error is not (StorageError)."""
    reason = exc.strerror or str(exc)
    in_the_way = exc.filename2 or exc.filename  # a rename names its target second; a read, its fd
    if exc.errno == errno.EISDIR and isinstance(in_the_way, (str, os.PathLike)):  # a folder where a file goes
        return UserError(f"cannot {doing} in {folder}: {os.fspath(in_the_way)} is a folder where urbanrun writes "
                         f"a file; move it away and try again.", code="not_writable")
    if exc.errno in NOT_WRITABLE:
        return UserError(f"cannot {doing} in {folder}: {reason}; {fix}.", code="not_writable")
    if exc.errno in FULL:
        return StorageError(f"cannot {doing} in {folder}: {reason}; free some space and try again "
                            f"(nothing of this attempt was left behind).", code="disk_full")
    return StorageError(f"cannot {doing} in {folder}: {reason}.")
