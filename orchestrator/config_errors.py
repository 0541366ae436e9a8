"""What a config error says: ConfigError, a short description of any value, pydantic's errors told
in the config's terms (`pruning[1].rate`, no pydantic internals), and the checks of values pydantic
would take but that mean nothing (non-finite numbers, booleans where a number is meant)."""
from __future__ import annotations

import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError


class ConfigError(Exception):
    """A config the user must fix; its message names the file and the field."""


def shown(value) -> str:
    """A short description of a value for a message: never a huge (or alias-bombed) repr."""
    return f"{type(value).__name__} {short_repr.repr(value)}"


short_repr = reprlib.Repr()
short_repr.maxstring = short_repr.maxother = 60
short_repr.maxlist = short_repr.maxdict = short_repr.maxtuple = 4
short_repr.maxlevel = 2


# ---- validation messages ---------------------------------------------------------------------

# pydantic's own steps in an error's location: validator wrappers, union members, type tags
_INTERNAL_LOC = re.compile(r"[\[\]]|^function-|^(str|int|float|bool|none|list|dict|tuple|set|literal)$")
_INTERNAL_TEXT = re.compile(r"\s*function-(after|before|wrap|plain)\[[^\]]*\]")


def error_items(error: ValidationError) -> list[tuple[str, str]]:
    """(location, message) of each error, in the config's terms: `pruning[1].rate`, no pydantic internals."""
    items = []
    for item in error.errors():
        loc = ""
        for part in item["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif not _INTERNAL_LOC.search(str(part)):
                loc += f".{part}" if loc else str(part)
        message = _INTERNAL_TEXT.sub("", item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        items.append((loc, message))
    return list(dict.fromkeys(items))


def format_errors(error: ValidationError, prefix: str = "") -> list[str]:
    return [f"{prefix}{loc}: {msg}" if loc else f"{prefix}{msg}" for loc, msg in error_items(error)]


@dataclass
class Problems:
    """Problems by section entry, so an error common to every entry of a list section (e.g. from
    `--set pruning.rate=...`) is told once, as `pruning.rate: ... (all 6 entries)`."""

    entries: dict[str, int]  # list section -> its number of entries
    found: dict[tuple[str, str], list] = field(default_factory=dict)

    def add(self, section: str, index: int | None, tail: str) -> None:
        """`tail` follows the section's name: ".rate: must be ..." or ": expected ..."."""
        indices = self.found.setdefault((section, tail), [])
        if index not in indices:
            indices.append(index)

    def lines(self) -> list[str]:
        lines = []
        for (section, tail), indices in self.found.items():
            count = self.entries.get(section, 0)
            if count > 1 and sorted(i for i in indices if i is not None) == list(range(count)):
                lines.append(f"{section}{tail} (all {count} entries)")
            else:
                lines += [f"{section}{tail}" if i is None else f"{section}[{i}]{tail}" for i in indices]
        return lines

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError("\n".join(self.lines()))


# ---- values pydantic would take but that mean nothing ----------------------------------------


def _members(annotation) -> tuple:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    return (annotation,)


def _admits_bool(annotation) -> bool:
    for member in _members(annotation):
        if member in (bool, Any, object):
            return True
        if typing.get_origin(member) is Literal and any(isinstance(a, bool) for a in typing.get_args(member)):
            return True
    return False


def _model_of(annotation) -> type[BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _item_of(annotation):
    for member in _members(annotation):
        if typing.get_origin(member) in (list, tuple, set, frozenset) and typing.get_args(member):
            return typing.get_args(member)[0]
    return None


def _expected(annotation) -> str:
    names = {int: "an integer", float: "a number", str: "a string"}
    parts = []
    for member in _members(annotation):
        if member is type(None):
            continue
        if typing.get_origin(member) is Literal:
            parts.append("one of " + ", ".join(repr(a) for a in typing.get_args(member)))
        elif typing.get_origin(member) in (list, tuple) or member in (list, tuple):
            parts.append("a list")
        elif member in (dict,) or _model_of(member):
            parts.append("a mapping of fields")
        else:
            parts.append(names.get(member, f"a {getattr(member, '__name__', member)}"))
    return " or ".join(parts) or "a value"


def questionable(value, annotation, loc: str) -> list[str]:
    """Problems in a raw value that validation would let through: a non-finite number anywhere,
    and a boolean (YAML's true/false/yes/no/on/off) where the field is not a yes/no one, which
    pydantic would read as 1 or 0. `annotation` is the field's type where known (else None)."""
    if isinstance(value, bool):
        if annotation is None or _admits_bool(annotation):
            return []
        return [
            f"{loc}: {str(value).lower()} is a yes/no value (YAML reads true, false, yes, no, on and off as one), "
            f"where {_expected(annotation)} is expected"
        ]
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{loc}: {value} is not a finite number"]
    problems = []
    if isinstance(value, dict):
        model = _model_of(annotation) if annotation is not None else None
        for key, item in value.items():
            known = model.model_fields.get(key) if model is not None and isinstance(key, str) else None
            problems += questionable(item, known.annotation if known else None, f"{loc}.{key}" if loc else str(key))
    elif isinstance(value, (list, tuple)):
        item_annotation = _item_of(annotation) if annotation is not None else None
        for index, item in enumerate(value):
            problems += questionable(item, item_annotation, f"{loc}[{index}]")
    return problems


def non_finite(value, loc: str) -> list[str]:
    """Non-finite floats in validated values (a string such as "inf" becomes one in a float field)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{loc}: {value} is not a finite number"]
    if isinstance(value, BaseModel):
        return [line for name in type(value).model_fields for line in non_finite(getattr(value, name), f"{loc}.{name}")]
    if isinstance(value, (list, tuple)):
        return [line for index, item in enumerate(value) for line in non_finite(item, f"{loc}[{index}]")]
    return []
