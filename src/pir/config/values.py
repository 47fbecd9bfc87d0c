"""Reading and checking param values: a mapping into a typed, frozen config, and back.

``from_mapping`` turns a section of params (YAML as DVC writes it) into one of the dataclasses of
this package, every value coerced to the field's type and range-checked, and any problem one
ValueError that names the key, the value and what is allowed. ``to_dict`` is the way back.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import fields
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

# Every integer param reaches torch or NumPy as a 64-bit integer: larger ones end in one line, not in
# an OverflowError deep inside them. Sizes that are memory have lower, raisable ceilings (RuntimeConfig).
MAX_INT = 2 ** 63 - 1
OUT_OF_RANGE = "outside the integers a param can hold (at most 2**63 - 1 in size)"


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping: unknown keys, wrong types and out-of-range values
    end in one ValueError that names the key, the value and what is allowed.

    ``None`` values are dropped, so that a mapping can leave a field at its (recipe or preset)
    default with ``key: null``. Values are coerced to the field's type in the forms
    that YAML and DVC write: ``dvc exp run -S train.lr=6e-5`` stores ``lr: 6e-05``, which
    PyYAML reads as a string, so numeric strings are numbers here. Booleans are strict:
    a quoted ``"flase"`` is an error, not a truthy string. Lists become tuples for
    hashable, frozen configs. Range checks live in each class's ``__post_init__``.
    """
    where = where or cls.__name__
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    clean = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items() if v is not None}
    try:
        return cls(**clean)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` as type ``kind`` (bool, int, float, str, tuple[...]) or a one-line ValueError naming ``key``."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(kind), key)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{key} = {value!r}: expected true or false")
    if kind in (int, float):
        return _coerce_number(value, kind, key)
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{key} = {value!r}: expected a string")
    return value


def shown(value: Any) -> str:
    """``repr(value)`` for an error line, a number too long to read cut to its first digits and length."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        if value.bit_length() > 14000:           # str() refuses integers beyond 4300 digits
            return f"<an integer of {value.bit_length()} bits>"
        text = str(value)
        return f"{text[:12]}... ({len(text.lstrip('-'))} digits)"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _coerce_number(value: Any, kind: type, key: str) -> int | float:
    # Integers are parsed as integers, never through float(): 2**53 + 1 stays itself (docs/recipes-and-data.md,
    # "How a run's values are resolved").
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{key} = {shown(value)}: expected {what}")
    if kind is int:
        return _coerce_int(value, key)
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or "_" in text:    # float() would read "1_0" and non-ASCII digits
            raise ValueError(f"{key} = {shown(value)}: expected a number")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{key} = {shown(value)}: expected a number") from None
    elif isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"{key} = {shown(value)}: too large for a number (at most about 1.8e308)") from None
    else:
        number = value
    if not math.isfinite(number):
        raise ValueError(f"{key} = {shown(value)}: expected a finite number")
    return number


def _coerce_int(value: int | float | str, key: str) -> int:
    """An exact integer: an int, a float with no fraction (YAML's ``2.0``) or a string of digits (DVC's
    ``'3'``; ``"1e3"`` and ``"2.0"`` are refused as strings); at most ``MAX_INT`` either way."""
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ValueError(f"{key} = {shown(value)}: expected an integer")
        if len(text.lstrip("+-").lstrip("0")) > len(str(MAX_INT)):   # before int(): no 4300-digit parse
            raise ValueError(f"{key} = {shown(value)}: {OUT_OF_RANGE}")
        number = int(text)
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"{key} = {shown(value)}: expected an integer")
        number = int(value)
    else:
        number = value
    if not -MAX_INT <= number <= MAX_INT:
        raise ValueError(f"{key} = {shown(value)}: {OUT_OF_RANGE}")
    return number


def _coerce_tuple(value: Any, args: tuple, key: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key} = {value!r}: expected a list")
    if len(args) == 2 and args[1] is Ellipsis:
        kinds = [args[0]] * len(value)
    else:
        if len(value) != len(args):
            raise ValueError(f"{key} = {list(value)!r}: expected a list of {len(args)} values")
        kinds = list(args)
    return tuple(coerce(v, k, f"{key}[{i}]") for i, (v, k) in enumerate(zip(value, kinds)))


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    """Range/choice check for ``__post_init__``: one line naming the key, the value and what is allowed."""
    if not condition:
        raise ValueError(f"{key} = {value!r}: {allowed}")


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    check(value in choices, key, value, f"choose from {', '.join(choices)}")


def recipe(default: Any) -> Any:
    """A field a recipe sets (``src/pir/recipes/*.yaml``), defaulting to the ``cpu`` recipe's value.

    One home per default: the recipe files hold these values, with their sources; the default here
    only mirrors the default run's recipe, so that a config built directly (``TrainConfig()``, in tests
    and tools) is what ``dvc repro`` runs with. tests/test_recipe_defaults.py proves that the marked
    fields are exactly the fields the recipes set, that every recipe sets all of them, and that each
    default equals cpu.yaml's value."""
    return dataclasses.field(default=default, metadata={"recipe": True})


def recipe_fields(cls: type) -> list[str]:
    """The fields of config class ``cls`` that the recipes set (marked with ``recipe``)."""
    return [f.name for f in fields(cls) if f.metadata.get("recipe")]


def to_dict(config: Any, permissions: bool = False) -> dict[str, Any]:
    """Plain-dict view of a config (tuples as lists) for checkpoints, JSON and MLflow.

    Fields marked ``permission`` (``model.allow_torchscript``) say what a run may load, not what it
    computes: they stay out of checkpoints, run keys and MLflow params (so those hash as they did
    before the field existed) unless ``permissions`` asks for them (the resolved params YAML)."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    skipped = set() if permissions else {f.name for f in fields(config) if f.metadata.get("permission")}
    return {k: plain(v) for k, v in dataclasses.asdict(config).items() if k not in skipped}
