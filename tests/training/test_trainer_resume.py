"""The training loop: checkpoints and curves, val-only selection, exact resume, keyed state."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pir.config import TrainConfig
from pir.data.prepared import PreparedDataset
from pir.files import load_torch
from pir.models import create_model
from pir.training import trainer as trainer_module
from pir.training.launch import DistContext
from pir.training.state import TrainState, run_key
from pir.training.trainer import TrainOutputs, train, write_curves_csv

TRAIN = TrainConfig(epochs=2, global_batch_size=8, lr=1e-3, num_workers=0, log_interval=2, precision="fp32")
CPU = DistContext(torch.device("cpu"))


class Killed(Exception):
    """Stands in for kill -9 right after an epoch's state was written."""


def run(tmp_path, name, tiny_data, cfg, train_cfg=TRAIN, init_seed=0):
    prepared, tokenizer = tiny_data
    torch.manual_seed(init_seed)
    model = create_model(cfg)
    outputs = TrainOutputs(tmp_path / name / "best.pt", tmp_path / name / "last.pt")
    lines = []
    summary = train(model, prepared, tokenizer, cfg, train_cfg, seed=0, state=TrainState(tmp_path / f"{name}_state", "k"),
                    outputs=outputs, ctx=CPU, params={"seed": 0}, log=lines.append)
    return summary, outputs, lines


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, tiny_data, tiny_model_cfg, monkeypatch):
    full, full_out, _ = run(tmp_path, "full", tiny_data, tiny_model_cfg)

    def kill_after_first_epoch(ctx):
        raise Killed
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "barrier", kill_after_first_epoch)
        with pytest.raises(Killed):
            run(tmp_path, "resumed", tiny_data, tiny_model_cfg)
    # a fresh process would build the model from scratch: another init must not matter
    resumed, resumed_out, lines = run(tmp_path, "resumed", tiny_data, tiny_model_cfg, init_seed=123)

    assert any(line.startswith("resuming from epoch 1") for line in lines)
    assert resumed.resumed_from == 1 and len(resumed.curves) == 2
    assert resumed.best_val == full.best_val and resumed.best_epoch == full.best_epoch
    drop_times = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k} for r in rows]
    assert drop_times(resumed.curves) == drop_times(full.curves)
    for name in ("best", "last"):
        a = load_torch(getattr(full_out, name))["model"]
        b = load_torch(getattr(resumed_out, name))["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_curves_and_val_only_selection(tmp_path, tiny_data, tiny_model_cfg, monkeypatch):
    splits_built = []
    original_split = PreparedDataset.split
    monkeypatch.setattr(PreparedDataset, "split",
                        lambda self, name: splits_built.append(name) or original_split(self, name))
    cfg = dataclasses.replace(TRAIN, epochs=3, eval_interval=2)
    summary, outputs, lines = run(tmp_path, "run", tiny_data, tiny_model_cfg, cfg)

    assert "test" not in splits_built and {"train", "val"} <= set(splits_built)
    # validated on epoch 2 (interval) and epoch 3 (last); epoch 1 has no val columns
    assert [("val_r_mean" in row) for row in summary.curves] == [False, True, True]
    best = load_torch(outputs.best)
    assert best["epoch"] == summary.best_epoch in (2, 3)
    assert best["val_metrics"]["r_mean"] == max(r["val_r_mean"] for r in summary.curves if "val_r_mean" in r)
    assert best["model_config"]["image_size"] == tiny_model_cfg.image_size and best["model_key"]
    assert load_torch(outputs.last)["epoch"] == 3
    report = summary.report()
    assert not any("test" in key for key in report) and report["best_val"] == summary.best_val
    assert summary.curves[-1]["lr"] == 0.0                     # linear decay ends at zero
    write_curves_csv(tmp_path / "curves.csv", summary.curves)
    header, first, *_ = (tmp_path / "curves.csv").read_text().splitlines()
    assert header.split(",")[:2] == ["epoch", "loss"] and "val_r_mean" in header
    assert first.startswith("1,") and len(first.split(",")) == len(header.split(","))
    assert first.split(",")[header.split(",").index("val_r_mean")] == ""      # not validated: blank


def test_state_is_keyed_and_stale_states_are_removed(tmp_path):
    base = {"seed": 0, "train": {"lr": 1e-3}}
    key = run_key(base, {"dataset": "abc"})
    assert key == run_key(base, {"dataset": "abc"})
    assert key != run_key({**base, "seed": 1}, {"dataset": "abc"})
    assert key != run_key(base, {"dataset": "abd"})
    old = TrainState(tmp_path, "0" * 16)
    old.save({"epoch": 1, "logger_run_id": "r1"})
    assert old.load()["epoch"] == 1 and old.logger_run_id() == "r1"
    new = TrainState(tmp_path, key)
    assert new.load() is None and new.logger_run_id() is None
    assert new.prune_stale() == ["0" * 16] and not old.dir.exists()
