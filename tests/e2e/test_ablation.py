"""`pir ablation`: queued seed runs of a variant, the table, the figure and the MLflow seed group."""

from __future__ import annotations

import sys

import pytest

from tests.e2e.e2e_project import copy_project, run

pytestmark = pytest.mark.e2e


def test_ablation_command_writes_table_and_seed_groups(repro, tmp_path):
    from mlflow import MlflowClient

    project = copy_project(repro[0], tmp_path / "ablation")
    proc = run([sys.executable, "-m", "pir_tools.cli", "ablation", "--variants", "full", "--seeds", "0", "1", "-j", "2"],
              project)
    table = (project / "reports/ablation.md").read_text()
    assert "PIR (VIR + LCA + affiliation) | 2 |" in table and " ± " in table and "(t over seeds)" in table
    assert (project / "reports/figures/ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "| PIR" in proc.stdout
    # One parent per configuration in MLflow, both seed runs nested under it, carrying mean and interval.
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pir").experiment_id])
    parents = [r for r in runs if r.data.tags.get("pir_seed_group")]
    assert [p.info.run_name for p in parents] == ["ablation-full · seeds"]
    # Seed 0 of the full variant is the workspace's own configuration: DVC may reuse that run's results.
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1"]
    metrics = parents[0].data.metrics
    assert metrics["n_seeds"] == 2 and metrics["test_r_mean_ci95_low"] <= metrics["test_r_mean"]
