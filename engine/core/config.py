"""config.toml: settings, user paths and recipes. Read with tomllib, written back with tomli-w.

Every mistake becomes a UserError naming the file, the line where we can find it, the key, and
what is expected. Placeholders in commands and cwd: {python} (the interpreter running urbanrun),
{urbanrun} (this checkout), {home}, {run_dir}, and {paths.NAME} from the [paths] table.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from urbanrun.engine.core.atomic import atomic_write_text, folders_made_for
from urbanrun.engine.core.errors import UserError, storage_error
from urbanrun.engine.core.files import path_stat, regular_file, short
from urbanrun.engine.core.params import Param, ParamError, param_from_table
from urbanrun.engine.platform import user_config_dir, user_data_dir

# the installed urbanrun package (the checkout's root in a development install): config.toml lies there
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "config.toml"
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
BACKENDS = ("local", "torchrun", "slurm")  # where a run executes: see engine/runs/backends


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    command: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    params: tuple[Param, ...]
    backend: str = "local"
    metrics_files: tuple[str, ...] = ()  # extra metrics files or globs; {run_dir} and {cwd} allowed
    log_patterns: tuple[str, ...] = ()  # regexes with named groups, applied to every output line
    memory: dict = field(default_factory=dict)  # per_sample_gb, fixed_gb, batch_param: the advisor's estimate
    backend_options: dict = field(default_factory=dict)  # {"slurm": {...}, "torchrun": {...}} overrides
    oom_recovery: int = 0  # relaunch after a CUDA OOM with the next remedy, at most this many times
    queue: bool = False  # launch through the GPU-aware queue by default
    exclusive: bool = False  # the queue admits it only to a GPU nothing else uses
    max_per_gpu: int | None = None  # the queue puts at most this many runs on one GPU
    observe: dict = field(default_factory=dict)  # margin, areas, data_dirs: what-changed observations

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise UserError(f"recipe '{self.name}' has no parameter '{name}' (it has: {known}).")

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def values_from_text(self, overrides: dict[str, str]) -> dict[str, Any]:
        """Defaults with `name=value` overrides parsed and checked; raises naming the field."""
        values = self.defaults()
        for name, text in overrides.items():
            param = self.param(name)
            try:
                values[name] = param.parse(text)
            except ParamError as exc:
                raise UserError(f"recipe '{self.name}', parameter '{name}': {exc}.") from None
        return values

    def argv(self, values: dict[str, Any], context: dict[str, str]) -> list[str]:
        argv = [expand(part, context, where=f"recipes.{self.name}.command") for part in self.command]
        for p in self.params:
            argv += p.to_argv(values.get(p.name))
        return argv

    def resolved_cwd(self, context: dict[str, str]) -> Path:
        # absolute, so the record and a SLURM script (`#SBATCH --chdir`) name the folder, not "."
        return Path(os.path.expanduser(expand(self.cwd, context, where=f"recipes.{self.name}.cwd"))).absolute()


NOTIFY_ABOUT = ("ended", "failed", "diagnosis")
TERMINAL_NOTIFICATIONS = ("auto", "osc777", "osc9", "off")


@dataclass(frozen=True)
class Notify:
    """[notify]: a toast in the app, and while the terminal is not focused a terminal notification
    (OSC 777 / OSC 9) and the bell, about the events named in `on`."""
    toast: bool = True
    terminal: str = "auto"
    bell: bool = True
    on: tuple = NOTIFY_ABOUT


@dataclass
class Config:
    path: Path
    text: str
    data: dict
    recipes: dict[str, Recipe]
    paths: dict[str, str] = field(default_factory=dict)
    runs_dir: Path | None = None
    kill_grace: float = 10.0
    backends: dict = field(default_factory=dict)  # [backends.slurm], [backends.torchrun]
    notify: Notify = field(default_factory=Notify)
    packaged: bool = False  # the default shipped inside the install: read-only, never edited in place

    @property
    def editable_path(self) -> Path:
        """The file that saving defaults writes: this one, or for the packaged default the user's own
        config.toml (an install's files are not the user's to edit, and an upgrade would lose them)."""
        return user_config_dir() / "config.toml" if self.packaged else self.path

    def recipe(self, name: str) -> Recipe:
        if name not in self.recipes:
            known = ", ".join(sorted(self.recipes)) or "none"
            raise UserError(f"unknown recipe '{name}' in {self.path} (recipes: {known}).")
        return self.recipes[name]

    def context(self, run_dir: Path | str = "{run_dir}") -> dict[str, str]:
        ctx = {"python": sys.executable, "urbanrun": str(ROOT), "home": str(Path.home()), "run_dir": str(run_dir),
               "cwd": "{cwd}"}
        ctx.update({f"paths.{k}": os.path.expanduser(v) for k, v in self.paths.items()})
        return ctx


def expand(template: str, context: dict[str, str], where: str) -> str:
    def sub(match: re.Match) -> str:
        key = match.group(1)
        if key not in context:
            known = ", ".join("{" + k + "}" for k in context)
            raise UserError(f"{where}: unknown placeholder {{{key}}} (known: {known}).")
        return context[key]

    return PLACEHOLDER_RE.sub(sub, template)


def find_config(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        path = Path(explicit)
        if path_stat(path, "config file") is None:
            raise UserError(f"config file {short(path)} does not exist; pass an existing file to --config.")
        return regular_file(path, "config file")  # a FIFO would block the read, a device never end
    for candidate in (Path("config.toml"), user_config_dir() / "config.toml"):
        if candidate.is_file():
            return candidate
    return DEFAULT_CONFIG


def load_config(path: str | os.PathLike | None = None) -> Config:
    path = find_config(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"config file {path} cannot be read: {exc.strerror or exc}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}; fix that line and try again.") from None
    return _build(path, text, data)


def _build(path: Path, text: str, data: dict) -> Config:
    def fail(table: str, key: str | None, message: str) -> UserError:
        line = locate(text, table, key)
        where = f"{path}" + (f" line {line}" if line else "")
        dotted = table + (f".{key}" if key else "")
        return UserError(f"{where}: {dotted}: {message}.")

    _known(fail, None, data, TABLES, "a table of config.toml")
    settings = data.get("urbanrun", {})
    if not isinstance(settings, dict):
        raise fail("urbanrun", None, "must be a table")
    _known(fail, "urbanrun", settings, URBANRUN_KEYS, "a setting of urbanrun")
    grace = settings.get("kill_grace_seconds", 10)
    if not isinstance(grace, (int, float)) or isinstance(grace, bool) or not 0 <= grace < math.inf:
        raise fail("urbanrun", "kill_grace_seconds", "must be a number of seconds >= 0")
    runs_dir = settings.get("runs_dir", "runs")
    if not isinstance(runs_dir, str):
        raise fail("urbanrun", "runs_dir", "must be a path string")
    paths = data.get("paths", {})
    if not isinstance(paths, dict) or not all(isinstance(v, str) for v in paths.values()):
        raise fail("paths", None, "must be a table of path strings")

    observe_defaults = _observe_table(fail, "observe", data.get("observe", {}))
    recipes: dict[str, Recipe] = {}
    tables = data.get("recipes", {})
    if not isinstance(tables, dict):
        raise fail("recipes", None, "must be a table of recipes")
    for name, table in tables.items():
        where = f"recipes.{name}"
        if not isinstance(table, dict):
            raise fail(where, None, "must be a table")
        _known(fail, where, table, RECIPE_KEYS, "a recipe setting")
        command = table.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            raise fail(where, "command", 'must be a non-empty list of strings, e.g. ["{python}", "train.py"]')
        env = table.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise fail(where, "env", "must be a table of string values")
        backend = table.get("backend", "local")
        if backend not in BACKENDS:
            raise fail(where, "backend", f"must be one of {', '.join(BACKENDS)}")
        if not isinstance(table.get("params", {}), dict):
            raise fail(where, "params", "must be a table of parameters, e.g. [recipes.NAME.params.epochs] with type = \"int\"")
        if not isinstance(table.get("cwd", "."), str):
            raise fail(where, "cwd", "must be a path string")
        params = []
        for pname, ptable in table.get("params", {}).items():
            if not isinstance(ptable, dict):
                raise fail(f"{where}.params", pname, "must be a table with at least 'type'")
            try:
                params.append(param_from_table(pname, ptable))
            except ParamError as exc:
                raise fail(f"{where}.params.{pname}", None, str(exc)) from None
        files = table.get("metrics_files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise fail(where, "metrics_files", 'must be a list of paths or globs, e.g. ["{cwd}/lightning_logs/*/metrics.csv"]')
        patterns = table.get("log_patterns", [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise fail(where, "log_patterns", "must be a list of regular expressions with named groups")
        for pattern in patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise fail(where, "log_patterns", f"{pattern!r} is not a valid regular expression ({exc})") from None
            if not compiled.groupindex:
                raise fail(where, "log_patterns", f"{pattern!r} needs named groups, e.g. (?P<loss>[0-9.eE+-]+)")
        memory = table.get("memory", {})
        if not isinstance(memory, dict) or any(
                not isinstance(memory.get(k, 0), (int, float)) or isinstance(memory.get(k, 0), bool)
                or not 0 <= memory.get(k, 0) < math.inf for k in ("per_sample_gb", "fixed_gb")):
            raise fail(where, "memory", "must be a table like { per_sample_gb = 0.144, fixed_gb = 0.5 }")
        recovery = table.get("oom_recovery", 0)
        if not isinstance(recovery, int) or isinstance(recovery, bool) or recovery < 0:
            raise fail(where, "oom_recovery", "must be a whole number of relaunches >= 0 (0 turns it off)")
        for flag in ("queue", "exclusive"):
            if not isinstance(table.get(flag, False), bool):
                raise fail(where, flag, "must be true or false")
        per_gpu = table.get("max_per_gpu")
        if per_gpu is not None and (isinstance(per_gpu, bool) or not isinstance(per_gpu, int) or per_gpu < 1):
            raise fail(where, "max_per_gpu", "must be a whole number of runs >= 1")
        backend_options = {}
        for backend_name in ("slurm", "torchrun"):
            sub = table.get(backend_name, {})
            if not isinstance(sub, dict):
                raise fail(where, backend_name, f"must be a table of {backend_name} options")
            backend_options[backend_name] = dict(sub)
        recipe = Recipe(
            name=name,
            description=str(table.get("description", "")),
            command=tuple(command),
            cwd=str(table.get("cwd", ".")),
            env=dict(env),
            params=tuple(params),
            backend=backend,
            metrics_files=tuple(files),
            log_patterns=tuple(patterns),
            memory=dict(memory),
            backend_options=backend_options,
            oom_recovery=recovery,
            queue=table.get("queue", False), exclusive=table.get("exclusive", False), max_per_gpu=per_gpu,
            observe={**observe_defaults, **_observe_table(fail, f"{where}.observe", table.get("observe", {}))},
        )
        recipes[name] = recipe

    _check_scratchpad(fail, data.get("scratchpad", {}))
    backends = data.get("backends", {})
    if not isinstance(backends, dict) or not all(isinstance(v, dict) for v in backends.values()):
        raise fail("backends", None, "must hold tables such as [backends.slurm]")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise fail("backends", None, f"has unknown backend(s) {', '.join(sorted(unknown))}; known: {', '.join(BACKENDS)}")
    config = Config(path=path, text=text, data=data, recipes=recipes, paths=dict(paths), kill_grace=float(grace),
                    backends=backends, notify=_notify_table(fail, data.get("notify", {})))
    config.packaged = path is DEFAULT_CONFIG
    runs = Path(os.path.expanduser(runs_dir))
    # relative to the config's folder, except for the packaged default (its folder is the install,
    # site-packages, where runs would be lost on upgrade) and the user's own config.toml (a config
    # folder holds settings, not gigabytes): those put runs in the user's data folder
    user_level = config.packaged or path.resolve().parent == user_config_dir().resolve()
    base = user_data_dir() if user_level else path.resolve().parent
    config.runs_dir = runs if runs.is_absolute() else base / runs
    ctx = config.context()
    for recipe in recipes.values():  # unknown placeholders are config mistakes: catch them at load
        for part in (*recipe.command, recipe.cwd, *recipe.env.values(), *recipe.metrics_files):
            try:
                expand(part, ctx, where="")
            except UserError as exc:
                key = ("cwd" if part == recipe.cwd else "env" if part in recipe.env.values()
                       else "metrics_files" if part in recipe.metrics_files else "command")
                raise fail(f"recipes.{recipe.name}", key, str(exc).lstrip(": ").rstrip(".")) from None
    return config


def locate(text: str, table: str, key: str | None = None) -> int | None:
    """The 1-based line of `[table]` (or of `key` inside it) in the TOML text, when we can find it."""
    header = re.compile(r"^\s*\[+\s*" + r"\s*\.\s*".join(map(re.escape, table.split("."))) + r"\s*\]+")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if header.match(line):
            if key is None:
                return i + 1
            for j in range(i + 1, len(lines)):
                if re.match(r"^\s*\[", lines[j]):
                    break
                if re.match(r"^\s*" + re.escape(key) + r"\s*=", lines[j]):
                    return j + 1
            return i + 1
    return None


EDIT_TRIES = 5


def _text_to_edit(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: the defaults were not saved, the file is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start}); fix it by hand, then save again.") from None


def _with_defaults(text: str, source: Path, recipe_name: str, values: dict[str, Any]) -> str:
    """The file's text with the recipe's defaults set; the file as it is now, which may have been
    edited by hand since urbanrun read it (a table or recipe gone, a line half typed): one sentence."""
    import tomlkit

    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise UserError(f"{source}: the defaults were not saved, the file no longer parses (line {exc.line}, column "
                        f"{exc.col}: {str(exc).split(' at line ')[0]}); fix it, then save again.") from None
    recipes = doc.get("recipes")
    recipe = recipes.get(recipe_name) if isinstance(recipes, dict) else None
    if not isinstance(recipe, dict):
        raise UserError(f"{source}: the defaults were not saved, it has no [recipes.{recipe_name}] table any more "
                        f"(edited since urbanrun read it); add it back, or reopen urbanrun.")
    params = recipe.setdefault("params", tomlkit.table(is_super_table=True))
    for name, value in values.items():
        table = params.setdefault(name, tomlkit.table())
        if not isinstance(table, dict):
            raise UserError(f"{source}: the defaults were not saved, [recipes.{recipe_name}.params] {name} is not a "
                            f"table any more (edited since urbanrun read it); fix it, then save again.")
        if value is None:
            table.pop("default", None)
        else:
            table["default"] = value
    edited = tomlkit.dumps(doc)
    try:
        tomllib.loads(edited)
    except tomllib.TOMLDecodeError as exc:  # never write a file urbanrun could not read back
        raise UserError(f"{source}: the defaults were not saved, the edited file would not parse ({exc}); "
                        "edit the recipe's `default = …` lines by hand.") from exc
    return edited


def save_recipe_defaults(config: Config, recipe_name: str, values: dict[str, Any]) -> Path:
    """Write values as the recipe's parameter defaults with tomlkit, which keeps the file's
    comments, order and layout; the file's mode is kept too (atomic write). A value of None
    removes the default."""
    recipe = config.recipe(recipe_name)
    for name in values:
        recipe.param(name)  # unknown names are an error before anything is written
    target = config.editable_path
    for _ in range(EDIT_TRIES):  # a hand edit made while this one is made is kept: the edit is made again on it
        source = target if target.is_file() else config.path  # the packaged default seeds the user's copy
        text = _text_to_edit(source)
        edited = _with_defaults(text, source, recipe_name, values)
        if target != source or _text_to_edit(source) == text:
            break
    else:
        raise UserError(f"{target}: the defaults were not saved, the file kept changing while they were written "
                        f"(is it being edited?); save it, then save the defaults again.")
    try:
        with folders_made_for(target.parent):
            atomic_write_text(target, edited)
    except OSError as exc:  # read-only, full: the file is as it was, and the sentence names it
        raise storage_error(exc, target.parent, f"save the defaults of '{recipe_name}' to {target.name}",
                            f"make it writable, or set the defaults in {target} by hand") from None
    return target


TABLES = ("urbanrun", "paths", "scratchpad", "notify", "observe", "backends", "recipes")
URBANRUN_KEYS = ("runs_dir", "kill_grace_seconds")
RECIPE_KEYS = ("description", "command", "cwd", "env", "params", "backend", "metrics_files", "log_patterns", "memory",
               "oom_recovery", "queue", "exclusive", "max_per_gpu", "slurm", "torchrun", "observe")


def _known(fail, where: str | None, table: dict, known: tuple[str, ...], what: str) -> None:
    """A key urbanrun does not read is a mistake (a typo'd setting that silently does nothing)."""
    unknown = sorted(set(table) - set(known))
    if unknown:
        key = unknown[0]
        raise fail(where or key, key if where else None, f"is not {what} (known: {', '.join(known)})")


SCRATCHPAD_KEYS = {"root": str, "role": str, "coordinator": str, "pattern": str, "session": str, "log": list}


def _check_scratchpad(fail, table) -> None:
    """[scratchpad]: each setting's type, and a file-name pattern that names a file under root
    from the placeholders it offers ({role}, {date}, {session})."""
    if not isinstance(table, dict):
        raise fail("scratchpad", None, "must be a table")
    for key, value in table.items():
        kind = SCRATCHPAD_KEYS.get(key)
        if kind is None:
            raise fail("scratchpad", key, f"is not a scratchpad setting (known: {', '.join(SCRATCHPAD_KEYS)})")
        if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
            raise fail("scratchpad", key, "must be a list of event names" if kind is list else "must be a string")
    pattern = table.get("pattern", "{role}/{date}.md")
    try:
        name = pattern.format(role="r", date="2026-01-01", session="s")
    except (KeyError, IndexError, ValueError) as exc:
        detail = f"unknown placeholder {{{exc.args[0]}}}" if isinstance(exc, KeyError) else str(exc)
        raise fail("scratchpad", "pattern", f"{detail}; it may use {{role}}, {{date}} and {{session}}") from None
    if not name.strip() or os.path.isabs(name) or ".." in Path(name).parts:
        raise fail("scratchpad", "pattern", "must name a file under the scratchpad root, e.g. \"{role}/{date}.md\"")


def _observe_table(fail, where: str, table) -> dict:
    """[observe] (or a recipe's `observe`): margin (how much worse the best metric may be than the
    last good run's before it is an observation), areas (name -> path globs), data_dirs."""
    if not isinstance(table, dict):
        raise fail(where, None, 'must be a table like { margin = 0.1, areas = { "model code" = ["**/models/**"] } }')
    margin = table.get("margin", None)
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))
                               or not margin >= 0 or margin == float("inf")):
        raise fail(where, "margin", "must be a fraction >= 0, e.g. 0.1 for 10% worse than the last good run")
    areas = table.get("areas", None)
    if areas is not None and (not isinstance(areas, dict) or not all(
            isinstance(v, list) and all(isinstance(g, str) for g in v) for v in areas.values())):
        raise fail(where, "areas", 'must be a table of path-glob lists, e.g. { "model code" = ["**/models/**"] }')
    dirs = table.get("data_dirs", None)
    if dirs is not None and (not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs)):
        raise fail(where, "data_dirs", 'must be a list of folder names or paths, e.g. ["data"]')
    unknown = set(table) - {"margin", "areas", "data_dirs"}
    if unknown:
        raise fail(where, sorted(unknown)[0], "is not a setting of observe (known: margin, areas, data_dirs)")
    return {k: v for k, v in (("margin", margin), ("areas", areas), ("data_dirs", dirs)) if v is not None}



