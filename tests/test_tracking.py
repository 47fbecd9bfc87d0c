"""MLflow tracking: runs land in a SQLite store with tags and params; a broken store only warns."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from pir.pipeline import tracking


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(tracking, "RETRY_DELAY_S", 0.01)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)


def test_stage_runs_land_in_sqlite_store_with_tags_params_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-lr")
    experiment_id = tracking.ensure_experiment(tmp_path)
    assert tracking.ensure_experiment(tmp_path) == experiment_id          # idempotent
    client = MlflowClient(tracking.tracking_uri(tmp_path))
    experiment = client.get_experiment(experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location == (tmp_path / "mlartifacts").resolve().as_uri()

    artifact = tmp_path / "report.json"
    artifact.write_text("{}")
    params = {"seed": 0, "train": {"lr": 5e-4, "betas": [0.9, 0.98]}, "note": "x" * 7000}
    with tracking.stage_run(tmp_path, "train", params, system_metrics=False) as tracker:
        for epoch in (1, 2):
            tracker.log_metrics({"loss": 1.0 / epoch, "val_r_mean": 10.0 * epoch}, step=epoch)
        tracker.log_artifact(artifact)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and (tmp_path / "mlflow.db").is_file()
    assert run.data.tags["dvc_exp_name"] == "exp-lr" and run.data.tags["dvc_stage"] == "train"
    assert run.data.tags["git_commit"] == "unknown"                       # tmp_path is not a git repo
    assert run.data.params["train.lr"] == "0.0005" and run.data.params["seed"] == "0"
    assert len(run.data.params["note"]) == tracking.MAX_PARAM_VALUE
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_r_mean")] == [(1, 10.0), (2, 20.0)]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["report.json"]

    # evaluate reopens the train run: same row, stage tag accumulates, new params added
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    with tracking.stage_run(tmp_path, "evaluate", {"evaluate": {"batch_size": 8}}, run_id=tracker.run_id,
                            system_metrics=False) as reopened:
        reopened.log_metrics({"test_r_mean": 1.0})
    run = client.get_run(tracker.run_id)
    assert reopened.run_id == tracker.run_id and run.data.tags["dvc_stage"] == "train"
    assert run.data.tags["dvc_stages"] == "train,evaluate"
    assert run.data.tags["git_commit"] == "abc123" and run.data.params["evaluate.batch_size"] == "8"


def test_failed_block_marks_run_failed_and_reraises(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    with pytest.raises(RuntimeError):
        with tracking.stage_run(tmp_path, "train", {}, system_metrics=False) as tracker:
            raise RuntimeError("boom")
    run = MlflowClient(tracking.tracking_uri(tmp_path)).get_run(tracker.run_id)
    assert run.info.status == "FAILED" and run.info.run_name == "workspace · train"     # tmp_path: no git


def test_broken_store_warns_and_continues(tmp_path, capsys):
    (tmp_path / "mlflow.db").mkdir()                                      # a directory where the DB should be
    assert tracking.ensure_experiment(tmp_path) is None
    with tracking.stage_run(tmp_path, "train", {"seed": 0}) as tracker:
        tracker.log_metrics({"loss": 1.0}, step=1)
        tracker.log_artifact(tmp_path)
        output_written = tmp_path / "kept.txt"
        output_written.write_text("stage files survive")
    assert not tracker.active and output_written.read_text() == "stage files survive"
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: MLflow")]
    assert warnings and all("\n" not in w for w in warnings)


def test_find_run_returns_the_newest_run_of_a_model(tmp_path):
    assert tracking.find_run(tmp_path, "key-a") is None
    with tracking.stage_run(tmp_path, "train", {}, model_key="key-a", system_metrics=False) as first:
        pass
    with tracking.stage_run(tmp_path, "train", {}, model_key="key-b", system_metrics=False):
        pass
    with tracking.stage_run(tmp_path, "train", {}, model_key="key-a", system_metrics=False) as newest:
        pass
    assert newest.run_id != first.run_id
    assert tracking.find_run(tmp_path, "key-a") == newest.run_id


HOLD_A_RUN = """
import sys, time
from pir.pipeline import tracking
from pir.pipeline.entry import unwind_on_sigterm
unwind_on_sigterm()
with tracking.stage_run(sys.argv[1], "train", {}, system_metrics=False) as tracker:
    print(tracker.run_id, flush=True)
    time.sleep(120)
