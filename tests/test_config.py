"""Recipes: typed parameters, argv rendering, the shipped config, saving defaults back."""

from __future__ import annotations

import tomllib

import pytest

from urbanrun.engine.core.config import DEFAULT_CONFIG, load_config, save_recipe_defaults
from urbanrun.engine.core.errors import UserError
from urbanrun.engine.core.params import ParamError, param_from_table


def test_shipped_config_has_both_recipes_with_bounds():
    config = load_config(DEFAULT_CONFIG)
    cones = config.recipe("cones")
    assert cones.param("epochs").min == 1 and cones.param("batch_size").min == 1
    argv = cones.argv(cones.values_from_text({"amp": "true", "dims": "8, 16,32"}), config.context("/r"))
    assert argv[1:3] == ["-m", "urbanrun.trainers.cones_unet"]
    assert "--amp" in argv and "--grad-checkpoint" not in argv
    assert argv[argv.index("--dims") + 1] == "8,16,32"
    assert "--max-steps" not in argv  # unset: omitted
    full = config.recipe("full-area-unet")
    argv = full.argv(full.defaults(), config.context("/r"))
    for flag, value in [("--study-area", "netherlands"), ("--epochs", "500"), ("--dims", "64,128,256"),
                        ("--lr", "0.01"), ("--patience", "100"), ("--warmup-epochs", "50"),
                        ("--year", "2022"), ("--resolutions", "9,8,7")]:
        assert argv[argv.index(flag) + 1] == value
    assert "--wandb" not in argv and "--wandb-name" not in argv and "--target-year" not in argv
    on = full.values_from_text({"wandb": "yes", "wandb_name": "try 2", "supervised": "1", "target_year": "2023"})
    argv = full.argv(on, config.context("/r"))
    assert argv[-6:] == ["--wandb", "--wandb-name", "try 2", "--supervised", "--target-year", "2023"]


@pytest.mark.parametrize("table, text, expected", [
    ({"type": "float", "min": 0}, "1e-3", 0.001),
    ({"type": "choice", "choices": ["auto", "cpu", "cuda"]}, "cuda", "cuda"),
    ({"type": "bool"}, "off", False),
    ({"type": "list", "item_type": "float"}, "0.1 0.2", [0.1, 0.2]),
    ({"type": "string"}, "", ""),
])
def test_param_parsing(table, text, expected):
    assert param_from_table("x", table).parse(text) == expected


@pytest.mark.parametrize("table, text, reason", [
    ({"type": "choice", "choices": ["a", "b"]}, "c", "must be one of a, b"),
    ({"type": "float", "max": 1}, "2", "must be at most 1"),
    ({"type": "float"}, "nan", "finite"),
    ({"type": "bool"}, "maybe", "true or false"),
])
def test_param_errors_say_what_is_expected(table, text, reason):
    with pytest.raises(ParamError, match=reason):
        param_from_table("x", table).parse(text)


def test_param_names_must_be_snake_case():
    with pytest.raises(ParamError, match="snake_case"):
        param_from_table("batchSize", {"type": "int"})


def test_saving_defaults_keeps_comments_and_other_content(tmp_path):
    path = tmp_path / "config.toml"
    original = DEFAULT_CONFIG.read_text()
    path.write_text(original)
    config = load_config(path)
    save_recipe_defaults(config, "cones", {"batch_size": 32, "amp": True, "dims": [8, 16, 32], "max_steps": 100})
    text = path.read_text()
    assert "# Where your UrbanRepML checkout lives" in text  # comments survive
    data = tomllib.loads(text)
    params = data["recipes"]["cones"]["params"]
    assert params["batch_size"]["default"] == 32 and params["amp"]["default"] is True
    assert params["dims"]["default"] == [8, 16, 32] and params["max_steps"]["default"] == 100
    before = tomllib.loads(original)
    assert data["recipes"]["full-area-unet"] == before["recipes"]["full-area-unet"]
    assert load_config(path).recipe("cones").param("batch_size").default == 32


def test_saving_an_unknown_parameter_writes_nothing(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(DEFAULT_CONFIG.read_text())
    with pytest.raises(UserError):
        save_recipe_defaults(load_config(path), "cones", {"nope": 1})
    assert path.read_text() == DEFAULT_CONFIG.read_text()


def test_saving_defaults_changes_only_those_lines_and_keeps_the_file_mode(tmp_path):
    import difflib
    import os
    import stat

    path = tmp_path / "config.toml"
    original = DEFAULT_CONFIG.read_text()
    path.write_text(original)
    os.chmod(path, 0o644)
    before = tomllib.loads(original)["recipes"]["cones"]["params"]
    save_recipe_defaults(load_config(path), "cones", {"batch_size": before["batch_size"]["default"] + 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    changed = [line for line in difflib.unified_diff(original.splitlines(), path.read_text().splitlines(), n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) == 2 and all("default" in line for line in changed), changed
    save_recipe_defaults(load_config(path), "cones", {"batch_size": None})  # None removes the default
    assert "default" not in tomllib.loads(path.read_text())["recipes"]["cones"]["params"]["batch_size"]


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """A folder with no config.toml, and private XDG config/data folders (no real home touched)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("URBANRUN_RUNS_DIR", raising=False)
    monkeypatch.chdir(elsewhere)
    return tmp_path


def test_the_packaged_config_keeps_runs_out_of_the_install(user_dirs):
    # an installed urbanrun's default config lies in site-packages: runs there would vanish on upgrade
    config = load_config()
    assert config.path == DEFAULT_CONFIG and config.packaged
    assert config.runs_dir == user_dirs / "xdg-data" / "urbanrun" / "runs"
    assert DEFAULT_CONFIG.parent not in config.runs_dir.parents


def test_a_users_own_config_is_found_and_saving_defaults_never_edits_the_install(user_dirs):
    packaged = DEFAULT_CONFIG.read_text()
    path = save_recipe_defaults(load_config(), "cones", {"batch_size": 48})
    assert path == user_dirs / "xdg-config" / "urbanrun" / "config.toml"
    assert DEFAULT_CONFIG.read_text() == packaged
    config = load_config()  # now found in the user's config folder, before the packaged default
    assert config.path == path and not config.packaged
    assert config.recipe("cones").param("batch_size").default == 48
    assert config.runs_dir == user_dirs / "xdg-data" / "urbanrun" / "runs"  # runs did not move
    assert "# Where your UrbanRepML checkout lives" in path.read_text()  # a copy with its comments
    save_recipe_defaults(config, "cones", {"epochs": 3})  # a second save edits the user's copy
    assert load_config().recipe("cones").param("batch_size").default == 48


def test_a_config_in_the_working_folder_wins_and_keeps_runs_beside_it(user_dirs):
    (user_dirs / "elsewhere" / "config.toml").write_text(DEFAULT_CONFIG.read_text())
    config = load_config()
    assert not config.packaged and config.runs_dir == (user_dirs / "elsewhere" / "runs").resolve()


def test_a_recipe_without_cwd_runs_in_the_absolute_folder_urbanrun_started_in(user_dirs):
    (user_dirs / "elsewhere" / "config.toml").write_text('[recipes.x]\ncommand = ["{python}", "-c", "pass"]\n')
    config = load_config()
    cwd = config.recipe("x").resolved_cwd(config.context())
    assert cwd.is_absolute() and cwd == user_dirs / "elsewhere"  # a SLURM script's --chdir names it
