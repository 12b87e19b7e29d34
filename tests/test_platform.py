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
                         r"CREATE_NEW_PROCESS_GROUP|start_new_session|os\.replace|WinDLL")


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
        platform.read_shared(path)
    assert platform.read_shared(tmp_path / "log.1.txt") == b"first\n"


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
    assert windows.new_session_kwargs() == {"creationflags": 0x200}  # CREATE_NEW_PROCESS_GROUP
    assert windows.job_name("20261130-101500-cones-1a2b") == "Local\\urbanrun-20261130-101500-cones-1a2b"
    assert platform.posix.job_name("20261130-101500-cones-1a2b") is None
    assert (windows.STOP_NAME, windows.KILL_NAME) == ("CTRL_BREAK_EVENT", "TerminateJobObject")
    assert windows.RUN_ENV == {"PYTHONIOENCODING": "utf-8"} and platform.posix.RUN_ENV == {}
    if hasattr(signal, "CTRL_BREAK_EVENT"):
        assert signal.CTRL_BREAK_EVENT == windows.CTRL_BREAK_EVENT and signal.SIGBREAK == windows.SIGBREAK


def test_windows_replace_retries_while_the_target_is_held(tmp_path, monkeypatch):
    """Windows refuses os.replace while another process has the target open; the retry waits
    that out, and gives up with the real error when it does not end."""
    src, dst = tmp_path / "new", tmp_path / "exit_status.json"
    src.write_text("new")
    dst.write_text("old")
    real, refusals = os.replace, []

    def refused_twice(a, b):
        if len(refusals) < 2:
            refusals.append(b)
            raise PermissionError(13, "The process cannot access the file", str(b))
        real(a, b)

    monkeypatch.setattr(windows.time, "sleep", lambda s: None)
    monkeypatch.setattr(windows.os, "replace", refused_twice)
    windows.replace(src, dst)
    assert dst.read_text() == "new" and len(refusals) == 2

    def always_refused(a, b):
        refusals.append(b)
        raise PermissionError(13, "The process cannot access the file", str(b))

    monkeypatch.setattr(windows.os, "replace", always_refused)
    refusals.clear()
    src.write_text("newer")
    with pytest.raises(PermissionError):
        windows.replace(src, dst)
    assert len(refusals) == len(windows.REPLACE_DELAYS) + 1
    assert dst.read_text() == "new" and src.read_text() == "newer"  # nothing lost


def test_windows_functions_without_a_job_do_nothing_harmful():
    assert windows.group_pids(1234, None) == []
    assert windows.create_job(None) is None
    assert windows.assign_to_job(None, os.getpid()) is False


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
    assert first[:2] == ["windows", "512"] and int(first[2]) > 40
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
