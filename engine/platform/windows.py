"""Windows process control and files, on documented APIs (kernel32 through ctypes, _winapi, msvcrt).

A run's babysitter starts in a new console process group (CREATE_NEW_PROCESS_GROUP) and puts its
child in a named Job Object with kill-on-close: every process the run starts is in the job, even
once its parent has gone, and the job dies with the babysitter's handle. A graceful stop is one
CTRL_BREAK_EVENT to the group (Python's default for SIGBREAK ends the process; a script may catch
it to checkpoint); the kill after the grace is TerminateJobObject. Locks are msvcrt.locking;
os.replace is retried while another process holds the target open; followed files are opened
with FILE_SHARE_DELETE so that a trainer's logger can still rotate or delete them.

Importable on any OS (Windows-only modules are imported where they are used), so its pure parts
are tested on Linux with sys.platform faked.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import time
from typing import BinaryIO, Callable, Iterable

import psutil

NAME = "windows"
STOP_NAME = "CTRL_BREAK_EVENT"
KILL_NAME = "TerminateJobObject"
EXEC_KEEPS_PID = False  # os.exec* starts a new process and ends this one
# A run's stdout is a file (output.log): Python would write it in the ANSI code page (cp1252) and
# raise UnicodeEncodeError on the first character outside it; urbanrun reads the log as UTF-8.
RUN_ENV = {"PYTHONIOENCODING": "utf-8"}
PSEUDO_FILESYSTEMS: frozenset[str] = frozenset()  # devices live under \\.\, outside the file tree

# winbase.h / winnt.h values (fixed by the Windows ABI)
CREATE_NEW_PROCESS_GROUP = 0x00000200
CTRL_BREAK_EVENT = 1
SIGBREAK = 21
JOB_OBJECT_QUERY = 0x0004
JOB_OBJECT_TERMINATE = 0x0008
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_BASIC_PROCESS_ID_LIST = 3  # JOBOBJECTINFOCLASS
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
PROCESS_SET_QUOTA = 0x0100
PROCESS_TERMINATE = 0x0001
ERROR_MORE_DATA = 234
GENERIC_READ = 0x80000000
FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_SHARE_DELETE = 0x1, 0x2, 0x4
OPEN_EXISTING = 3
FILE_ATTRIBUTE_NORMAL = 0x80
KILLED_EXIT_CODE = 1  # the exit code TerminateJobObject gives every process of a killed run

REPLACE_DELAYS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)  # ~1.6 s in all, then the error stands

# Fixed-width types: ctypes.wintypes.DWORD is a C long, 8 bytes on Linux, so the layouts below
# would not be Windows' when tested there.
DWORD = ctypes.c_uint32
LARGE_INTEGER = ctypes.c_int64
ULONGLONG = ctypes.c_uint64
SIZE_T = ctypes.c_size_t
ULONG_PTR = ctypes.c_size_t


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [("PerProcessUserTimeLimit", LARGE_INTEGER), ("PerJobUserTimeLimit", LARGE_INTEGER),
                ("LimitFlags", DWORD), ("MinimumWorkingSetSize", SIZE_T), ("MaximumWorkingSetSize", SIZE_T),
                ("ActiveProcessLimit", DWORD), ("Affinity", ULONG_PTR), ("PriorityClass", DWORD),
                ("SchedulingClass", DWORD)]


class IO_COUNTERS(ctypes.Structure):
    _fields_ = [(name, ULONGLONG) for name in ("ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
                                               "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION), ("IoInfo", IO_COUNTERS),
                ("ProcessMemoryLimit", SIZE_T), ("JobMemoryLimit", SIZE_T),
                ("PeakProcessMemoryUsed", SIZE_T), ("PeakJobMemoryUsed", SIZE_T)]


def kill_on_close_limits() -> JOBOBJECT_EXTENDED_LIMIT_INFORMATION:
    info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    return info


def parse_pid_list(buffer: bytes) -> tuple[int, list[int]]:
    """JOBOBJECT_BASIC_PROCESS_ID_LIST: (processes assigned, the pids that fitted in the buffer)."""
    assigned = int.from_bytes(buffer[0:4], "little")
    listed = int.from_bytes(buffer[4:8], "little")
    width = ctypes.sizeof(ULONG_PTR)  # the array follows the two DWORDs (8 bytes, aligned either way)
    pids = [int.from_bytes(buffer[8 + i * width:8 + (i + 1) * width], "little") for i in range(listed)]
    return assigned, pids


# -- process creation and the babysitter -----------------------------------------------------
def new_session_kwargs() -> dict:
    return {"creationflags": CREATE_NEW_PROCESS_GROUP}


def job_name(run_id: str) -> str:
    """Session-local name of a run's Job Object; kept in the run record so a later urbanrun can
    open it. Run ids hold no backslash (validated), so the name stays in the Local namespace."""
    return f"Local\\urbanrun-{run_id}"


def create_job(name: str | None):
    """The babysitter's named kill-on-close job (its handle held for the babysitter's life), or
    None with a line on stderr if Windows refuses (the run still starts, without a job)."""
    if not name:
        return None
    k32 = _kernel32()
    handle = k32.CreateJobObjectW(None, name)
    if not handle:
        print(f"urbanrun: could not create Job Object {name}: {ctypes.WinError(ctypes.get_last_error())}",
              file=sys.stderr, flush=True)
        return None
    info = kill_on_close_limits()
    if not k32.SetInformationJobObject(handle, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, ctypes.byref(info),
                                       ctypes.sizeof(info)):
        print(f"urbanrun: could not set kill-on-close on {name}: {ctypes.WinError(ctypes.get_last_error())}",
              file=sys.stderr, flush=True)
    return handle


def become_subreaper() -> bool:
    return False  # no reparenting to undo: the run's Job Object holds every process it starts


def reap_children() -> None:
    return None  # Windows leaves no zombies to reap


def join_cgroup(path: str) -> None:
    return None  # no cgroups; the Job Object is the run's group


def assign_to_job(job, pid: int) -> bool:
    """Put the babysitter's child (its handle still held by Popen, so the pid is its) in the job;
    processes it starts from then on are in the job too."""
    if job is None:
        return False
    import _winapi

    try:
        process = _winapi.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
    except OSError as exc:
        print(f"urbanrun: could not open process {pid} to put it in its job: {exc}", file=sys.stderr, flush=True)
        return False
    try:
        if _kernel32().AssignProcessToJobObject(job, process):
            return True
        print(f"urbanrun: could not put process {pid} in its job: {ctypes.WinError(ctypes.get_last_error())}",
              file=sys.stderr, flush=True)
        return False
    finally:
        _winapi.CloseHandle(process)


def handle_stop_signals(handler: Callable) -> None:
    """CTRL_BREAK_EVENT arrives as SIGBREAK (and Ctrl+C as SIGINT): route both to `handler`."""
    for sig in (signal.SIGINT, getattr(signal, "SIGBREAK", SIGBREAK)):
        signal.signal(sig, handler)


# -- finding, stopping and killing a run's processes -----------------------------------------
def group_pids(leader_pid: int | None, job_name: str | None = None) -> list[int]:
    """Pids in the run's job, the leader excluded (none when the job is gone or was never made)."""
    if not job_name:
        return []
    handle = _open_job(job_name, JOB_OBJECT_QUERY)
    if handle is None:
        return []
    try:
        k32, slots = _kernel32(), 64
        while True:
            buffer = ctypes.create_string_buffer(8 + slots * ctypes.sizeof(ULONG_PTR))
            if k32.QueryInformationJobObject(handle, JOB_OBJECT_BASIC_PROCESS_ID_LIST, buffer, len(buffer), None):
                break
            if ctypes.get_last_error() != ERROR_MORE_DATA:
                return []
            slots = max(slots * 2, parse_pid_list(buffer.raw)[0] + 16)
        return [pid for pid in parse_pid_list(buffer.raw)[1] if pid != leader_pid]
    finally:
        k32.CloseHandle(handle)


