"""The MLflow UI as a person sees it: runs named by experiment, the saved comparison view, in Chromium.

Runs of two DVC experiments are made through the stages' own tracking calls (no training), the
real `mlflow server` serves the store, and headless Chromium renders the runs page. The
screenshot goes to the test's folder; with PIR_UPDATE_SCREENSHOTS=1 it replaces the one the
README shows (docs/images/mlflow-compare.png).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pir.pipeline import tracking
from pir.pipeline.params import PipelineConfig
from tests import browser
from tests.mlflow_server import mlflow_server

README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "mlflow-compare.png"
EXPERIMENTS = {"bars-a": ({}, 31.4), "bars-b": ({"model": {"use_vir": False}}, 27.9)}   # overrides, test_r_mean


def record_experiment_runs(store: Path, monkeypatch) -> None:
    """What `dvc exp run -n <name>` leaves in MLflow: a scene_prior run and a train run with test metrics."""
    for name, (overrides, test_r_mean) in EXPERIMENTS.items():
        monkeypatch.setenv("DVC_EXP_NAME", name)
        cfgs = PipelineConfig.from_recipe("cpu", **overrides)
        for stage in ("scene_prior", "train"):
            with tracking.stage_run(store, stage, {"seed": cfgs.seed}, compared=cfgs.compared_params(stage, "cpu"),
                                    system_metrics=False) as tracker:
                if stage == "train":
                    tracker.log_metrics({"test_r_mean": test_r_mean})


def test_runs_page_shows_experiment_names_and_the_compared_columns(tmp_path, monkeypatch):
    browser.chromium()                                   # skips with the reason before any work
    experiment_id = tracking.ensure_experiment(tmp_path)
    started = time.perf_counter()
    with mlflow_server(tmp_path) as server:              # its slow start-up overlaps the runs' recording
        record_experiment_runs(tmp_path, monkeypatch)
        url = tracking.compare_url(experiment_id, server.url())
        print(f"runs recorded, mlflow server answering after {time.perf_counter() - started:.1f} s")
        dom = browser.dump_dom(url, wait_ms=5000)
        shot = README_SCREENSHOT if os.environ.get("PIR_UPDATE_SCREENSHOTS") == "1" else tmp_path / "compare.png"
        browser.screenshot(url, shot, size=(2640, 480), wait_ms=5000)
        print(f"DOM and screenshot after {time.perf_counter() - started:.1f} s")
    for name in EXPERIMENTS:
        for stage in ("train", "scene_prior"):
            assert f"{name} · {stage}" in dom, f"run {name} · {stage} not rendered"
    assert "Error loading shared view state" not in dom
    assert "Sort: test_r_mean" in dom.replace("<!-- -->", "")        # the saved view applied
    assert shot.read_bytes()[:4] == b"\x89PNG"
