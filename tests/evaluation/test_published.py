"""reports/metrics.json "as_published" and "last_epoch": the numbers that sit next to published ones.

The stage tests run evaluate on the tiny hand-built project of test_stages.py, given a best.pt, a
last.pt of the same run and a curves file with the per-epoch test columns train.track_test writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from pir.config import model_config
from pir.data.text import load_tokenizer
from pir.evaluation.metrics import METRIC_KEYS
from pir.evaluation.published import (FOREIGN_CHECKPOINT, NOT_TRACKED, NOT_TRACKED_ZERO_SHOT, as_published,
                                      last_epoch, not_published, read_curves)
from pir.models import create_model
from pir.models.checkpoint import save_checkpoint
from pir.pipeline.evaluate import published_metrics
from pir.training.trainer import write_curves_csv
from tests.evaluation.test_stages import project, run_stage  # noqa: F401  (project: the module's fixture)


def curve_row(epoch: int, test_r_mean: float | None) -> dict:
    row = {"epoch": epoch, "loss": 1.0 / epoch, "lr": 1e-4, "val_r_mean": 10.0 + epoch}
    if test_r_mean is not None:
        row.update({f"test_{k}": test_r_mean + i for i, k in enumerate(METRIC_KEYS[:-1])}, test_r_mean=test_r_mean)
    return row


def test_best_test_epoch_among_the_scored_ones_earliest_on_a_tie():
    curves = [curve_row(1, None), curve_row(2, 30.0), curve_row(3, 35.5), curve_row(4, 35.5), curve_row(5, 20.0)]
    entry = as_published(curves, n_images=100, n_texts=500)
    assert entry["epoch"] == 3 and entry["epochs_scored"] == 4 and entry["r_mean"] == 35.5
    assert entry["txt_r1"] == 35.5 and entry["img_r10"] == 40.5
    assert (entry["selected_on"], entry["protocol"], entry["n_images"], entry["n_texts"]) == ("test", "itm", 100, 500)
    assert "selected on test" in entry["note"]


def test_not_tracked_keeps_the_schema_with_nulls_and_says_why():
    tracked = as_published([curve_row(1, 30.0)], 10, 50)
    untracked = as_published([curve_row(1, None), curve_row(2, None)], 10, 50)
    assert untracked == not_published(NOT_TRACKED) and list(untracked) == list(tracked)
    assert untracked["epoch"] is None and untracked["epochs_scored"] == 0
    assert all(untracked[k] is None for k in METRIC_KEYS) and "train.track_test=true" in untracked["note"]
    assert list(last_epoch(None, None, None, "why")) == list(last_epoch(3, "data/train/last.pt", tracked))
    assert published_metrics(untracked, last_epoch(None, None, None, "why")) == {}
    logged = published_metrics(tracked, last_epoch(3, "data/train/last.pt", tracked))
    assert logged["as_published_epoch"] == 1 and logged["last_epoch"] == 3
    assert logged["test_as_published_r_mean"] == logged["test_last_epoch_r_mean"] == 30.0
    assert not {f"test_{k}" for k in METRIC_KEYS} & set(logged)     # the headline's names stay the headline's


def test_curves_round_trip_through_the_csv(tmp_path):
    rows = [curve_row(1, None), curve_row(2, 31.25)]
    write_curves_csv(tmp_path / "curves.csv", rows)
    assert read_curves(tmp_path / "curves.csv") == [{k: float(v) for k, v in row.items()} for row in rows]
    assert read_curves(tmp_path / "missing.csv") == []


# --------------------------------------------------------------------------- the evaluate stage

def tiny_checkpoint(root: Path, path: Path, seed: int, **extra) -> None:
    vocab = len(load_tokenizer(root / "data" / "fetch" / "tokenizer"))
    torch.manual_seed(seed)
    cfg = model_config("tiny", vocab_size=vocab, image_size=32, filter_size=2)
    save_checkpoint(path, create_model(cfg), cfg, **extra)


def set_checkpoint(root: Path, setting: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["checkpoint"] = setting
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def evaluate(root: Path) -> dict:
    assert run_stage(root, "evaluate") is None
    return json.loads((root / "reports/metrics.json").read_text())


@pytest.fixture
def trained(project, tmp_path) -> Path:  # noqa: F811
    """The project as a 3-epoch train run left it: best.pt (epoch 2), last.pt (epoch 3), test columns."""
    root = tmp_path / "project"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    set_checkpoint(root, "")
    tiny_checkpoint(root, root / "data/train/best.pt", seed=1, epoch=2, model_key="run-a")
    tiny_checkpoint(root, root / "data/train/last.pt", seed=2, epoch=3, model_key="run-a")
    write_curves_csv(root / "reports/train_curves.csv", [curve_row(1, 12.5), curve_row(2, 20.0), curve_row(3, 17.0)])
    return root


def test_evaluate_reports_the_best_test_epoch_and_the_last_epoch(trained):
    from mlflow import MlflowClient

    stored = evaluate(trained)
    published = stored["as_published"]
    assert (published["epoch"], published["r_mean"], published["epochs_scored"]) == (2, 20.0, 3)
    assert (published["n_images"], published["n_texts"]) == (stored["n_images"], stored["n_texts"])
    last = stored["last_epoch"]
    assert (last["epoch"], last["checkpoint"]) == (3, "data/train/last.pt")
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'mlflow.db'}")
    logged = client.search_runs([client.get_experiment_by_name("pir").experiment_id])[0].data.metrics
    assert logged["as_published_epoch"] == 2 and logged["test_as_published_r_mean"] == 20.0
    assert logged["last_epoch"] == 3 and logged["test_last_epoch_r_mean"] == pytest.approx(last["r_mean"])

    # last_epoch is evaluate's own scoring of last.pt: the headline it gets as evaluate.checkpoint
    set_checkpoint(trained, "data/train/last.pt")
    direct = evaluate(trained)
    assert {k: last[k] for k in METRIC_KEYS} == {k: direct[k] for k in METRIC_KEYS}
    # ... where it is a checkpoint of its own, with no epochs of a run to report
    assert direct["as_published"] == not_published(FOREIGN_CHECKPOINT)
    assert direct["last_epoch"]["note"] == FOREIGN_CHECKPOINT and direct["last_epoch"]["r_mean"] is None


def test_untracked_run_and_last_epoch_equal_to_best(trained):
    # train.track_test false: the curves have no test columns; the best epoch is the last one
    write_curves_csv(trained / "reports/train_curves.csv", [curve_row(1, None), curve_row(2, None)])
    tiny_checkpoint(trained, trained / "data/train/best.pt", seed=1, epoch=2, model_key="run-a")
    shutil.copyfile(trained / "data/train/best.pt", trained / "data/train/last.pt")
    stored = evaluate(trained)
    assert stored["as_published"] == not_published(NOT_TRACKED)
    assert stored["last_epoch"]["epoch"] == 2 and {k: stored["last_epoch"][k] for k in METRIC_KEYS} == \
        {k: stored[k] for k in METRIC_KEYS}


def test_zero_shot_and_a_last_pt_of_another_run(trained):
    tiny_checkpoint(trained, trained / "data/train/best.pt", seed=1, epoch=0, model_key="run-b")
    stored = evaluate(trained)
    assert stored["as_published"] == not_published(NOT_TRACKED_ZERO_SHOT)
    assert stored["last_epoch"]["epoch"] is None and "not from best.pt's train run" in stored["last_epoch"]["note"]