"""


def _process_holding_a_run(root) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_A_RUN, str(root)], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_run_of_a_killed_process_is_closed_when_the_next_stage_starts(tmp_path):
    client = MlflowClient(tracking.tracking_uri(tmp_path))
    killed, killed_run = _process_holding_a_run(tmp_path)
    alive, alive_run = _process_holding_a_run(tmp_path)         # a parallel queue worker: left alone
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert client.get_run(killed_run).info.status == "RUNNING"
        with tracking.stage_run(tmp_path, "evaluate", {}, system_metrics=False):
            pass
        assert client.get_run(killed_run).info.status == "KILLED"
        assert client.get_run(alive_run).info.status == "RUNNING"
        assert client.get_run(alive_run).data.tags[tracking.PID_TAG] == str(alive.pid)
    finally:
        alive.kill()
        alive.wait(timeout=30)


def test_sigterm_closes_the_run_as_killed(tmp_path):
    proc, run_id = _process_holding_a_run(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert MlflowClient(tracking.tracking_uri(tmp_path)).get_run(run_id).info.status == "KILLED"


def _git_repo(path, branch="main") -> str:
    """A one-commit git repository at ``path``; its short commit."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@localhost", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", branch], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_runs_are_named_by_experiment_or_commit_uniquely_and_keep_their_name(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    commit = _git_repo(tmp_path, branch="feat/x")
    client = MlflowClient(tracking.tracking_uri(tmp_path))
    compared = {"lr": 0.001, "use_vir": False, "seed": 0}

    def name_of(stage, **kw):
        with tracking.stage_run(tmp_path, stage, {"seed": 0, "train": {"lr": 0.001}}, system_metrics=False,
                                **kw) as tracker:
            pass
        return client.get_run(tracker.run_id), tracker.run_id

    first, first_id = name_of("train", compared=compared)
    assert first.info.run_name == f"feat/x@{commit} · train"
    assert name_of("train")[0].info.run_name == f"feat/x@{commit} · train (2)"       # same commit again
    assert name_of("train")[0].info.run_name == f"feat/x@{commit} · train (3)"
    assert {k: first.data.params[k] for k in compared} == {"lr": "0.001", "use_vir": "False", "seed": "0"}
    # evaluate reopening the train run keeps its name and the compared values of the stage that made it
    reopened, _ = name_of("evaluate", run_id=first_id, compared={"precision": "fp32", "lr": 9})
    assert reopened.info.run_name == first.info.run_name and "precision" not in reopened.data.params
    assert reopened.data.params["lr"] == "0.001"

    monkeypatch.setenv("DVC_EXP_NAME", "bars-a")
    assert name_of("scene_prior")[0].info.run_name == "bars-a · scene_prior"
    assert tracking.run_name_for("scene_prior", tmp_path) == "bars-a · scene_prior (2)"
    assert tracking.run_name_for("ablation", tmp_path, label="it's \"quoted\"") == "it's \"quoted\" · ablation"
    monkeypatch.delenv("DVC_EXP_NAME")
    subprocess.run(["git", "-C", str(tmp_path), "checkout", "-q", "--detach"], check=True)
    assert tracking.run_label(tmp_path) == commit

    # the saved comparison view the README links to
    experiment_id = tracking.ensure_experiment(tmp_path)
    tags = client.get_experiment(experiment_id).tags
    view = json.loads(tags["mlflow.sharedViewState.pir-compare"])
    assert view["selectedColumns"][:3] == ["metrics.`test_r_mean`", "params.`recipe`", "params.`preset`"]
    assert view["orderByKey"] == "metrics.`test_r_mean`" and view["columnOrder"] == view["selectedColumns"]
    assert tracking.compare_url(experiment_id).endswith(f"/#/experiments/{experiment_id}/runs?viewStateShareKey=pir-compare")


def test_a_new_store_is_linked_in_whole_and_never_over_another(tmp_path):
    store = tmp_path / "mlflow.db"
    first = tracking.ensure_experiment(tmp_path)
    assert first is not None and [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]   # no temp file left
    before = store.read_bytes()
    tracking._create_store(store, tracking.artifact_location(tmp_path))   # lost the race: theirs stays
    assert store.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]
    assert tracking.ensure_experiment(tmp_path) == first
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "mlflow.db").touch()             # what an interrupted probe leaves: replaced by a real store
    assert tracking.ensure_experiment(empty) is not None and (empty / "mlflow.db").stat().st_size > 0