def _notify_table(fail, table) -> Notify:
    """[notify]: toast and bell true/false, terminal one of TERMINAL_NOTIFICATIONS, on a list of
    NOTIFY_ABOUT."""
    if not isinstance(table, dict):
        raise fail("notify", None, 'must be a table like { toast = true, terminal = "auto", bell = true }')
    unknown = set(table) - {"toast", "terminal", "bell", "on"}
    if unknown:
        raise fail("notify", sorted(unknown)[0], "is not a setting of notify (known: toast, terminal, bell, on)")
    for key in ("toast", "bell"):
        if not isinstance(table.get(key, True), bool):
            raise fail("notify", key, "must be true or false")
    terminal = table.get("terminal", "auto")
    if terminal not in TERMINAL_NOTIFICATIONS:
        raise fail("notify", "terminal", f"must be one of {', '.join(repr(t) for t in TERMINAL_NOTIFICATIONS)}")
    on = table.get("on", list(NOTIFY_ABOUT))
    if not isinstance(on, list) or not all(isinstance(v, str) and v in NOTIFY_ABOUT for v in on):
        raise fail("notify", "on", f"must be a list of {', '.join(repr(v) for v in NOTIFY_ABOUT)} (or [] for none)")
    return Notify(toast=table.get("toast", True), terminal=terminal, bell=table.get("bell", True), on=tuple(on))
