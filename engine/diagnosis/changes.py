"""Cross-agent observations: when a run fails, is diagnosed, or ends clearly worse than the recipe's
last good run, say what changed since that run — commits between the two (with their authors:
the architect who changed the model, the agent who changed the data), files changed grouped by area,
the uncommitted diff, the parameter diff — and, first, whether the failing frame of the traceback lies
in a changed file. Errors that point at inputs become a data-loading observation naming the path.

`observe(store, record, settings, lines)` is the one entry point; it returns the record's
`changes_since_good` object (or None when there is nothing to say) and never raises for a missing
repository, a missing git or a run without a last good run."""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from urbanrun.engine.diagnosis.rules import last_traceback
from urbanrun.engine.runs.code_state import DIFF_FILE, diff_files, git
from urbanrun.engine.runs.store import RunRecord, RunStore

DEFAULT_MARGIN = 0.10  # a best metric 10% worse than the last good run's is "clearly worse"
DEFAULT_AREAS = {  # first match wins; globs match the repository-relative path
    "model code": ["**/models/**", "**/model.py", "**/model_*.py", "**/*_model.py", "**/*_model*.py",
                   "**/layers/**", "**/networks/**", "**/nn/**", "**/architectures/**", "**/*unet*.py",
                   "**/*gnn*.py", "**/*conv*.py"],
    "data loading": ["**/data/**", "**/datasets/**", "**/dataset*.py", "**/*dataset.py", "**/*loader*.py",
                     "**/loaders/**", "**/*_data.py", "**/data_*.py", "**/preprocess*", "**/preprocessing/**",
                     "**/*batch*.py", "**/stage1*/**"],
    "configuration": ["**/*.toml", "**/*.yaml", "**/*.yml", "**/*.json", "**/*.cfg", "**/*.ini",
                      "**/configs/**", "**/config*.py", "**/requirements*.txt", "**/setup.py"],
}
DEFAULT_DATA_DIRS = ("data",)
DATA_SUFFIXES = (".parquet", ".csv", ".npy", ".npz", ".pt", ".pth", ".h5", ".hdf5", ".feather", ".arrow",
                 ".zarr", ".gpkg", ".geojson", ".shp", ".pkl", ".pickle", ".json", ".tif", ".tiff", ".nc")
MISSING_RE = re.compile(r"(FileNotFoundError|No such file or directory|does not exist)[^'\"]*['\"]([^'\"]+)['\"]")
UNREADABLE_RE = re.compile(r"(PermissionError|IsADirectoryError)[^'\"]*['\"]([^'\"]+)['\"]")
ARROW_RE = re.compile(r"(ArrowInvalid|ArrowIOError|ArrowTypeError|ParquetException|Parquet magic bytes not found|"
                      r"Could not open Parquet input source|parquet file size is 0)", re.I)
QUOTED_PATH_RE = re.compile(r"['\"<]([^'\"<>]+\.(?:parquet|arrow|feather|csv))['\">]", re.I)
SHAPE_RE = re.compile(r"\b(shape|dtype|size mismatch|sizes of tensors|mat1 and mat2|expected .* got)\b", re.I)
GOOD_ERROR_SEVERITIES = ("error",)
MAX_COMMITS = 30
MAX_FILES = 60


# -- which run to compare with --------------------------------------------------------------------------
def is_good(record: RunRecord) -> bool:
    """Exited 0 without an error diagnosis."""
    return (record.status == "exited" and record.exit_code == 0
            and not any(d.get("severity") in GOOD_ERROR_SEVERITIES for d in record.diagnoses))


def last_good_run(store: RunStore, record: RunRecord) -> RunRecord | None:
    """The latest run of the same recipe, created before this one, that ended well."""
    records, _ = store.load_all()
    earlier = [r for r in records if r.recipe == record.recipe and r.id != record.id
               and (r.created or 0) <= (record.created or 0) and is_good(r)]
    return max(earlier, key=lambda r: r.created or 0, default=None)


def why_observe(record: RunRecord, good: RunRecord | None, margin: float, live: tuple[dict, ...] = ()) -> str | None:
    """Why this run deserves an observation: it failed, was diagnosed (`live`: diagnoses of a run
    still going, e.g. its loss turned NaN), or ended clearly worse."""
    if record.status == "killed":
        return None  # stopped on purpose
    if record.status in ("failed", "lost") or (record.exit_code not in (None, 0)):
        return "failed"
    errors = [d.get("kind") for d in (*record.diagnoses, *live) if d.get("severity") in GOOD_ERROR_SEVERITIES]
    if errors:
        return f"diagnosed: {errors[0]}"
    if (good is not None and record.status == "exited" and record.loss_best is not None
            and good.loss_best is not None and record.loss_name == good.loss_name
            and record.loss_best > good.loss_best + margin * abs(good.loss_best)):
        return (f"ended worse: best {record.loss_name} {record.loss_best:.4g} against {good.loss_best:.4g} "
                f"in the last good run (margin {margin:.0%})")
    return None


