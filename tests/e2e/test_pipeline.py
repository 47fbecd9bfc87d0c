"""The real pipeline, end to end, on tiny params: `dvc repro`, outputs, MLflow, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pir.evaluation.metrics import METRIC_KEYS, retrieval_metrics

from tests.e2e.e2e_project import GIT_ENV, make_project, run

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def repro(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    project = make_project(tmp_path_factory.mktemp("pipeline"))
    return project, run(["dvc", "repro"], project)


def test_repro_writes_every_report(repro):
    project, proc = repro
    for stage in ("fetch", "audit", "scene_prior", "train", "evaluate", "analyze"):
        assert f"Running stage '{stage}'" in proc.stdout
    data = json.loads((project / "reports/data.json").read_text())
    assert data["dataset"] == "synthetic" and data["classes"] == 4
    assert sum(data["images"].values()) == 160
    # the audit finds exactly the near-duplicates the generator planted (params.yaml: 6)
    audit = json.loads((project / "reports/audit.json").read_text())
    assert len(data["planted_duplicates"]) == 6
    assert {(p["a"], p["b"]) for p in audit["near_duplicate_pairs"]} == {tuple(p) for p in data["planted_duplicates"]}
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics)
    analysis = json.loads((project / "reports/analysis.json").read_text())
    assert analysis, "analysis.json is empty"
    assert metrics["leakage"] == {"exclude_leaked": False, "excluded_test_images": 0}
    for figure in ("gallery.png", "tsne.png", "class_similarity.png", "scene_prior_confusion.png", "audit_pairs.png"):
        assert (project / "reports/figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_come_from_the_saved_similarity_matrix(repro):
    project, _ = repro
    saved = np.load(project / "data/evaluate/similarity.npz")
    assert saved["sims"].dtype == np.float32
    assert saved["sims"].shape == (len(np.unique(saved["txt2img"])), len(saved["txt2img"]))
    recomputed = retrieval_metrics(saved["sims"], saved["txt2img"])
    stored = json.loads((project / "reports/metrics.json").read_text())
    for key in METRIC_KEYS:
        assert stored[key] == pytest.approx(recomputed[key], abs=1e-6), key


def test_train_logs_never_mention_the_test_split(repro):
    project, proc = repro
    train_report = (project / "reports/train.json").read_text() + (project / "reports/train_curves.csv").read_text()
    assert "test" not in train_report


def test_mlflow_runs_are_tagged(repro):
    import mlflow

    project, _ = repro
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pir")
    runs = client.search_runs([experiment.experiment_id])
    stages = {r.data.tags.get("dvc_stage") for r in runs}
    assert {"scene_prior", "train"} <= stages
    train_run = next(r for r in runs if r.data.tags.get("dvc_stage") == "train")
    for tag in ("dvc_exp_name", "git_commit"):
        assert train_run.data.tags.get(tag)
    # evaluate logs its test metrics into the trained model's run
    assert "test_r_mean" in train_run.data.metrics


def test_git_sees_no_stray_files(repro):
    project, _ = repro
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout
    untracked = [line for line in status.splitlines() if line.startswith("??")]
    assert untracked == [], untracked


@pytest.mark.parametrize("edited", ["src/pir/analysis/tsne.py", "src/pir/data/text.py", "src/pir/recipes/cpu.yaml"])
def test_editing_library_code_reruns_the_stages_that_use_it(repro, edited):
    from tests.test_dvc_deps import ROOT, stages_importing

    project, _ = repro
    path = project / edited
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# edited\n")
        changed = set(json.loads(run(["dvc", "status", "--json"], project).stdout))
    finally:
        path.write_bytes(original)
    assert changed == stages_importing(ROOT / edited) and changed
    assert json.loads(run(["dvc", "status", "--json"], project).stdout) == {}


def test_killed_training_resumes_to_the_same_result(repro, tmp_path):
    reference, _ = repro
    project = make_project(tmp_path / "resume")
    run(["dvc", "repro", "scene_prior"], project)
    env = {**os.environ, **GIT_ENV, "PYTHONUNBUFFERED": "1"}
    train = subprocess.Popen(["dvc", "repro", "train"], cwd=project, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = project / "data/train_state"
    deadline = time.time() + 600
    while time.time() < deadline and not any(state.glob("*/state.pt")) and train.poll() is None:
        time.sleep(0.2)
    os.killpg(train.pid, signal.SIGKILL)
    train.wait()
    assert any(state.glob("*/state.pt")), "train never completed an epoch before the kill"
    proc = run(["dvc", "repro"], project)
    assert "resuming from epoch" in proc.stdout + proc.stderr
    resumed = json.loads((project / "reports/metrics.json").read_text())
    uninterrupted = json.loads((reference / "reports/metrics.json").read_text())
    for key in METRIC_KEYS:
        assert resumed[key] == pytest.approx(uninterrupted[key], abs=1e-6), key
