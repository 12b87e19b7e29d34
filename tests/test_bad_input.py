"""Bad input gets one clear sentence, exit 2, and writes nothing."""

from __future__ import annotations

import pytest

from conftest import cli


def _runs(workspace):
    runs = workspace / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


@pytest.mark.parametrize("args, words", [
    (["launch", "nope"], "unknown recipe 'nope'"),
    (["launch", "cones", "--set", "batch_size=abc"], "parameter 'batch_size': must be a whole number, not 'abc'"),
    (["launch", "cones", "--set", "epochs=0"], "parameter 'epochs': must be at least 1, not 0"),
    (["launch", "cones", "--set", "dims=8,x"], "parameter 'dims': must be a whole number"),
    (["launch", "cones", "--set", "nosuch=1"], "has no parameter 'nosuch'"),
    (["launch", "cones", "--set", "epochs"], "--set expects NAME=VALUE"),
    (["show", "20990101-nosuchrun"], "no run '20990101-nosuchrun'"),
    (["show", "../etc"], "is not a run id"),
    (["logs", "a/b"], "is not a run id"),
    (["kill", "..", "--force"], "is not a run id"),
    (["launch"], "the following arguments are required: recipe"),
])
def test_bad_input_is_one_sentence_and_exit_2(workspace, args, words):
    proc = cli(*args, cwd=workspace)
    assert proc.returncode == 2, proc
    assert words in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert _runs(workspace) == []


def test_broken_config_names_file_and_line(workspace):
    (workspace / "config.toml").write_text('[recipes.x]\ncommand = = ["a"]\n')
    proc = cli("ls", cwd=workspace)
    assert proc.returncode == 2 and "config.toml is not valid TOML" in proc.stderr and "line 2" in proc.stderr


def test_invalid_recipe_value_names_line_and_key(workspace):
    (workspace / "config.toml").write_text(
        '[recipes.x]\ncommand = ["{python}"]\n\n[recipes.x.params.epochs]\ntype = "int"\nmin = 1\ndefault = 0\n')
    proc = cli("launch", "x", cwd=workspace)
    assert proc.returncode == 2
    assert "config.toml line 4: recipes.x.params.epochs: 'default' must be at least 1, not 0." in proc.stderr


def test_missing_working_directory_is_a_clear_error_at_launch(workspace):
    proc = cli("launch", "full-area-unet", "--config", str(__import__("urbanrun.engine.core.config").engine.core.config.DEFAULT_CONFIG),
               "--runs-dir", str(workspace / "runs"), cwd=workspace)
    assert proc.returncode == 2
    assert "working directory" in proc.stderr and "does not exist" in proc.stderr and "[paths]" in proc.stderr
    assert _runs(workspace) == []


def test_unknown_placeholder_is_caught_at_load(workspace):
    (workspace / "config.toml").write_text('[recipes.x]\ncommand = ["{pyhton}", "t.py"]\n')
    proc = cli("ls", cwd=workspace)
    assert proc.returncode == 2 and "config.toml line 2: recipes.x.command: unknown placeholder {pyhton}" in proc.stderr


def test_corrupt_run_record_is_reported_and_others_still_listed(workspace):
    bad = workspace / "runs" / "20260101-000000-x-0000"
    bad.mkdir(parents=True)
    (bad / "run.toml").write_text("id = [broken")
    proc = cli("ls", "--all", cwd=workspace)
    assert proc.returncode == 0
    assert "is not a valid run record" in proc.stderr
    assert (bad / "run.toml").read_text() == "id = [broken"  # nothing lost
