"""The real pipeline, end to end, on tiny params: `dvc repro`, outputs, MLflow, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pir.evaluation.metrics import METRIC_KEYS, retrieval_metrics
from pir_tools.bench.concurrent_train import OUTPUTS as TRAIN_OUTPUTS

from tests import browser
from tests.e2e.e2e_project import GIT_ENV, copy_project, run
from tests.mlflow_server import free_port

SEARCH_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "search-page.png"

pytestmark = pytest.mark.e2e
REPORTS = ("data.json", "audit.json", "scene_prior.json", "train.json", "metrics.json", "analysis.json")


def test_repro_writes_every_report(repro):
    project, proc = repro
    for stage in ("fetch", "audit", "scene_prior", "train", "evaluate", "analyze", "index"):
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


def test_every_report_records_what_fixes_its_numbers(repro):
    """Thread count (the param's, though OMP_NUM_THREADS=3 was set), software and processor, in each report."""
    import torch

    project, _ = repro
    for name in REPORTS:
        runtime = json.loads((project / "reports" / name).read_text())["runtime"]
        assert runtime["threads"] == 1, name
        assert runtime["torch"] == torch.__version__ and runtime["numpy"] == np.__version__ and runtime["cpu"], name
        assert runtime["device"] == "cpu" and runtime["gpu"] is None and runtime["cuda"] is None, name


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
    commit = run(["git", "rev-parse", "--short", "HEAD"], project).stdout.strip()
    assert train_run.info.run_name == f"main@{commit} · train"            # a plain `dvc repro` on a branch
    # what fixed each stage's numbers, per stage, on the run the stages logged into
    for stage in ("train", "evaluate", "analyze"):
        assert train_run.data.tags[f"runtime.{stage}.threads"] == "1"
        assert train_run.data.tags[f"runtime.{stage}.torch"] and train_run.data.tags[f"runtime.{stage}.cpu"]


def test_git_sees_no_stray_files(repro):
    project, _ = repro
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout
    untracked = [line for line in status.splitlines() if line.startswith("??")]
    assert untracked == [], untracked


@pytest.mark.parametrize("edited", ["src/pir/analysis/tsne.py", "src/pir/data/text.py", "src/pir/recipes/cpu.yaml"])
def test_editing_library_code_reruns_the_stages_that_use_it(repro, edited, tmp_path):
    from tests.test_dvc_deps import ROOT, stages_importing

    project = copy_project(repro[0], tmp_path / "edit")     # the shared run stays as it was
    path = project / edited
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# edited\n")
        changed = set(json.loads(run(["dvc", "status", "--json"], project).stdout))
    finally:
        path.write_bytes(original)
    assert changed == stages_importing(ROOT / edited) and changed
    assert json.loads(run(["dvc", "status", "--json"], project).stdout) == {}


def test_killed_training_resumes_to_the_same_bytes(repro, tmp_path):
    """Kill `train` after its first epoch, run it again: it resumes, and writes the checkpoints, report and
    curves of the uninterrupted run byte for byte (so DVC finds evaluate's inputs unchanged)."""
    reference, _ = repro
    project = copy_project(reference, tmp_path / "resume")
    env = {**os.environ, **GIT_ENV, "PYTHONUNBUFFERED": "1"}
    # -f: train reruns although nothing changed (-s: train alone, not what it depends on)
    train = subprocess.Popen(["dvc", "repro", "-f", "-s", "train"], cwd=project, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = project / "data/train_state"
    deadline = time.time() + 600
    while time.time() < deadline and not any(state.glob("*/state.pt")) and train.poll() is None:
        time.sleep(0.2)
    os.killpg(train.pid, signal.SIGKILL)
    train.wait()
    assert any(state.glob("*/state.pt")), "train never completed an epoch before the kill"
    proc = run(["dvc", "repro", "-f", "-s", "train"], project)
    assert "resuming from epoch 1" in proc.stdout + proc.stderr
    for rel in TRAIN_OUTPUTS:
        assert (project / rel).read_bytes() == (reference / rel).read_bytes(), rel
    assert json.loads(run(["dvc", "status", "--json"], project).stdout) == {}


def test_search_page_over_the_indexed_test_split_in_chromium(repro, tmp_path):
    """`pir serve data/index` right after `dvc repro`: Chromium loads the page with a query in the address,
    the page's script fetches the API and renders the hits; the DOM holds exactly `top` result images."""
    browser.chromium()                                    # skips with the reason before any work
    project, proc = repro
    assert "index: indexed 16 new, 0 unchanged, 0 unreadable" in proc.stdout
    search = run([sys.executable, "-m", "pir_tools.cli", "search", "data/index", "a plane near the runway",
                  "--top", "3"], project).stdout.strip().splitlines()
    assert len(search) == 3 and all(Path(line.split("\t")[1]).is_file() for line in search)

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pir_tools.cli", "serve", "data/index", "--port", str(port)],
                              cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"pir serve did not come up: {server.communicate()[0][-2000:]}")
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/?q=many+planes+near+a+runway&top=6"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?q=planes&top=6", timeout=30) as reply:
            hits = json.loads(reply.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{hits[0]['thumb']}", timeout=30) as reply:
            assert reply.headers["Content-Type"] == "image/jpeg" and reply.read(2) == b"\xff\xd8"
        dom = browser.dump_dom(url, wait_ms=5000)
        shot = SEARCH_SCREENSHOT if os.environ.get("PIR_UPDATE_SCREENSHOTS") == "1" else tmp_path / "search.png"
        browser.screenshot(url, shot, size=(1280, 720), wait_ms=5000)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert dom.count('class="hit-img"') == 6, dom[-3000:]
    assert dom.count('class="hit loaded"') == 6, "thumbnails did not load"
    assert "6 results for" in dom
    assert shot.read_bytes()[:4] == b"\x89PNG"