# -- areas and paths --------------------------------------------------------------------------------------
def area_of(path: str, areas: dict[str, list[str]]) -> str:
    candidates = (path, "/" + path)  # so that **/models/** also matches a top-level models/
    for name, globs in areas.items():
        if any(fnmatch.fnmatch(c, g) for g in globs for c in candidates):
            return name
    return "other"


def group_by_area(paths: list[str], areas: dict[str, list[str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for path in paths:
        grouped.setdefault(area_of(path, areas), []).append(path)
    return grouped


def repo_relative(path: str, cwd: str, root: str | None) -> str | None:
    """A traceback's file as a path inside the run's repository, or None when it lies outside."""
    if root is None:
        return None
    full = Path(path) if os.path.isabs(path) else Path(cwd) / path
    try:
        return Path(os.path.normpath(full)).relative_to(Path(root)).as_posix()
    except ValueError:
        return None


# -- what changed -----------------------------------------------------------------------------------------
def commits_between(root: str, old: str, new: str, path: str | None = None) -> list[dict]:
    args = ["log", f"--max-count={MAX_COMMITS}", "--format=%h%x1f%aI%x1f%s%x1f%an", f"{old}..{new}"]
    out = git(root, *args, *(["--", path] if path else []))
    commits = []
    for line in (out or "").splitlines():
        parts = line.split("\x1f")
        if len(parts) == 4:
            commits.append({"commit": parts[0], "date": parts[1], "subject": parts[2], "author": parts[3]})
    return commits


def files_between(root: str, old: str, new: str) -> list[str]:
    out = git(root, "diff", "--name-only", f"{old}..{new}")
    return [line for line in (out or "").splitlines() if line][:MAX_FILES]


def kept_diff(store: RunStore, record: RunRecord) -> str:
    try:
        return (store.run_dir(record.id) / DIFF_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def param_diff(good: RunRecord, record: RunRecord) -> dict[str, list]:
    names = sorted(set(good.params) | set(record.params))
    def shown(value):
        return "unset" if value is None else value

    return {n: [shown(good.params.get(n)), shown(record.params.get(n))] for n in names
            if good.params.get(n) != record.params.get(n)}


# -- data loading -----------------------------------------------------------------------------------------
def _is_data_path(path: str, data_dirs: tuple[str, ...]) -> bool:
    parts = Path(path).parts
    return path.lower().endswith(DATA_SUFFIXES) or any(
        d in parts or path.startswith(d.rstrip("/") + "/") or ("/" + d.strip("/") + "/") in path for d in data_dirs)


def data_observations(lines: list[str], record: RunRecord, areas: dict, data_dirs: tuple[str, ...]) -> list[dict]:
    """Errors that point at the run's inputs (and input-bound trends), each naming the path."""
    found: list[dict] = []

    def add(kind: str, path: str | None, summary: str, evidence: str) -> None:
        if not any(o["kind"] == kind and o.get("path") == path for o in found):
            found.append({"kind": kind, "path": path, "summary": summary, "evidence": evidence.strip()[:300]})

    for line in lines[-4000:]:
        if m := MISSING_RE.search(line):
            if _is_data_path(m.group(2), data_dirs):
                add("missing_input", m.group(2), f"an input file is missing: {m.group(2)}", line)
        elif m := UNREADABLE_RE.search(line):
            if _is_data_path(m.group(2), data_dirs):
                add("unreadable_input", m.group(2), f"an input cannot be read ({m.group(1)}): {m.group(2)}", line)
        elif ARROW_RE.search(line):
            path = (QUOTED_PATH_RE.search(line) or [None, None])[1]
            add("arrow_read_error", path, "a parquet/arrow input could not be read" + (f": {path}" if path else ""),
                line)
    exception, frame, _ = last_traceback(lines)
    if exception and frame and SHAPE_RE.search(exception):
        rel = repo_relative(frame[0], record.cwd, record.git_root) or frame[0]
        if area_of(rel, areas) == "data loading":
            add("data_shape_error", rel, f"a shape/dtype error raised in data-loading code at {rel}:{frame[1]}",
                exception)
    for d in record.diagnoses:
        if d.get("kind") == "input_bound":
            add("input_bound", None, "training waited on data loading: " + str(d.get("summary", "")), "")
    return found


# -- the observation ----------------------------------------------------------------------------------------
def settings_of(observe: dict | None) -> tuple[float, dict, tuple[str, ...]]:
    observe = observe or {}
    return (float(observe.get("margin", DEFAULT_MARGIN)), dict(observe.get("areas") or DEFAULT_AREAS),
            tuple(observe.get("data_dirs") or DEFAULT_DATA_DIRS))


def observe(store: RunStore, record: RunRecord, observe_settings: dict | None, lines: list[str],
            live: tuple[dict, ...] = ()) -> dict | None:
    margin, areas, data_dirs = settings_of(observe_settings)
    good = last_good_run(store, record)
    reason = why_observe(record, good, margin, live)
    if reason is None:
        return None
    data = data_observations(lines, record, areas, data_dirs)
    out: dict = {"reason": reason, "run": record.id, "last_good": good.id if good else None,
                 "commits": [], "files": {}, "uncommitted": None, "params": {}, "failing_frame": None,
                 "data_loading": data, "headline": None}
    exception, frame, _ = last_traceback(lines)
    rel = repo_relative(frame[0], record.cwd, record.git_root) if frame else None
    if frame:
        out["failing_frame"] = {"file": rel or frame[0], "line": frame[1], "function": frame[2],
                                "exception": exception}
    dirty = diff_files(kept_diff(store, record)) if record.git_dirty else []
    if dirty:
        out["uncommitted"] = {"files": dirty, "sha256": record.git_diff_sha,
                              "diff": str(store.run_dir(record.id) / DIFF_FILE)}
    if good is not None:
        out["params"] = param_diff(good, record)
        same_repo = good.git_root is not None and good.git_root == record.git_root
        if same_repo and good.git_commit and record.git_commit and good.git_commit != record.git_commit:
            out["commits"] = commits_between(record.git_root, good.git_commit, record.git_commit)
            out["files"] = group_by_area(files_between(record.git_root, good.git_commit, record.git_commit), areas)
        if good.git_dirty and good.git_diff_sha != record.git_diff_sha:
            out["last_good_uncommitted"] = diff_files(kept_diff(store, good))
    if dirty:  # uncommitted files count as changed too, in their own area groups
        for name, paths in group_by_area(dirty, areas).items():
            bucket = out["files"].setdefault(name, [])
            bucket += [p for p in paths if p not in bucket]
    if (good is None or record.git_root is None) and not data:
        return None  # nothing to compare with (or no repository to look in), nothing pointing at the inputs
    out["headline"] = _headline(out, record, good, rel)
    return _without_none(out)  # the record is TOML, which has no null


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def _headline(out: dict, record: RunRecord, good: RunRecord | None, rel: str | None) -> str:
    frame = out["failing_frame"]
    changed = {p for paths in out["files"].values() for p in paths}
    if frame and rel and rel in changed:
        touching = commits_between(record.git_root, good.git_commit, record.git_commit, rel) \
            if good is not None and good.git_commit and record.git_commit and good.git_root == record.git_root \
            and good.git_commit != record.git_commit else []
        how = []
        if touching:
            who = sorted({c["author"] for c in touching})
            how.append(f"changed in {len(touching)} commit{'s' if len(touching) > 1 else ''} since the last good run"
                       f" ({', '.join(c['commit'] for c in touching[:3])} by {', '.join(who)})")
        if rel in (out.get("uncommitted") or {}).get("files", []):
            how.append("with uncommitted changes at launch")
        return f"the error is raised in {rel}:{frame['line']}, " + " and ".join(how or ["changed since the last good run"])
    if out["data_loading"]:
        return "data loading: " + out["data_loading"][0]["summary"]
    if good is None:
        return f"{out['reason']}; no earlier good run of '{record.recipe}' to compare with"
    bits = []
    if out["commits"]:
        areas = ", ".join(f"{name} ({len(paths)})" for name, paths in out["files"].items())
        bits.append(f"{len(out['commits'])} commit(s) since the last good run {good.id}" + (f": {areas}" if areas else ""))
    elif out["uncommitted"]:
        bits.append("uncommitted changes at launch: " + ", ".join(out["uncommitted"]["files"][:3]))
    if out["params"]:
        bits.append("parameters changed: " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in list(out["params"].items())[:4]))
    if not bits:
        return f"{out['reason']}; no code or parameter change since the last good run {good.id}: look at the data or the environment"
    return f"{out['reason']}; " + "; ".join(bits)