def send_stop(procs: Iterable[psutil.Process], leader: psutil.Process | None = None) -> int:
    """One CTRL_BREAK_EVENT to the leader's process group (the whole run); returns how many of
    `procs` were alive. Without a live leader, or without a console shared with the run (urbanrun
    started without one), nothing graceful can be sent: the kill after the grace ends the tree."""
    alive = [p for p in procs if _running(p)]
    if leader is not None and _running(leader):
        try:
            os.kill(leader.pid, getattr(signal, "CTRL_BREAK_EVENT", CTRL_BREAK_EVENT))
        except OSError:
            pass
    return len(alive)


def kill_hard(procs: Iterable[psutil.Process], job_name: str | None = None) -> int:
    """TerminateJobObject (every process of the run, orphans included), then TerminateProcess for
    any listed process outside the job."""
    if job_name:
        handle = _open_job(job_name, JOB_OBJECT_TERMINATE)
        if handle is not None:
            k32 = _kernel32()
            k32.TerminateJobObject(handle, KILLED_EXIT_CODE)
            k32.CloseHandle(handle)
    killed = 0
    for proc in procs:
        try:
            if proc.is_running():  # psutil compares create times: never a reused pid
                proc.kill()
                killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return killed


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running()
    except psutil.Error:
        return False


