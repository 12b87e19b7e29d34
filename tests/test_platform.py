"""The platform layer: it alone makes OS-specific calls; the POSIX side works for real here; the
Windows side imports on Linux, its pure parts (layouts, names, retry) are checked with no Windows
machine, and the whole package imports with sys.platform faked as win32."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import ROOT

from urbanrun.engine import platform
from urbanrun.engine.platform import windows

OS_SPECIFIC = re.compile(r"setsid|killpg|getsid|SIGHUP|SIGKILL|fcntl|/proc|msvcrt|_winapi|CTRL_BREAK|"
                         r"CREATE_NEW_PROCESS_GROUP|start_new_session|os\.replace|WinDLL|ctypes|os\.kill\b|"
                         r"preexec_fn|creationflags|import signal|signal\.(SIG|Signals)|cgroup\.procs")


def test_only_the_platform_layer_makes_os_specific_calls():
    offenders = []
    for top in ("engine", "tui"):
        for path in (ROOT / top).rglob("*.py"):
            if (ROOT / "engine" / "platform") in path.parents:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if OS_SPECIFIC.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_signal_names_come_from_the_os():
    assert platform.signal_name(15) == "SIGTERM" and platform.signal_name(2) == "SIGINT"
    assert platform.signal_name(200) is None  # a number this OS has no name for


def test_the_layer_is_chosen_by_sys_platform():
    assert platform.current.NAME == ("windows" if sys.platform == "win32" else "posix")
    names = [n for n in dir(platform.posix) if not n.startswith("_") and callable(getattr(platform.posix, n))
             and getattr(getattr(platform.posix, n), "__module__", "") == platform.posix.__name__]
    missing = [n for n in names if not hasattr(windows, n)]
    assert missing == []  # one interface: every POSIX function has its Windows twin


# -- POSIX, for real ----------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX sessions")
def test_group_pids_finds_an_orphan_left_in_the_session(tmp_path):
    """The leader starts a grandchild and exits; the grandchild, reparented, is still found."""
    pidfile = tmp_path / "pid"
    code = textwrap.dedent(f"""
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
    """)
    leader = subprocess.Popen([sys.executable, "-c", code], **platform.new_session_kwargs())
    leader.wait(timeout=30)
    orphan = int(pidfile.read_text())
    try:
        assert orphan in platform.group_pids(leader.pid)
        assert os.getpid() not in platform.group_pids(leader.pid)
    finally:
        import psutil

        platform.kill_hard([psutil.Process(orphan)])
        psutil.Process(orphan).wait(timeout=10)
    assert orphan not in platform.group_pids(leader.pid)


def test_hold_lock_excludes_another_process(tmp_path):
    lock = tmp_path / "sub" / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom urbanrun.engine import platform\n"
         f"with platform.hold_lock({str(lock)!r}):\n    print('held', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        got = threading.Event()

        def take():
            with platform.hold_lock(lock):
                got.set()

        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        assert not got.wait(0.5)  # blocked while the other process holds it
        holder.stdin.close()
        assert got.wait(30)  # and granted once it lets go
    finally:
        holder.kill()
        holder.wait()


def test_open_shared_lets_the_writer_delete_and_rotate(tmp_path):
    path = tmp_path / "log.txt"
    path.write_bytes(b"first\n")
    with platform.open_shared(path) as fh:
        os.replace(path, tmp_path / "log.1.txt")  # rotation while followed
        path.write_bytes(b"second\n")
        os.unlink(path)
        assert fh.read() == b"first\n"
    with pytest.raises(FileNotFoundError):
        platform.open_shared(path)
    with pytest.raises(FileNotFoundError):
        platform.read_shared(path, 100)
    assert platform.read_shared(tmp_path / "log.1.txt", 6) == b"first\n"
    with pytest.raises(OSError, match="over 5 bytes"):
        platform.read_shared(tmp_path / "log.1.txt", 5)


def test_utf8_stdio_survives_a_cp1252_pipe():
    code = "from urbanrun.engine import platform\nplatform.utf8_stdio()\nprint('loss → 0.5 ✓ 北京')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         env={**os.environ, "PYTHONIOENCODING": "cp1252"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode("utf-8").strip() == "loss → 0.5 ✓ 北京"


# -- Windows, its pure parts on any OS ------------------------------------------------------------
@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="the documented sizes are x64's")
def test_job_object_layouts_match_windows_x64():
    assert ctypes.sizeof(windows.JOBOBJECT_BASIC_LIMIT_INFORMATION) == 64
    assert ctypes.sizeof(windows.IO_COUNTERS) == 48
    assert ctypes.sizeof(windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION) == 144
    assert windows.JOBOBJECT_BASIC_LIMIT_INFORMATION.LimitFlags.offset == 16
    info = windows.kill_on_close_limits()
    assert info.BasicLimitInformation.LimitFlags == 0x2000
    raw = bytes(info)
    assert raw[16:20] == (0x2000).to_bytes(4, "little") and raw.count(0) == len(raw) - 1


def test_pid_list_is_parsed_as_windows_writes_it():
    width = ctypes.sizeof(ctypes.c_size_t)
    buffer = (5).to_bytes(4, "little") + (3).to_bytes(4, "little")
    buffer += b"".join(pid.to_bytes(width, "little") for pid in (4242, 17, 65536 * 3 + 8))
    buffer += b"\0" * width * 4  # the rest of the slots Windows did not fill
    assert windows.parse_pid_list(buffer) == (5, [4242, 17, 65536 * 3 + 8])


def test_windows_names_and_creation_flags():
    # CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW: a console of its own, so closing the terminal spares the run
    assert windows.new_session_kwargs() == {"creationflags": 0x200 | 0x08000000}
    assert windows.job_name("20261130-101500-cones-1a2b") == "Local\\urbanrun-20261130-101500-cones-1a2b"
    assert platform.posix.job_name("20261130-101500-cones-1a2b") is None
    assert (windows.STOP_NAME, windows.KILL_NAME) == ("CTRL_BREAK_EVENT", "TerminateJobObject")
    assert windows.RUN_ENV == {"PYTHONIOENCODING": "utf-8"} and platform.posix.RUN_ENV == {}
    if hasattr(signal, "CTRL_BREAK_EVENT"):
        assert signal.CTRL_BREAK_EVENT == windows.CTRL_BREAK_EVENT and signal.SIGBREAK == windows.SIGBREAK


def test_a_held_rename_is_retried_until_the_holder_lets_go(tmp_path):
    """The platform seam's retry, driven by real renames: a new run folder cannot move into place
    while another process holds it (on Windows: a virus scanner's handle; here the destination's
    parent is missing until the holder "lets go" in the second wait). It lands then, with nothing
    lost; an error that is not a hold is raised at once; a hold that outlasts the delays is raised
    as the OS gave it, the source intact."""
    from urbanrun.engine.platform.retry import retry_while

    draft, parent = tmp_path / ".run.creating", tmp_path / "runs"
    draft.mkdir()
    (draft / "run.toml").write_text("id = 'x'\n")
    waits, tries = [], []

    def rename():
        tries.append(1)
        os.rename(draft, parent / "run")

    def holder_lets_go_on_second_wait(delay):
        waits.append(delay)
        if len(waits) == 2:
            parent.mkdir()

    held = lambda exc: isinstance(exc, FileNotFoundError)  # noqa: E731 - the hold this test can make
    retry_while(rename, held, (0.01, 0.02, 0.04, 0.08), sleep=holder_lets_go_on_second_wait)
    assert waits == [0.01, 0.02] and len(tries) == 3
    assert (parent / "run" / "run.toml").read_text() == "id = 'x'\n" and not draft.exists()

    draft.mkdir()
    tries.clear()
    with pytest.raises(FileExistsError):  # not a hold: no wait
        retry_while(lambda: (tries.append(1), os.mkdir(draft)), held, (0.01,) * 5, sleep=waits.append)
    assert len(tries) == 1

    waits.clear()
    with pytest.raises(FileNotFoundError) as raised:  # held throughout: bounded, then the OS's own error
        retry_while(lambda: os.rename(draft, tmp_path / "gone" / "run"), held, (0.01, 0.02, 0.04), sleep=waits.append)
    assert waits == [0.01, 0.02, 0.04] and raised.value.filename == str(draft) and draft.is_dir()


def test_only_windows_error_codes_are_waited_out():
    """Windows' replace and rename wait out a sharing or lock violation or an access denied
    (winerror 32, 33, 5) only: a POSIX errno, a missing file or a full disk is raised at once."""
    for exc in (PermissionError(13, "Permission denied", "x"), FileNotFoundError(2, "No such file", "x"),
                OSError(28, "No space left on device", "x")):
        assert not windows.held_by_another(exc)
    assert windows.HELD_ERRORS == {5, 32, 33}
    if sys.platform == "win32":  # OSError's fourth argument is the winerror, on Windows only
        assert all(windows.held_by_another(OSError(13, "held", "x", code)) for code in (5, 32, 33))
        assert not windows.held_by_another(OSError(2, "missing", "x", 2))


def test_windows_functions_without_a_job_do_nothing_harmful():
    assert windows.group_pids(1234, None) == []
    assert windows.create_job(None) is None


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="the documented sizes are x64's")
def test_thread_snapshot_entry_layout_matches_windows():
    assert ctypes.sizeof(windows.THREADENTRY32) == 28  # tlhelp32.h: seven 32-bit fields, on x86 and x64
    assert [getattr(windows.THREADENTRY32, f).offset for f in ("dwSize", "cntUsage", "th32ThreadID",
                                                               "th32OwnerProcessID", "dwFlags")] == [0, 4, 8, 12, 24]
    assert windows.THREAD_ENTRY_MIN_SIZE == 16
    assert (windows.CREATE_SUSPENDED, windows.TH32CS_SNAPTHREAD, windows.THREAD_SUSPEND_RESUME) == (0x4, 0x4, 0x2)
    assert windows.RESUME_FAILED == 0xFFFFFFFF and windows.INVALID_HANDLE_VALUE == 2 ** 64 - 1
    assert windows.threads_of([(7, 100), (8, 200), (9, 100)], 100) == [7, 9]


class FakeKernel32:
    """kernel32 at the Windows API boundary, as documented: a failed call returns 0 (ResumeThread:
    (DWORD)-1) and sets the thread's last error; Thread32First/Next fill the caller's THREADENTRY32
    (whose dwSize the caller must set) and end with ERROR_NO_MORE_FILES. Counts open handles."""

    def __init__(self, refuse=(), others=((11, 4, 28), (12, 999, 12))):
        self.refuse, self.others = set(refuse), list(others)  # (thread id, owner pid, dwSize filled)
        self.handles, self.next, self.last_error = {}, 100, 0
        self.processes, self.resumed, self.entries = [], [], []

    def _open(self, what):
        self.next += 1
        self.handles[self.next] = what
        return self.next

    def _refused(self, name, value=0):
        if name in self.refuse:
            self.last_error = 5  # ERROR_ACCESS_DENIED
            return True
        return False

    def CreateJobObjectW(self, attributes, name):
        return 0 if self._refused("CreateJobObjectW") else self._open(("job", name))

    def SetInformationJobObject(self, job, info_class, info, size):
        assert info_class == 9 and size == 144 and self.handles[job][0] == "job"
        assert info._obj.BasicLimitInformation.LimitFlags == windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        return 0 if self._refused("SetInformationJobObject") else 1

    def OpenProcess(self, access, inherit, pid):
        assert access == windows.PROCESS_SET_QUOTA | windows.PROCESS_TERMINATE
        self.processes.append(pid)
        return 0 if self._refused("OpenProcess") else self._open(("process", pid))

    def AssignProcessToJobObject(self, job, process):
        assert self.handles[job][0] == "job" and self.handles[process][0] == "process"
        return 0 if self._refused("AssignProcessToJobObject") else 1

    def CreateToolhelp32Snapshot(self, flags, pid):
        assert flags == windows.TH32CS_SNAPTHREAD
        if self._refused("CreateToolhelp32Snapshot"):
            return windows.INVALID_HANDLE_VALUE
        self.entries = [*self.others[:1], *((500 + i, p, 28) for i, p in enumerate(self.processes)), *self.others[1:]]
        return self._open(("snapshot",))

    def Thread32First(self, snapshot, ref):
        self.cursor = 0
        return self.Thread32Next(snapshot, ref)

    def Thread32Next(self, snapshot, ref):
        entry = ref._obj
        assert self.handles[snapshot] == ("snapshot",) and entry.dwSize == 28  # set by the caller each time
        if self.cursor == len(self.entries):
            self.last_error = 18  # ERROR_NO_MORE_FILES
            return 0
        tid, owner, filled = self.entries[self.cursor]
        self.cursor += 1
        entry.th32ThreadID, entry.th32OwnerProcessID, entry.dwSize = tid, owner, filled
        return 1

    def OpenThread(self, access, inherit, tid):
        assert access == windows.THREAD_SUSPEND_RESUME
        return 0 if self._refused("OpenThread") else self._open(("thread", tid))

    def ResumeThread(self, thread):
        if self._refused("ResumeThread"):
            return windows.RESUME_FAILED
        self.resumed.append(self.handles[thread][1])
        return 1  # its previous suspend count: it was suspended

    def CloseHandle(self, handle):
        del self.handles[handle]
        return 1


class PopenAsWindows(subprocess.Popen):
    """The real Popen, started with what Windows' would get; creationflags are kept for the test
    and left out here (POSIX refuses them), so the child really runs and really must be killed."""

    made: list = []

    def __init__(self, args, creationflags=0, **kwargs):
        super().__init__(args, **kwargs)
        self.creationflags = creationflags
        PopenAsWindows.made.append(self)


@pytest.fixture
def kernel32(monkeypatch):
    def install(**kwargs):
        fake = FakeKernel32(**kwargs)
        monkeypatch.setattr(windows, "_k32", fake)
        monkeypatch.setattr(windows, "_last_error", lambda: fake.last_error)
        monkeypatch.setattr(windows, "_message", lambda code: {5: "Access is denied.", 18: "No more files."}[code])
        return fake

    PopenAsWindows.made = []
    monkeypatch.setattr(windows.subprocess, "Popen", PopenAsWindows)
    return install


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_the_child_joins_its_job_suspended_then_its_one_thread_is_resumed(kernel32):
    k32 = kernel32()
    job = windows.create_job("Local\\urbanrun-r1")
    child = windows.start_child(SLEEPER, job, stdin=subprocess.DEVNULL)
    try:
        assert child.creationflags == windows.CREATE_SUSPENDED | windows.CREATE_NEW_PROCESS_GROUP
        assert k32.processes == [child.pid]
        assert k32.resumed == [500]  # its thread, not the other process's nor the half-filled entry's
        assert list(k32.handles.values()) == [("job", "Local\\urbanrun-r1")]  # every other handle closed
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("refused, says", [
    ("OpenProcess", "could not open process {pid} to put it in its Job Object: Access is denied. (Windows error 5)"),
    ("AssignProcessToJobObject", "could not put process {pid} in its Job Object: Access is denied. (Windows error 5)"),
    ("CreateToolhelp32Snapshot", "could not take a snapshot of the system's threads: Access is denied."),
    ("OpenThread", "could not open thread 500 of process {pid} to resume it: Access is denied."),
    ("ResumeThread", "could not resume thread 500 of process {pid}: Access is denied. (Windows error 5)"),
])
def test_a_child_that_cannot_be_jobbed_or_resumed_never_runs_outside_its_job(kernel32, refused, says):
    k32 = kernel32(refuse={refused})
    job = windows.create_job("Local\\urbanrun-r2")
    with pytest.raises(OSError) as caught:
        windows.start_child(SLEEPER, job)
    child = PopenAsWindows.made[-1]
    assert child.returncode is not None  # terminated (and reaped) before the error is told
    assert str(caught.value).startswith("it was stopped before it ran, so that it never runs outside its Job Object: ")
    assert says.format(pid=child.pid) in str(caught.value)
    assert list(k32.handles.values()) == [("job", "Local\\urbanrun-r2")]


def test_no_thread_to_resume_and_no_job_are_errors_too(kernel32):
    k32 = kernel32()
    k32.CreateToolhelp32Snapshot = lambda flags, pid: k32._open(("snapshot",))  # a snapshot without the child
    k32.entries = [(11, 4, 28)]
    with pytest.raises(OSError, match=r"no thread of process \d+ was found to resume"):
        windows.start_child(SLEEPER, windows.create_job("Local\\urbanrun-r3"))
    with pytest.raises(OSError, match="no Job Object to put it in"):
        windows.start_child(SLEEPER, None)
    assert all(p.returncode is not None for p in PopenAsWindows.made)


def test_a_job_windows_refuses_is_one_clear_error(kernel32):
    kernel32(refuse={"CreateJobObjectW"})
    with pytest.raises(OSError, match=r"could not create the Job Object Local\\urbanrun-r4: Access is denied"):
        windows.create_job("Local\\urbanrun-r4")
    k32 = kernel32(refuse={"SetInformationJobObject"})
    with pytest.raises(OSError, match="could not set kill-on-close on the Job Object"):
        windows.create_job("Local\\urbanrun-r5")
    assert k32.handles == {}  # the half-made job is closed


def test_the_whole_package_imports_as_on_windows():
    """Every urbanrun module (trainers included) imports with sys.platform = 'win32'. Third-party
    modules are loaded first, as on Linux: it is urbanrun's own import-time code under test."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import urbanrun

        def names():
            for info in pkgutil.walk_packages(urbanrun.__path__, "urbanrun."):
                if not info.name.endswith("__main__"):  # running those starts the app
                    yield info.name

        mods = list(names())
        for name in mods:
            importlib.import_module(name)
        for name in [m for m in sys.modules if m == "urbanrun" or m.startswith("urbanrun.")]:
            del sys.modules[name]
        sys.platform = "win32"
        for name in mods:
            importlib.import_module(name)
        from urbanrun.engine import platform
        from urbanrun.engine.cli.main import build_parser
        print(platform.NAME, platform.new_session_kwargs()["creationflags"], len(mods))
        print(build_parser()._subparsers._group_actions[0].choices["kill"].format_help())
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    first = out.stdout.splitlines()[0].split()
    assert first[:2] == ["windows", str(0x200 | 0x08000000)] and int(first[2]) > 40
    assert "CTRL_BREAK_EVENT" in out.stdout and "TerminateJobObject" in out.stdout


def test_the_cli_writes_utf8_to_a_cp1252_pipe(workspace):
    """A Windows pipe or console in cp1252 cannot encode 北京 or →: the CLI's text and its error
    sentences still arrive, as UTF-8, instead of a UnicodeEncodeError traceback."""
    config = workspace / "config.toml"
    config.write_text(config.read_text().replace('description = "demo, tiny"', 'description = "Beijing 北京 → cones ✓"'))
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    out = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "recipes"], cwd=workspace, env=env,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")
    assert "cones: Beijing 北京 → cones ✓" in out.stdout.decode("utf-8")
    bad = subprocess.run([sys.executable, "-m", "urbanrun.engine.cli", "launch", "北京"], cwd=workspace, env=env,
                         capture_output=True, timeout=120)
    assert bad.returncode == 2 and "北京" in bad.stderr.decode("utf-8") and b"Traceback" not in bad.stderr
