"""Typed recipe parameters: parse text from a form or `--set`, check bounds, render as argv flags."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

TYPES = ("int", "float", "bool", "choice", "string", "list")
ITEM_TYPES = ("int", "float", "string")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n"}
INT_MIN, INT_MAX = -2 ** 63, 2 ** 63 - 1  # TOML's integers (the record and config.toml are TOML)


class ParamError(ValueError):
    """A value that does not fit its parameter; the message says what is expected."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    flag: str
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    item_type: str = "string"  # for lists
    separator: str = ","  # for lists: "64,128,256"; " " means one argv item per element
    flag_false: str | None = None  # for bools: e.g. "--no-amp" when False
    positional: bool = False  # rendered as the bare value, in parameter order
    extra: dict = field(default_factory=dict, compare=False)

    # -- parsing -----------------------------------------------------------------------------
    def parse(self, text: Any) -> Any:
        """Turn form/CLI text (or an already-typed TOML value) into a checked value."""
        if text is None or (isinstance(text, str) and text.strip() == "" and self.type != "string"):
            if self.positional and self.default is not None:  # left out, the values after it would move up
                raise ParamError(f"is positional, so it needs a value (its default is "
                                 f"{' '.join(self.format(self.default))}: leave the parameter out to use it)")
            return None
        if self.type == "list":
            items = text if isinstance(text, list) else [t for t in re.split(r"[,\s]+", str(text).strip()) if t]
            value = [self._scalar(self.item_type, item) for item in items]
        elif self.type == "choice":
            value = str(text).strip() if not isinstance(text, (int, float)) else text
            if value not in self.choices and str(value) not in [str(c) for c in self.choices]:
                raise ParamError(f"must be one of {', '.join(map(str, self.choices))}, not {text!r}")
            value = next(c for c in self.choices if str(c) == str(value))
        else:
            value = self._scalar(self.type, text)
        self._check_bounds(value)
        return value

    def _scalar(self, kind: str, text: Any) -> Any:
        if kind == "bool":
            if isinstance(text, bool):
                return text
            low = str(text).strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ParamError(f"must be true or false, not {text!r}")
        if kind == "int":
            if isinstance(text, bool):
                raise ParamError(f"must be a whole number, not {text!r}")
            try:
                value = text if isinstance(text, int) else int(str(text).strip())
            except ValueError:
                raise ParamError(f"must be a whole number, not {text!r}") from None
            if not INT_MIN <= value <= INT_MAX:
                raise ParamError(f"must be a whole number between {INT_MIN} and {INT_MAX}, not {text!r}")
            return value
        if kind == "float":
            if isinstance(text, bool):
                raise ParamError(f"must be a number, not {text!r}")
            try:
                value = float(str(text).strip()) if not isinstance(text, (int, float)) else float(text)
            except ValueError:
                raise ParamError(f"must be a number such as 0.001 or 1e-3, not {text!r}") from None
            if not math.isfinite(value):
                raise ParamError(f"must be a finite number, not {text!r}")
            return value
        return str(text)

    def _check_bounds(self, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if self.min is not None and v < self.min:
                raise ParamError(f"must be at least {_num(self.min)}, not {_num(v)}")
            if self.max is not None and v > self.max:
                raise ParamError(f"must be at most {_num(self.max)}, not {_num(v)}")
        if self.type == "list" and not values:
            raise ParamError("must have at least one item")

    # -- rendering ---------------------------------------------------------------------------
    def to_argv(self, value: Any) -> list[str]:
        """The flags for this value; [] when the value is unset (or False without flag_false)."""
        if value is None:
            return []
        if self.positional:
            return self.format(value)
        if self.type == "bool":
            if value:
                return [self.flag]
            return [self.flag_false] if self.flag_false else []
        return [self.flag, *self.format(value)]

    def format(self, value: Any) -> list[str]:
        """The value as argv item(s), also used to show a value in a form field."""
        if self.type == "list":
            items = [_num(v) if isinstance(v, (int, float)) else str(v) for v in value]
            return items if self.separator == " " else [self.separator.join(items)]
        if isinstance(value, bool):
            return ["true" if value else "false"]
        if isinstance(value, (int, float)):
            return [_num(value)]
        return [str(value)]

    def describe(self) -> str:
        """Type and bounds in a few words, for help texts and form hints."""
        bits = [self.type if self.type != "list" else f"list of {self.item_type}"]
        if self.type == "choice":
            bits = ["one of " + " | ".join(map(str, self.choices))]
        if self.min is not None:
            bits.append(f">= {_num(self.min)}")
        if self.max is not None:
            bits.append(f"<= {_num(self.max)}")
        return ", ".join(bits)


def _num(v: float) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15 and "e" not in repr(v)):
        return str(int(v)) if isinstance(v, int) else repr(v)
    return repr(v)


def param_from_table(name: str, table: dict) -> Param:
    """Build a Param from its TOML table; raises ParamError naming the bad key."""
    if not NAME_RE.match(name):
        raise ParamError(f"parameter name {name!r} must be snake_case (lower-case letters, digits, _)")
    kind = table.get("type")
    if kind not in TYPES:
        raise ParamError(f"'type' must be one of {', '.join(TYPES)}, not {kind!r}")
    positional = bool(table.get("positional", False))
    if positional and kind == "bool":
        raise ParamError("a bool parameter cannot be positional; give it a 'flag'")
    flag = table.get("flag", "" if positional else "--" + name.replace("_", "-"))
    if not positional and (not isinstance(flag, str) or not flag.startswith("-")):
        raise ParamError(f"'flag' must be a string starting with '-', such as \"--{name.replace('_', '-')}\"")
    choices = table.get("choices", [])
    if kind == "choice" and (not isinstance(choices, list) or not choices):
        raise ParamError("a 'choice' parameter needs a non-empty 'choices' list")
    item_type = table.get("item_type", "string")
    if item_type not in ITEM_TYPES:
        raise ParamError(f"'item_type' must be one of {', '.join(ITEM_TYPES)}, not {item_type!r}")
    for bound in ("min", "max"):
        if bound in table and (not isinstance(table[bound], (int, float)) or isinstance(table[bound], bool)):
            raise ParamError(f"'{bound}' must be a number")
    known = {"type", "flag", "default", "help", "min", "max", "choices", "item_type", "separator", "flag_false",
             "positional"}
    param = Param(
        name=name,
        type=kind,
        flag=flag,
        help=str(table.get("help", "")),
        min=table.get("min"),
        max=table.get("max"),
        choices=tuple(choices),
        item_type=item_type,
        separator=str(table.get("separator", ",")),
        flag_false=table.get("flag_false"),
        positional=positional,
        extra={k: v for k, v in table.items() if k not in known},
    )
    if "default" in table:
        try:
            default = param.parse(table["default"])
        except ParamError as exc:
            raise ParamError(f"'default' {exc}") from None
        param = replace(param, default=default)
    return param
