"""train.track_test: per-epoch test columns for reporting, with selection and weights untouched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from pir.config import TrainConfig
from pir.evaluation.published import as_published, read_curves
from pir.models import create_model
from pir.pipeline.params import PipelineConfig, apply_overrides, load_params
from pir.pipeline.train import MlflowEpochs, declared_params, mlflow_row, training_params
from pir.training.launch import DistContext
from pir.training.state import TrainState
from pir.training.trainer import TrainOutputs, train, write_curves_csv

ROOT_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
CPU = DistContext(torch.device("cpu"))
# validated on epochs 2 (interval) and 3 (the last): epoch 1 has neither val nor test columns
TRAIN = TrainConfig(epochs=3, eval_interval=2, global_batch_size=8, lr=1e-3, num_workers=0, log_interval=2,
                    precision="fp32")


class FakeTracker:
    """What MlflowEpochs needs of a pir.pipeline.tracking.Tracker: a run id and log_metrics."""

    def __init__(self):
        self.run_id, self.logged = "run-1", []

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, dict(metrics)))


def run(tmp_path, name, tiny_data, cfg, train_cfg, logger=None):
    prepared, tokenizer = tiny_data
    torch.manual_seed(0)
    outputs = TrainOutputs(tmp_path / name / "best.pt", tmp_path / name / "last.pt")
    summary = train(create_model(cfg), prepared, tokenizer, cfg, train_cfg, seed=0,
                    state=TrainState(tmp_path / f"{name}_state", "k"), outputs=outputs, ctx=CPU,
                    params={"seed": 0}, log=lambda line: None, logger=logger)
    return summary, outputs


def test_tracking_test_adds_columns_and_changes_nothing_the_seed_determines(tmp_path, tiny_data, tiny_model_cfg):
    plain, plain_out = run(tmp_path, "plain", tiny_data, tiny_model_cfg, TRAIN)
    tracker = FakeTracker()
    tracked, tracked_out = run(tmp_path, "tracked", tiny_data, tiny_model_cfg,
                               dataclasses.replace(TRAIN, track_test=True), logger=MlflowEpochs(tracker))

    # the same weights, the same selection, byte for byte
    for name in ("best", "last"):
        assert getattr(plain_out, name).read_bytes() == getattr(tracked_out, name).read_bytes()
    assert (tracked.best_epoch, tracked.best_val) == (plain.best_epoch, plain.best_val)
    assert tracked.report() == plain.report()
    # the test columns sit beside the val ones, on the validated epochs only, and nowhere else
    test_columns = [{k for k in row if k.startswith("test_")} for row in tracked.curves]
    assert test_columns[0] == set() and test_columns[1] == test_columns[2] == \
        {"test_" + k[4:] for k in tracked.curves[1] if k.startswith("val_")}
    untracked = [{k: v for k, v in row.items() if not k.startswith("test_") and "second" not in k and "per_s" not in k}
                 for row in tracked.curves]
    assert untracked == [{k: v for k, v in row.items() if "second" not in k and "per_s" not in k} for row in plain.curves]
    # in MLflow they may not take evaluate's test_<key> names (the headline, and what seed groups look for)
    logged = mlflow_row(tracked.curves[1])
    assert "tracked_test_r_mean" in logged and not any(k.startswith("test_") for k in logged)
    # the trainer hands each epoch's row to its EpochLogger; the stage's adapter logs it at step = epoch
    assert tracker.logged == [(row["epoch"], mlflow_row(row)) for row in tracked.curves]
    assert TrainState(tmp_path / "tracked_state", "k").logger_run_id() == "run-1"

    # the curves file carries them to evaluate, which picks the best test epoch from it
    write_curves_csv(tmp_path / "curves.csv", tracked.curves)
    curves = read_curves(tmp_path / "curves.csv")
    assert [row.get("test_r_mean") is not None for row in curves] == [False, True, True]
    best_test = max((2, 3), key=lambda e: (tracked.curves[e - 1]["test_r_mean"], -e))
    entry = as_published(curves, 8, 16)
    assert entry["epoch"] == best_test and entry["epochs_scored"] == 2 and entry["selected_on"] == "test"
    assert abs(entry["r_mean"] - tracked.curves[best_test - 1]["test_r_mean"]) < 1e-5


def test_track_test_is_kept_out_of_the_run_key_and_the_stored_params():
    # checkpoints store training_params: flipping track_test must leave their bytes (and a resume) alone
    params = load_params(ROOT_PARAMS)
    off = PipelineConfig.from_params(apply_overrides(params, ["train.track_test=false"]))
    on = PipelineConfig.from_params(apply_overrides(params, ["train.track_test=true"]))
    assert on.train.track_test and not off.train.track_test
    assert training_params(on, on.model) == training_params(off, off.model)
    assert declared_params(on) == declared_params(off)      # the seeds of both share one group
