"""Experiment workflow: queued `dvc exp` runs in parallel and the MLflow comparison (the ablation command:
test_ablation.py, a file of its own so the two xdist workers each take one of these long files)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pir.pipeline import tracking
from pir_tools import dvc_queue
from tests.e2e.e2e_project import copy_project, run
from tests.mlflow_server import mlflow_rest, mlflow_server

pytestmark = pytest.mark.e2e


def experiments(project: Path) -> dict[str, dict]:
    """Experiment name -> its data block in `dvc exp show --json`."""
    shown = json.loads(run(["dvc", "exp", "show", "--json", "--no-fetch"], project).stdout)
    return {rev["name"]: rev["data"] for base in shown for group in base.get("experiments") or []
            for rev in group.get("revs") or []}


def stage_ran(project: Path, experiment: str, stage: str) -> bool:
    """Whether DVC ran ``stage`` in the queued ``experiment`` (not restored from its run cache)."""
    return f"Running stage '{stage}'" in run(["dvc", "queue", "logs", experiment], project).stdout


def assert_named_runs(runs: list[dict], project: Path) -> None:
    """Each experiment's runs are named `<name> · <stage>` and carry the compared params as top-level keys."""
    by_name = {r["info"]["run_name"]: {p["key"]: p["value"] for p in r["data"].get("params", [])} for r in runs}
    compared = set(tracking.COMPARED_COLUMNS)
    for name in ("lr-high", "no-vir"):
        assert compared <= set(by_name[f"{name} · train"]), sorted(by_name)
        prior = by_name.get(f"{name} · scene_prior")
        assert (prior is not None) == stage_ran(project, name, "scene_prior"), sorted(by_name)
        assert prior is None or {"recipe", "preset", "dataset", "epochs", "lr", "global_batch", "seed"} <= set(prior)
    assert by_name["lr-high · train"]["lr"] == "0.001" and by_name["no-vir · train"]["use_vir"] == "False"
    assert by_name["no-vir · scene_prior"]["epochs"] == "2"          # use_vir is a scene_prior param: it ran


@pytest.fixture(scope="module")
def queued(repro, tmp_path_factory) -> Path:
    # a copy of the session's `dvc repro`: its run cache lets the queued runs reuse fetch/audit/scene_prior
    project = copy_project(repro[0], tmp_path_factory.mktemp("queue") / "project")
    # one epoch each: the queue, not the training, is under test
    run(["dvc", "exp", "run", "--queue", "-n", "lr-high", "-S", "train.lr=0.001", "-S", "train.epochs=1"], project)
    run(["dvc", "exp", "run", "--queue", "-n", "no-vir", "-S", "model.use_vir=false", "-S", "train.epochs=1"], project)
    run(["dvc", "queue", "start", "-j", "2"], project)
    deadline = time.time() + 900
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(dvc_queue.POLL_S)
    run(["dvc", "queue", "stop"], project)   # as run_queue does: a worker must not outlive the test (dvc#10398)
    assert "Failed" not in status, status + run(["dvc", "queue", "logs", "lr-high"], project, check=False).stdout
    return project


def test_queued_experiments_show_params_and_metrics(queued):
    shown = experiments(queued)
    assert {"lr-high", "no-vir"} <= set(shown)
    assert shown["lr-high"]["params"]["params.yaml"]["data"]["train"]["lr"] == 0.001
    assert shown["no-vir"]["params"]["params.yaml"]["data"]["model"]["use_vir"] is False
    for name in ("lr-high", "no-vir"):
        assert "r_mean" in shown[name]["metrics"]["reports/metrics.json"]["data"]
    diff = run(["dvc", "metrics", "diff", "HEAD", "lr-high", "--json"], queued).stdout
    assert "reports/metrics.json" in json.loads(diff)


def test_mlflow_server_lists_every_run_with_tags(queued):
    with mlflow_server(queued) as server:
        experiment = mlflow_rest(server.url(), "/api/2.0/mlflow/experiments/search", {"max_results": 10})
        pir = next(e for e in experiment["experiments"] if e["name"] == "pir")
        runs = mlflow_rest(server.url(), "/api/2.0/mlflow/runs/search",
                           {"experiment_ids": [pir["experiment_id"]], "max_results": 100})["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        train_runs = {t.get("dvc_exp_name"): r for t, r in zip(tags, runs) if t.get("dvc_stage") == "train"}
        assert {"lr-high", "no-vir"} <= set(train_runs), sorted(filter(None, train_runs))
        for name in ("lr-high", "no-vir"):
            metric_keys = {m["key"] for m in train_runs[name]["data"].get("metrics", [])}
            assert "test_r_mean" in metric_keys
        assert all(t.get("git_commit") for t in tags)
        assert_named_runs(runs, queued)
