"""Import hygiene and layer contracts (shared/DESIGN.md): the engine never loads textual or torch,
the TUI never loads torch, and the import-linter contracts in pyproject.toml hold."""

import subprocess
import sys

from conftest import ROOT


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_engine_loads_neither_textual_nor_torch():
    loaded = _loaded_after("import urbanrun.engine.session.loop, urbanrun.engine.cli.main, "
                           "urbanrun.engine.runs.supervisor, urbanrun.engine.core.config")
    assert not loaded & {"textual", "torch", "torch_geometric"}


def test_tui_loads_no_torch():
    loaded = _loaded_after("import urbanrun.tui.main, urbanrun.tui.app")
    assert "textual" in loaded and not loaded & {"torch", "torch_geometric"}


def test_layer_contracts_hold():
    """core <- runs <- metrics/gpu <- diagnosis/notes <- session <- cli; the TUI on top; trainers apart."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


# The CLI run as the real command, its loaded modules printed at exit (after main() returned)
CLI_MODULES = ("import atexit, runpy, sys\n"
               "atexit.register(lambda: print('LOADED', *sorted({m.split('.')[0] for m in sys.modules}), file=sys.stderr))\n"
               "sys.argv = ['urbanrun', *sys.argv[1:]]\n"
               "runpy.run_module('urbanrun.engine.cli', run_name='__main__')")


def _cli_loaded(*args: str, cwd) -> set[str]:
    out = subprocess.run([sys.executable, "-c", CLI_MODULES, *args], cwd=cwd, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(out.stderr.split("LOADED", 1)[1].split())


def test_cli_json_commands_load_no_ui(workspace):
    """An agent calls these in loops: none loads the TUI (textual, plotext) or torch; --help and a
    listing of finished runs load no numpy either (a finished run's figures are stored in its record)."""
    from conftest import cli, cli_json

    run_id = cli_json("launch", "cones", "--set", "epochs=1", "--set", "cones=8", cwd=workspace)["id"]
    cli("wait", run_id, "--timeout", "300", cwd=workspace, timeout=320, check=True)
    ui = {"textual", "plotext", "textual_plotext", "torch", "torch_geometric"}
    for args in (["--help"], ["ls", "--json"], ["status", run_id, "--json"]):
        loaded = _cli_loaded(*args, cwd=workspace)
        assert "urbanrun" in loaded and not loaded & ui, (args, loaded & ui)
        if args[0] != "status":  # status reads the run's metrics file: numpy is its parser's
            assert "numpy" not in loaded, args


FIRST_FRAME = """
import asyncio, sys
from textual import events
from urbanrun.engine.core.config import load_config
from urbanrun.engine.session.loop import Engine
from urbanrun.tui.app import make_app
app = make_app(Engine(load_config(sys.argv[1]), sys.argv[2], record_session=False), scratchpad_dir=sys.argv[3])
at_first_frame = []
def on_event(event, _real=app.on_event):
    if isinstance(event, events.Ready) and not at_first_frame:
        at_first_frame.extend({m.split('.')[0] for m in sys.modules})
    return _real(event)
app.on_event = on_event
async def main():
    async with app.run_test(size=(160, 45)) as pilot:
        for _ in range(100):
            await pilot.pause(0.1)
            if app.screen.query("#diagnoses"):  # the last one mounted
                break
        print("FIRST", *sorted(at_first_frame))
        print("PANES", *[w.id for w in app.screen.query("#loss, #gpu-view, #scratchpad, #diagnoses")])
asyncio.run(main())
"""


def test_first_frame_waits_for_no_data_library(tmp_path):
    """The first frame loads none of what only data needs (numpy: the series, the metric parsers),
    with no run to show. Then the later tabs' panes come."""
    out = subprocess.run([sys.executable, "-c", FIRST_FRAME, str(ROOT / "config.toml"), str(tmp_path / "runs"),
                          str(tmp_path / "pad")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = {line.split()[0]: set(line.split()[1:]) for line in out.stdout.splitlines() if line.strip()}
    deferred = {"numpy"}
    assert "textual" in lines["FIRST"] and not lines["FIRST"] & deferred, lines["FIRST"] & deferred
    assert lines["PANES"] == {"loss", "gpu-view", "scratchpad", "diagnoses"}