def _open_job(name: str, access: int):
    handle = _kernel32().OpenJobObjectW(access, False, name)
    return handle or None


# -- files -----------------------------------------------------------------------------------
def lock_file(fd: int) -> None:
    """Lock the file's first byte; msvcrt's LK_LOCK gives up after 10 s, so keep asking."""
    import msvcrt

    while True:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            return
        except OSError as exc:
            if exc.errno not in (errno.EDEADLOCK, errno.EACCES):
                raise


def unlock_file(fd: int) -> None:
    import msvcrt

    os.lseek(fd, 0, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """os.replace, retried with a short backoff: Windows refuses (PermissionError) while another
    process has `dst` open, e.g. urbanrun reading exit_status.json as the babysitter writes it."""
    for delay in REPLACE_DELAYS:
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            time.sleep(delay)
    os.replace(src, dst)


def open_shared(path: str | os.PathLike) -> BinaryIO:
    """Open for reading with read, write and delete sharing (CreateFileW), so that the writer can
    still append, rename or delete the file while it is followed. Missing: FileNotFoundError."""
    import _winapi
    import msvcrt

    handle = _winapi.CreateFile(os.fspath(path), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                                0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0)
    try:
        fd = msvcrt.open_osfhandle(handle, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        _winapi.CloseHandle(handle)
        raise
    return os.fdopen(fd, "rb")


_k32 = None


def _kernel32():
    """kernel32 with argument types declared (handles are pointer-wide; the defaults truncate)."""
    global _k32
    if _k32 is None:
        k32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle, bool_ = ctypes.c_void_p, ctypes.c_int
        for name, restype, argtypes in (
            ("CreateJobObjectW", handle, (ctypes.c_void_p, ctypes.c_wchar_p)),
            ("OpenJobObjectW", handle, (DWORD, bool_, ctypes.c_wchar_p)),
            ("SetInformationJobObject", bool_, (handle, ctypes.c_int, ctypes.c_void_p, DWORD)),
            ("QueryInformationJobObject", bool_, (handle, ctypes.c_int, ctypes.c_void_p, DWORD, ctypes.c_void_p)),
            ("AssignProcessToJobObject", bool_, (handle, handle)),
            ("TerminateJobObject", bool_, (handle, ctypes.c_uint)),
            ("CloseHandle", bool_, (handle,)),
        ):
            fn = getattr(k32, name)
            fn.restype, fn.argtypes = restype, argtypes
        _k32 = k32
    return _k32


def make_private(path: str | os.PathLike) -> None:
    """Nothing to do: Windows has no mode bits (os.chmod only sets read-only); files under the
    user's profile inherit an ACL that admits only the user, SYSTEM and administrators."""
