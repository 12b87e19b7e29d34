"""Secrets out of everything urbanrun writes (run.toml, session recordings, the scratchpad, job
scripts). A value is a secret by its name (WANDB_API_KEY, --token) or by its shape: credentials in
a URL, a known token prefix (sk-, ghp_, github_pat_, hf_, xoxb-, AKIA…), an AWS secret key, or —
for env and argv values — a long random-looking word. Redacting redacted text changes nothing.

The run itself still gets the real values; only what is written down is masked.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

MASK = "***"
# names of env variables, argv flags and parameters that hold secrets (TOKENIZERS_PARALLELISM and
# max_tokens do not; a trailing _KEY does: OPENAI_KEY, WANDB_KEY)
SECRET_NAME_RE = re.compile(
    r"TOKEN(?!IZ|S(?:$|[_-]))|SECRET|PASSW|PASSPHRASE|API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY|CREDENTIAL"
    r"|(?:^|[_-])KEY$", re.I)
# credentials in a URL: scheme://user:PASSWORD@host
_URL_CRED = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)([^\s@/]+)(@)")
# well-known token prefixes; the prefix is kept so a reader still sees what kind of key it was
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(sk-(?:proj-|live-|test-|ant-)?|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|hf_|xox[abposr]-|glpat-"
    r"|npm_)([A-Za-z0-9_-]{16,})")  # the body must mix cases/digits: hf_cache_dir is a path
_TOKEN_PREFIXES = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "hf_", "xox", "glpat-", "npm_")
_AWS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
# NAME=value / --name=value / name: value inside free text, where the name says it is a secret
_NAME_WORDS = ("token", "secret", "passw", "passphrase", "key", "credential")
_ASSIGNED = re.compile(r"((?:TOKEN(?!IZ|S\b|S[_-])|SECRET|PASSW|PASSPHRASE|API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY"
                       r"|CREDENTIAL)[A-Za-z0-9_.-]{0,40}[ \t]*[=:][ \t]*)([\"']?)([^\s\"',;]+)", re.I)
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
_WORD = re.compile(r"[A-Za-z0-9+/_.=-]+")


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME_RE.search(name.lstrip("-")))


def text(value: str) -> str:
    """Free text (a log line, a message, a command line): mask secrets recognisable by shape."""
    if not value or not isinstance(value, str) or not _suspicious(value):
        return value
    if "://" in value:
        value = _URL_CRED.sub(lambda m: m.group(1) + MASK + m.group(3), value)
    value = _TOKEN.sub(lambda m: m.group(1) + MASK if _mixed(m.group(2)) >= 2 else m.group(0), value)
    value = _AWS_KEY_ID.sub(lambda m: m.group(1) + MASK, value)
    return _ASSIGNED.sub(lambda m: m.group(1) + m.group(2) + (m.group(3) if m.group(3).startswith(MASK) else MASK),
                         value)


def _suspicious(value: str) -> bool:
    """Substring checks that every shape above needs: most text (log output) has none of them, and
    they cost a fraction of the regexes. Also used on a batch of lines joined, to skip it whole."""
    if "://" in value or "AKIA" in value or "ASIA" in value or any(p in value for p in _TOKEN_PREFIXES):
        return True
    lower = value.lower()
    return any(word in lower for word in _NAME_WORDS)


def value(v: str) -> str:
    """An env or argv value: shapes as in free text, and a whole value that looks random is masked."""
    if not isinstance(v, str):
        return v
    shaped = text(v)
    return MASK if shaped == v and looks_random(v) else shaped


def looks_random(v: str) -> bool:
    """A key-like word: no spaces, not a path or a flag, and random-looking — hex of >= 32 digits, an
    AWS secret key, or letters and digits whose case and kind keep switching (random base64 switches
    at about 0.6 of neighbours). Human names are words and numbers joined by separators
    (res9_cones_lr3e-3, ViT-B-16-laion2b_s34b, UrbanRepML_H3_res9): few switches, or short pieces."""
    if len(v) < 16 or v[0] in "/.~-" or not _WORD.fullmatch(v) or MASK in v:
        return False
    if re.fullmatch(r"[0-9a-fA-F]+", v):
        return len(v) >= 32 and _entropy(v) >= 3.0 and any(c.isalpha() for c in v)
    if _AWS_SECRET.fullmatch(v) and any(c.isupper() for c in v) and any(c.islower() for c in v) \
            and any(not c.isalpha() for c in v):
        return _entropy(v) >= 4.0
    if "/" in v:
        return False
    if _entropy(v) < 3.5 or _mixed(v) < 2:
        return False
    longest = max(re.split(r"[-_.=]+", v), key=len)
    if len(longest) >= 12 and _class_switches(longest) >= 0.3:
        return True
    return len(v) >= 20 and len(re.findall(r"[-_.=]", v)) <= 2 and _class_switches(v) >= 0.5


def _mixed(v: str) -> int:
    """How many of upper case, lower case and (at least three) digits a word mixes."""
    return sum((any(c.isupper() for c in v), any(c.islower() for c in v), sum(c.isdigit() for c in v) >= 3))


def _class_switches(v: str) -> float:
    """How often neighbouring letters/digits change class (upper, lower, digit): about 0.6 in random
    base64, under 0.35 in names made of words and numbers."""
    kind = [c.isupper() * 1 + c.islower() * 2 + c.isdigit() * 3 for c in v]
    pairs = [(a, b) for a, b in zip(kind, kind[1:]) if a and b]
    return sum(a != b for a, b in pairs) / len(pairs) if pairs else 0.0


def _entropy(v: str) -> float:
    n = len(v)
    return -sum(c / n * math.log2(c / n) for c in Counter(v).values())


def env(variables: dict[str, str]) -> dict[str, str]:
    """Env overrides as written down: secret names masked whole, other values by shape."""
    return {k: (MASK if is_secret_name(k) else value(v)) for k, v in variables.items()}


def secret_argv_indices(argv: list[str]) -> set[int]:
    """Which argv items hold a secret: the value after `--token`/`--api-key`/`--password`/`--secret`…,
    `--token=X` items, and items (or the X of `--flag=X`) whose value has a secret's shape."""
    found = set()
    for i, item in enumerate(argv):
        flag, eq, rest = item.partition("=")
        if item.startswith("-") and is_secret_name(flag):
            if eq:
                found.add(i)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                found.add(i + 1)
        elif i > 0 and (value(item) != item or (item.startswith("-") and eq and value(rest) != rest)):
            found.add(i)  # argv[0] is the program
    return found


