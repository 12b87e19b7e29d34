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
