"""Typed validation of the files a user writes (training YAML, lisa_config.json), with pydantic.

``parse(cls, data, source)`` turns a mapping into the dataclass ``cls`` or raises one LisaError
line naming the file, the key, the expected type and the allowed range, e.g.
``configs/x.yaml: optim.warmup_steps must be an integer >= 0, got -5``.

The field types below are deliberately strict where a loose reading would be silently wrong:
``"no"`` is not a boolean (YAML reads an unquoted ``no`` as false, a quoted one is a string),
``"abc"`` is not an id. Numbers are the one exception: YAML 1.1 reads ``3e-3`` (no dot) as a
string, so a string that spells a finite number is taken as that number.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError, create_model

from lisa.errors import LisaError

T = TypeVar("T")

# Every config dataclass: an unknown key is an error, never dropped.
STRICT_KEYS = ConfigDict(extra="forbid")


def _number(value: Any) -> Any:
    if isinstance(value, bool):  # true is not 1.0
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1: "3e-3" is a string
        except ValueError:
            return value  # let the float validator name it
    return value


def _integer(value: Any) -> Any:
    value = _number(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1e4, 5000.0
    return value


Number = Annotated[float, BeforeValidator(_number), AllowInfNan(False)]
Integer = Annotated[int, BeforeValidator(_integer), Strict()]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]

PositiveInt = Annotated[Integer, annotated_types.Ge(1)]
NonNegativeInt = Annotated[Integer, annotated_types.Ge(0)]
PositiveNumber = Annotated[Number, annotated_types.Gt(0)]
NonNegativeNumber = Annotated[Number, annotated_types.Ge(0)]
Fraction = Annotated[Number, annotated_types.Ge(0), annotated_types.Lt(1)]  # [0, 1)


def parse(cls: type[T], data: Any, source: str | Path, prefix: str = "") -> T:
    """``data`` validated into ``cls``; ``prefix`` is where ``data`` sits in the file (``model.build``)."""
    try:
        return _root(cls).model_validate({"value": data}).value
    except ValidationError as error:
        raise LisaError(describe_error(error, cls, str(source), prefix)) from None


@functools.cache
def _root(cls: type) -> type[BaseModel]:
    """A model with one field of type ``cls``: its config (unknown keys forbidden) then holds for
    plain dataclasses too, nested ones included (validated alone, they drop unknown keys)."""
    return create_model(f"{cls.__name__}File", value=(cls, ...), __config__=STRICT_KEYS)


def describe_error(error: ValidationError, cls: type, source: str, prefix: str = "") -> str:
    """One line for the first problem (and how many more there are)."""
    problems = error.errors()
    first = problems[0]
    loc = tuple(first["loc"])[1:]  # without the root's "value"
    key = ".".join([prefix] * bool(prefix) + [_loc_part(p) for p in loc]).replace(".[", "[")
    kind, value = first["type"], first.get("input")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = ", ".join(sorted(_fields(_type_at(cls, loc[:-1]))))
        line = f"unknown config key {key} (known: {known})"
    elif kind in ("missing", "missing_argument"):
        line = f"{key} is missing: give {_expected(cls, loc)}"
    elif not loc or kind in ("dataclass_type", "dataclass_args_type", "dict_type", "model_type") and not _is_leaf(cls, loc):
        line = f"{key or 'the top level'} must be a mapping of keys, got {_shown(value)}"
    else:
        expected = _expected(cls, loc)
        line = f"{key} must be {expected}, got {_shown(value)}" if expected else f"{key}: {first['msg']}"
    more = f" (and {len(problems) - 1} more problem{'s' * (len(problems) > 2)})" if len(problems) > 1 else ""
    return f"{source}: {line}{more}"


def _loc_part(part: Any) -> str:
    return f"[{part}]" if isinstance(part, int) else str(part)


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) or not value else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


# ---- the schema, read back for messages ----------------------------------------------------
def _split(hint: Any) -> tuple[Any, list[Any], bool]:
    """(base type, constraints, optional) of a field type: Optional and Annotated unwrapped."""
    metadata: list[Any] = []
    optional = False
    while True:
        origin = typing.get_origin(hint)
        if origin is Annotated:
            hint, *extra = typing.get_args(hint)
            metadata += extra
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(hint))
            if len(args) != 1:
                return hint, metadata, optional
            hint = args[0]
        else:
            return hint, metadata, optional


def _field_hints(cls: type) -> dict[str, Any]:
    pydantic_fields = getattr(cls, "__pydantic_fields__", None)
    if pydantic_fields is not None:
        return {name: Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
                for name, f in pydantic_fields.items()}
    return typing.get_type_hints(cls, include_extras=True) if dataclasses.is_dataclass(cls) else {}


def _fields(cls: Any) -> list[str]:
    return list(_field_hints(cls)) if isinstance(cls, type) else []


def _hint_at(cls: Any, loc: tuple) -> Any:
    """The declared type of the value at ``loc`` (field names and list indices)."""
    hint = cls
    for part in loc:
        base = _split(hint)[0]
        if isinstance(part, int):
            args = typing.get_args(base)
            hint = args[0] if args else Any
        else:
            hint = _field_hints(base).get(part, Any) if isinstance(base, type) else Any
    return hint


def _type_at(cls: Any, loc: tuple) -> Any:
    return _split(_hint_at(cls, loc))[0]


def _is_leaf(cls: type, loc: tuple) -> bool:
    return not dataclasses.is_dataclass(_type_at(cls, loc))


def _expected(cls: type, loc: tuple) -> str:
    return _describe(_hint_at(cls, loc))


def _describe(hint: Any) -> str:
    base, metadata, optional = _split(hint)
    origin = typing.get_origin(base)
    if base is bool:
        text = "true or false"
    elif base is int:
        text = "an integer"
    elif base is float:
        text = "a number"
    elif base is str:
        text = "a string"
    elif origin is Literal:
        text = "one of " + ", ".join(repr(a) for a in typing.get_args(base))
    elif origin is list:
        inner = typing.get_args(base)
        text = "a list" + (f" of {_plural(_describe(inner[0]))}" if inner else "")
    elif origin is dict or base is dict or dataclasses.is_dataclass(base):
        text = "a mapping of keys"
    else:
        text = ""
    bounds = {name: getattr(item, name) for item in metadata for name in ("ge", "gt", "le", "lt")
              if getattr(item, name, None) is not None}
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = (bounds["le"], "]") if "le" in bounds else (bounds["lt"], ")") if "lt" in bounds else None
    if low and high:
        text += f" in {low[0]}{low[1]}, {high[0]}{high[1]}"
    elif low:
        text += f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    elif high:
        text += f" {'<=' if high[1] == ']' else '<'} {high[0]}"
    lengths = [(getattr(i, "min_length", None), getattr(i, "max_length", None)) for i in metadata]
    for shortest, longest in lengths:
        if shortest is not None and shortest == longest:
            text += f" of length {shortest}"
        elif shortest:
            text += f" with at least {shortest} item{'s' * (shortest > 1)}"
    if optional and text:
        text += " (or null)"
    return text


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            noun, _, rest = text[len(article):].partition(" ")
            return f"{noun}s" + (f" {rest}" if rest else "")
    return text