def argv(items: list[str]) -> list[str]:
    """A command line as written down: secret items masked (`--token=***`, `--api-key ***`,
    `postgres://u:***@h`, `--remote=ghp_***`)."""
    out = list(items)
    for i in secret_argv_indices(items):
        flag, eq, rest = items[i].partition("=")
        if items[i].startswith("-") and eq:
            out[i] = f"{flag}={MASK if is_secret_name(flag) else _masked(rest)}"
        else:
            out[i] = _masked(items[i])
    return out


def _masked(v: str) -> str:
    """What a shape mask keeps (the URL, the token's prefix), or the mask alone."""
    shaped = value(v)
    return shaped if shaped != v else MASK


def secrets_in(argv_items: list[str], variables: dict[str, str]) -> frozenset[str]:
    """The real values that redaction masks in a launch's argv and env: masked wherever else they
    appear (the run's parameters, a path built from a token)."""
    found = {v for k, v in variables.items() if is_secret_name(k) or value(v) != v}
    for i in secret_argv_indices(argv_items):
        item = argv_items[i]
        found.add(item)
        if item.startswith("-") and "=" in item:
            found.add(item.partition("=")[2])
    return frozenset(v for v in found if v and MASK not in v)


def data(obj: Any, known: frozenset[str] = frozenset()) -> Any:
    """A record or an event's fields: keys named like secrets masked, every string by shape, and
    any of the `known` secret values (found in this run's env/argv) wherever it appears."""
    if isinstance(obj, dict):
        return {k: (MASK if isinstance(v, str) and v and isinstance(k, str) and is_secret_name(k) else data(v, known))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(v, str) for v in obj) and not known and not _suspicious("\n".join(obj)):
            return obj  # a batch of log lines without a single candidate: checked once, not line by line
        return type(obj)(data(v, known) for v in obj)
    if isinstance(obj, str):
        for secret in known:
            if len(secret) >= 6 and secret in obj:
                obj = obj.replace(secret, MASK)
        return text(obj)
    return obj
