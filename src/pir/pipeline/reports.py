"""Report building shared by the stages: CSV text, strict JSON, and nested reports flattened.

The stages write what people read (reports/*.json, *.csv) and log the same numbers to MLflow;
these helpers are the one way each of those conversions is done.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Iterable, Mapping, Sequence


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header line and one line per row, "\\n"-terminated on every platform (DVC diffs the files)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def json_safe(value: Any) -> Any:
    """NaN and infinities (e.g. a silhouette with fewer than two classes) -> null: strict JSON for DVC."""
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def flatten(tree: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested mappings -> {"a.b": leaf}; lists and other values are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}{sep}", sep))
        else:
            flat[name] = value
    return flat


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def finite_numbers(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a nested report as MLflow metrics: {"prefix_a_b": value}."""
    return {k: float(v) for k, v in flatten(tree, prefix, sep="_").items() if is_finite_number(v)}
