"""The stage entry point (pir.pipeline.entry.main): user errors end in one line before work is lost or done."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
import yaml

from pir.pipeline.entry import main

from pir.pipeline import evaluate, train
from tests.prepared_fixture import make_prepared

ROOT = Path(__file__).resolve().parents[1]


def write_params(project: Path, **sections) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    project.mkdir(parents=True, exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def exit_message(stage, project: Path) -> str | None:
    with mock.patch.dict(os.environ):
        os.environ.pop("DVC_ROOT", None)
        try:
            main(stage, project)
            return None
        except SystemExit as exc:
            return str(exc.code)


def test_blocked_output_folder_stops_before_any_work(tmp_path):
    write_params(tmp_path)
    (tmp_path / "reports").write_text("a file where the reports folder should be")
    message = exit_message(evaluate, tmp_path)
    assert message.startswith(f"evaluate: {tmp_path / 'reports'}: cannot write the stage's outputs there")
    assert "\n" not in message
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "data" / "evaluate" / "similarity.npz").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_stops_before_any_work(tmp_path):
    write_params(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports").chmod(0o555)
    try:
        message = exit_message(evaluate, tmp_path)
    finally:
        (tmp_path / "reports").chmod(0o755)
    assert message.startswith(f"evaluate: {tmp_path / 'reports'}: cannot write") and "Permission denied" in message
    assert not (tmp_path / "mlflow.db").exists()


def test_diverging_loss_ends_in_one_line_with_a_hint(tmp_path):
    make_prepared(tmp_path / "data" / "fetch", images=24, image_size=64, classes=3, captions_per_image=2,
                  split=(0.6, 0.2, 0.2), vocab_size=200)
    tiny = {"preset": "tiny", "image_size": 56, "swin_depths": [1, 1], "swin_heads": [1, 2], "text_layers": 1,
            "embed_dim": 64, "heads": 2, "use_vir": False}
    write_params(tmp_path, model=tiny, data={"cache_res": 64, "max_tokens": 24},
                 train={"lr": 1e12, "epochs": 1, "global_batch_size": 4, "device": "cpu", "num_workers": 0,
                        "precision": "fp32", "warmup_fraction": 0.0})
    message = exit_message(train, tmp_path)
    assert message.startswith("train: epoch 1: training loss is nan") and "lower train.lr" in message
    assert not (tmp_path / "data" / "train" / "best.pt").exists()
