"""The test numbers that sit next to published ones, labelled by how their epoch was chosen.

The PIR and HarMA papers report the epoch that scored best on *test*. The headline of
reports/metrics.json is selected on val with test read once, so it is not comparable with them
as it stands. evaluate therefore also writes (docs/evaluation.md, "Comparing with published numbers"):

- ``as_published``: the best test epoch of the train stage's per-epoch test scores (the
  ``test_*`` columns of reports/train_curves.csv, written with ``train.track_test``), as the
  papers select it; ``itm`` protocol, the full test split.
- ``last_epoch``: the last epoch's checkpoint scored as the headline is (same test images).

Both keep the same keys whether or not there is a number: a number that was not measured is
null and ``note`` says why.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Sequence

from pir.evaluation.metrics import METRIC_KEYS

TEST_PREFIX = "test_"    # the per-epoch test columns of reports/train_curves.csv: test_r_mean, ...
SELECTION_KEY = "r_mean"
PROTOCOL = "itm"         # the authors' itm_eval: 5 captions per image, each caption a query

AS_PUBLISHED_NOTE = ("best test epoch, selected on test as the PIR and HarMA papers report: optimistic, "
                     "not comparable with the headline (selected on val, test read once)")
LAST_EPOCH_NOTE = "the last epoch's checkpoint, on the same test images as the headline"
NOT_TRACKED = "not tracked: set train.track_test=true (and rerun train)"
NOT_TRACKED_ZERO_SHOT = "not tracked: zero-shot (train.epochs = 0) has no epochs to select from"
FOREIGN_CHECKPOINT = "not tracked: evaluate.checkpoint is not the train stage's best.pt"


def _scores(values: Mapping[str, Any] | None) -> dict[str, float | None]:
    return {k: (None if values is None else float(values[k])) for k in METRIC_KEYS}


def read_curves(path: str | Path) -> list[dict[str, float]]:
    """reports/train_curves.csv as one {column: float} per epoch, blank cells left out; [] without the file."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def as_published(curves: Sequence[Mapping[str, float]], n_images: int, n_texts: int) -> dict[str, Any]:
    """The best epoch by test ``r_mean`` among the epochs that have test scores (ties: the earliest).

    ``n_images``/``n_texts``: the test split the trainer scored (all of it, as the papers do).
    """
    scored = [row for row in curves if TEST_PREFIX + SELECTION_KEY in row]
    if not scored:
        return not_published(NOT_TRACKED)
    best = max(scored, key=lambda row: (row[TEST_PREFIX + SELECTION_KEY], -row["epoch"]))
    return {"selected_on": "test", "protocol": PROTOCOL, "epoch": int(best["epoch"]), "epochs_scored": len(scored),
            "n_images": int(n_images), "n_texts": int(n_texts), "note": AS_PUBLISHED_NOTE,
            **_scores({k: best[TEST_PREFIX + k] for k in METRIC_KEYS})}


def not_published(reason: str) -> dict[str, Any]:
    """``as_published`` when there are no per-epoch test scores: its keys, null, and the reason."""
    return {"selected_on": "test", "protocol": PROTOCOL, "epoch": None, "epochs_scored": 0,
            "n_images": None, "n_texts": None, "note": reason, **_scores(None)}


def last_epoch(epoch: int | None, checkpoint: str | None, scores: Mapping[str, float] | None,
               note: str = LAST_EPOCH_NOTE) -> dict[str, Any]:
    """``last_epoch``: the last checkpoint's test scores (``itm`` keys), or nulls with ``note`` saying why."""
    return {"protocol": PROTOCOL, "epoch": epoch, "checkpoint": checkpoint, "note": note, **_scores(scores)}
