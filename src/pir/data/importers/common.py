"""What every annotation reader shares: the raw record an annotation file lists (``RawImage``), the one
error an import raises (``ImportProblems``), and the checks of one annotation row.

A malformed annotation row (not an object, a field missing, null or of the wrong type, an image path
that is absolute or leaves the dataset folder) is one problem naming the file, the row (0-based index
in JSON and parquet, 1-based line in text files) and the field; all rows are checked before any image is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_MAX_LISTED_PROBLEMS = 3


@dataclass
class RawImage:
    """One image as an annotation file lists it, before validation and decoding."""
    file: str                      # image id: the file's base name ("bridge_942.tif")
    split: str
    captions: list[str]
    source: str                    # annotation file it came from (for messages)
    path_hint: str = ""            # path as written in the annotation ("train/bridge_942.tif")
    label_name: str | None = None  # class given by the annotation, if any
    image_bytes: bytes | None = None  # encoded image embedded in the annotation (parquet)
    hint_at: str = ""              # where path_hint was written ("rsitmd_train.json: row 3: image")


class ImportProblems(ValueError):
    """All problems found while importing; str() is one line, .problems the full list."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = f" (and {len(problems) - _MAX_LISTED_PROBLEMS} more)" if len(problems) > _MAX_LISTED_PROBLEMS else ""
        hint = ("; data.drop_empty_captions: true drops empty captions instead"
                if any(p.endswith("is empty") for p in problems) else "")
        super().__init__(f"{len(problems)} problem(s) in the dataset: {shown}{more}{hint}")


# --------------------------------------------------------------------------- annotation rows

class BadRow(Exception):
    """One malformed field of one annotation row; str() names the field and what is wrong with it."""


def describe(value) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 30 else text[:27] + '...'}"


def as_object(row) -> dict:
    if not isinstance(row, dict):
        raise BadRow(f"row is {describe(row)}, expected an object")
    return row


def required(row: dict, name: str):
    if name not in row:
        raise BadRow(f"{name} is missing")
    return row[name]


def as_string(value, name: str) -> str:
    if not isinstance(value, str):
        raise BadRow(f"{name} is {describe(value)}, expected a string")
    return value


def as_strings(value, name: str) -> list[str]:
    """A list of strings; the first item of another type is the problem (``[1, 2]`` is not 'empty')."""
    if not isinstance(value, list):
        raise BadRow(f"{name} is {describe(value)}, expected a list of strings")
    for number, item in enumerate(value):
        as_string(item, f"{name}[{number}]")
    return value


def inside_path(value, name: str) -> str:
    """A relative path that stays in the dataset folder (checked by its text; links are checked when located)."""
    path = as_string(value, name)
    if not path.strip():
        raise BadRow(f"{name} is an empty string")
    if os.path.isabs(path) or os.path.normpath(path).split(os.sep)[0] == "..":
        raise BadRow(f"{name} {path!r} is outside the dataset folder")
    return path


def parse_rows(rows: list, source: str, parse: Callable, problems: list[str], unit: str = "row",
               start: int = 0) -> list[tuple[int, object]]:
    """(number, parse(row)) of the well-formed rows; each malformed one adds a problem naming file, row and field."""
    parsed = []
    for number, row in enumerate(rows, start):
        try:
            parsed.append((number, parse(row)))
        except BadRow as exc:
            problems.append(f"{source}: {unit} {number}: {exc}")
    return parsed


def load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None


def bad_format(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: unexpected format ({what})")


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
