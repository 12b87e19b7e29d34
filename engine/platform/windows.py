"""Windows process control and files, on documented APIs (kernel32 through ctypes, _winapi, msvcrt).

A run's babysitter starts its child suspended (CREATE_SUSPENDED), as the leader of a console process
group of its own (CREATE_NEW_PROCESS_GROUP), puts it in a named Job Object with kill-on-close and only
then resumes it: every process the run ever starts is in the job, even once its parent has gone, and
the job dies with the babysitter's handle. A graceful stop is one CTRL_BREAK_EVENT to the child's
group, sent by the babysitter on a stop request (engine/runs/stop_request.py: the event reaches only
processes sharing the sender's console, and the babysitter is the one that shares the run's);
Python's default for SIGBREAK ends the process, a script may catch it to checkpoint. The kill after
the grace is TerminateJobObject. Locks are msvcrt.locking;
os.replace and os.rename are retried (retry.py) while another process holds the file or folder open; followed files are opened
with FILE_SHARE_DELETE so that a trainer's logger can still rotate or delete them.

Importable on any OS (Windows-only modules are imported where they are used), so its pure parts
are tested on Linux with sys.platform faked.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import psutil

from urbanrun.engine.platform.retry import retry_while

NAME = "windows"
STOP_NAME = "CTRL_BREAK_EVENT"
KILL_NAME = "TerminateJobObject"
STOP_BY_REQUEST = True  # the stop goes through the babysitter, the one process sharing the run's console
EXEC_KEEPS_PID = False  # os.exec* starts a new process and ends this one
# A run's stdout is a file (output.log): Python would write it in the ANSI code page (cp1252) and
# raise UnicodeEncodeError on the first character outside it; urbanrun reads the log as UTF-8.
RUN_ENV = {"PYTHONIOENCODING": "utf-8"}
PSEUDO_FILESYSTEMS: frozenset[str] = frozenset()  # devices live under \\.\, outside the file tree

# winbase.h / winnt.h / tlhelp32.h values (fixed by the Windows ABI)
CREATE_SUSPENDED = 0x00000004
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
TH32CS_SNAPTHREAD = 0x00000004
THREAD_SUSPEND_RESUME = 0x0002
ERROR_NO_MORE_FILES = 18
RESUME_FAILED = 0xFFFFFFFF  # ResumeThread's (DWORD)-1
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value
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
# winerror.h: ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION
HELD_ERRORS = frozenset({5, 32, 33})

# Fixed-width types: ctypes.wintypes.DWORD is a C long, 8 bytes on Linux, so the layouts below
# would not be Windows' when tested there.
DWORD = ctypes.c_uint32
LONG = ctypes.c_int32
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


class THREADENTRY32(ctypes.Structure):
    _fields_ = [("dwSize", DWORD), ("cntUsage", DWORD), ("th32ThreadID", DWORD), ("th32OwnerProcessID", DWORD),
                ("tpBasePri", LONG), ("tpDeltaPri", LONG), ("dwFlags", DWORD)]


# an entry is usable only if Windows filled it at least up to the owner's pid
THREAD_ENTRY_MIN_SIZE = THREADENTRY32.th32OwnerProcessID.offset + ctypes.sizeof(DWORD)


def threads_of(entries: Iterable[tuple[int, int]], pid: int) -> list[int]:
    """Thread ids owned by `pid`, from (thread id, owner pid) pairs of a thread snapshot."""
    return [tid for tid, owner in entries if owner == pid]


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
    """How the babysitter starts: its own group (Ctrl+C in urbanrun's terminal is not the run's) and
    its own hidden console (CREATE_NO_WINDOW): closing the terminal urbanrun ran in sends
    CTRL_CLOSE_EVENT to every process attached to that console, which would end the run; and the
    run's child shares the babysitter's console, so the babysitter's CTRL_BREAK_EVENT reaches it."""
    return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}


