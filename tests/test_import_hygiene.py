"""The engine never loads textual or torch; the TUI never loads torch (shared/DESIGN.md)."""

import subprocess
import sys

from conftest import ROOT


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_engine_loads_neither_textual_nor_torch():
    loaded = _loaded_after("import engine, engine.engine, engine.cli, engine.supervisor, engine.config")
    assert not loaded & {"textual", "torch", "torch_geometric"}