def job_name(run_id: str) -> str:
    """Session-local name of a run's Job Object; kept in the run record so a later urbanrun can
    open it. Run ids hold no backslash (validated), so the name stays in the Local namespace."""
    return f"Local\\urbanrun-{run_id}"


def create_job(name: str | None):
    """The babysitter's named kill-on-close job (its handle held for the babysitter's life);
    OSError saying why if Windows refuses: a run is never started outside its job."""
    if not name:
        return None
    k32 = _kernel32()
    handle = k32.CreateJobObjectW(None, name)
    if not handle:
        raise _error(f"could not create the Job Object {name}")
    info = kill_on_close_limits()
    if not k32.SetInformationJobObject(handle, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, ctypes.byref(info),
                                       ctypes.sizeof(info)):
        error = _error(f"could not set kill-on-close on the Job Object {name}")
        k32.CloseHandle(handle)
        raise error
    return handle


def start_child(command: list[str], job, cgroup: str | None = None, **popen_kwargs) -> subprocess.Popen:
    """Start the run's command suspended, leading a console process group of its own, put it in
    `job`, then resume it: nothing of the run runs, even for an instant, outside the job (a process
    started before the assignment would escape it). If it cannot be put in the job or resumed, it
    is terminated before running any code of its own, and OSError says why. `cgroup` is always
    None here (no cgroups: the Job Object is the run's group)."""
    flags = popen_kwargs.pop("creationflags", 0) | CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP
    child = subprocess.Popen(command, creationflags=flags, **popen_kwargs)
    try:
        if job is None:
            raise OSError("no Job Object to put it in")
        assign_to_job(job, child.pid)
        resume_threads(child.pid)
    except OSError as exc:
        child.kill()  # TerminateProcess on the handle Popen holds: never a reused pid
        child.wait()
        raise OSError(f"it was stopped before it ran, so that it never runs outside its Job Object: {exc}") from None
    return child


def become_subreaper() -> bool:
    return False  # no reparenting to undo: the run's Job Object holds every process it starts


def reap_children() -> None:
    return None  # Windows leaves no zombies to reap


def assign_to_job(job, pid: int) -> None:
    """Put the babysitter's (still suspended) child in the job: processes it starts from then on
    are in the job too. Popen holds the child's handle, so `pid` is still its. OSError if refused."""
    k32 = _kernel32()
    process = k32.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
    if not process:
        raise _error(f"could not open process {pid} to put it in its Job Object")
    try:
        if not k32.AssignProcessToJobObject(job, process):
            raise _error(f"could not put process {pid} in its Job Object")
    finally:
        k32.CloseHandle(process)


def resume_threads(pid: int) -> None:
    """Resume the suspended process `pid`. Popen keeps no handle on its main thread, so the thread
    is found the documented way: a thread snapshot (CreateToolhelp32Snapshot, Thread32First/Next),
    then OpenThread(THREAD_SUSPEND_RESUME) and ResumeThread on each thread it owns (a new suspended
    process has just one). OSError if none is found or one cannot be resumed."""
    k32 = _kernel32()
    tids = threads_of(_thread_snapshot(k32), pid)
    if not tids:
        raise OSError(f"no thread of process {pid} was found to resume")
    for tid in tids:
        thread = k32.OpenThread(THREAD_SUSPEND_RESUME, False, tid)
        if not thread:
            raise _error(f"could not open thread {tid} of process {pid} to resume it")
        try:
            if k32.ResumeThread(thread) == RESUME_FAILED:
                raise _error(f"could not resume thread {tid} of process {pid}")
        finally:
            k32.CloseHandle(thread)


def _thread_snapshot(k32) -> list[tuple[int, int]]:
    """(thread id, owner pid) of every thread in the system, from one Toolhelp snapshot."""
    snapshot = k32.CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0)
    if not snapshot or snapshot == INVALID_HANDLE_VALUE:
        raise _error("could not take a snapshot of the system's threads")
    try:
        entries, entry = [], THREADENTRY32()
        entry.dwSize = ctypes.sizeof(THREADENTRY32)
        more = k32.Thread32First(snapshot, ctypes.byref(entry))
        while more:
            if entry.dwSize >= THREAD_ENTRY_MIN_SIZE:  # Windows may fill less than asked
                entries.append((entry.th32ThreadID, entry.th32OwnerProcessID))
            entry.dwSize = ctypes.sizeof(THREADENTRY32)
            more = k32.Thread32Next(snapshot, ctypes.byref(entry))
        if _last_error() != ERROR_NO_MORE_FILES:
            raise _error("could not read the snapshot of the system's threads")
        return entries
    finally:
        k32.CloseHandle(snapshot)


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
    """Sends nothing; returns how many of `procs` are alive. CTRL_BREAK_EVENT reaches only processes
    sharing the sender's console, which a urbanrun in another terminal does not: the stop is asked
    of the run's babysitter instead (STOP_BY_REQUEST), and the kill after the grace ends the tree."""
    return len([p for p in procs if _running(p)])


def stop_child(child: subprocess.Popen) -> None:
    """The babysitter's graceful stop of its child: one CTRL_BREAK_EVENT to the child's process
    group (it leads one of its own), which reaches every process of the run on the console."""
    child.send_signal(getattr(signal, "CTRL_BREAK_EVENT", CTRL_BREAK_EVENT))


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


def held_by_another(exc: OSError) -> bool:
    """A refusal that ends when another process closes its handle (a reader, a virus scanner, an
    indexer): sharing and lock violations, and the access denied MoveFileEx gives for a file or
    folder open without delete sharing. Judged by the Windows error code only: a POSIX errno (or
    a missing file, a full disk) is never waited out."""
    return getattr(exc, "winerror", None) in HELD_ERRORS


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """os.replace, retried with a short backoff while another process has `dst` (or `src`) open,
    e.g. urbanrun reading exit_status.json as the babysitter writes it."""
    retry_while(lambda: os.replace(src, dst), held_by_another, REPLACE_DELAYS)


def rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """os.rename (never over an existing `dst`), retried like `replace`: a new run folder renamed
    into place while a virus scanner looks into it."""
    retry_while(lambda: os.rename(src, dst), held_by_another, REPLACE_DELAYS)


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


def _last_error() -> int:
    return ctypes.get_last_error()


def _message(code: int) -> str:
    return ctypes.FormatError(code).strip()


def _error(what: str) -> OSError:
    """OSError for the kernel32 call that just failed: what was tried, and Windows' own words."""
    code = _last_error()
    return OSError(f"{what}: {_message(code)} (Windows error {code})")


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
            ("OpenProcess", handle, (DWORD, bool_, DWORD)),
            ("CreateToolhelp32Snapshot", handle, (DWORD, DWORD)),
            ("Thread32First", bool_, (handle, ctypes.POINTER(THREADENTRY32))),
            ("Thread32Next", bool_, (handle, ctypes.POINTER(THREADENTRY32))),
            ("OpenThread", handle, (DWORD, bool_, DWORD)),
            ("ResumeThread", DWORD, (handle,)),
            ("CloseHandle", bool_, (handle,)),
        ):
            fn = getattr(k32, name)
            fn.restype, fn.argtypes = restype, argtypes
        _k32 = k32
    return _k32


def make_private(path: str | os.PathLike) -> None:
    """Nothing to do: Windows has no mode bits (os.chmod only sets read-only); files under the
    user's profile inherit an ACL that admits only the user, SYSTEM and administrators."""


def user_config_dir() -> Path:
    """Where a user's own config.toml lives: %APPDATA%\\urbanrun (roams with the profile)."""
    return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "urbanrun"


def user_data_dir() -> Path:
    """Where runs go when no config.toml names a place: %LOCALAPPDATA%\\urbanrun (large, machine-local)."""
    return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "urbanrun"
