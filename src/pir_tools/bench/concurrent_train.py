"""Bench row ``concurrent_train``: two tiny training stages side by side against back to back, and
whether their outputs stay byte-identical (the reproducibility contract, docs/workflows.md).

Two copies of a tiny project are prepared (fetch and scene_prior, untimed). Then the real stage
script ``stages/train.py`` runs in both copies: one after the other, at the same time (each with its
fixed ``runtime.threads``, idle OpenMP threads sleeping, as every stage process does), and at the same
time with OpenMP's default spinning wait (what stage processes did before; shows why the wait is
shortened). Both copies name the same ``DVC_ROOT``, as the workers of ``dvc queue start -j 2`` do. After
each way, the checkpoint, report and curves of both copies are hashed: every way must give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from pir.pipeline.params import merge_set
from pir.threads import available_cores

# Each train step is short, so a few dozen steps show the oversubscription clearly.
TINY_RUN = {
    "synthetic": {"images": 120, "classes": 4, "image_size": 64},
    "data": {"cache_res": 64},
    "model": {"image_size": 56, "swin_depths": [1, 1], "swin_heads": [1, 2], "text_layers": 1, "embed_dim": 64,
              "heads": 2},
    "scene_prior": {"epochs": 1, "batch_size": 32, "patience": 1},
    "train": {"epochs": 1, "global_batch_size": 8, "num_workers": 0, "pairs_per_image": 0, "device": "cpu"},
}
# Bars the issue set: side by side within 1.15x of back to back.
TARGET_RATIO = 1.15
# What a training run produces; hashed after each way of running it.
OUTPUTS = ("data/train/best.pt", "data/train/last.pt", "reports/train.json", "reports/train_curves.csv")


def _stage(project: Path, stage: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(project / "stages" / f"{stage}.py")], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"bench stage failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")


def prepare_projects(root: Path, workdir: Path, run: dict) -> tuple[list[Path], dict[str, str]]:
    """Two tiny projects with fetch and scene_prior done, and the environment a queue worker has."""
    first = workdir / "a"
    shutil.copytree(root / "stages", first / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    params = merge_set(yaml.safe_load((root / "params.yaml").read_text()), run)
    (first / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shared = workdir / "shared"
    shared.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(DVC_ROOT=str(shared), PYTHONUNBUFFERED="1")
    for stage in ("fetch", "scene_prior"):
        _wait([_stage(first, stage, env)])
    second = workdir / "b"
    shutil.copytree(first, second)
    return [first, second], env


def output_digests(projects: list[Path]) -> list[str]:
    """One sha256 per copy over its training outputs (reports include the thread count and software)."""
    digests = []
    for project in projects:
        digest = hashlib.sha256()
        for rel in OUTPUTS:
            digest.update(rel.encode() + b"\0" + (project / rel).read_bytes())
        digests.append(digest.hexdigest())
    return digests


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def concurrent_train_benchmark(root: Path, workdir: Path, run: dict = TINY_RUN, spinning: bool = True
                                ) -> dict[str, Any]:
    """The ``concurrent_train`` row: the train stage twice back to back, twice side by side, and (with
    ``spinning``) twice side by side with libgomp's default spin; times, ratios, and whether every run
    wrote the same bytes. The unit test leaves the spinning pair out: it changes times, not numbers."""
    projects, env = prepare_projects(root, workdir, run)
    back_to_back = _timed(lambda: [_wait([_stage(p, "train", env)]) for p in projects])
    digests = output_digests(projects)
    together = _timed(lambda: _wait([_stage(p, "train", env) for p in projects]))
    digests += output_digests(projects)
    row = {"cores": available_cores(), "back_to_back_s": back_to_back, "side_by_side_s": together,
           "ratio": together / back_to_back}
    if spinning:
        # libgomp's default spin (300,000 rounds), which wins over the passive policy the stage sets
        spin_env = {**env, "GOMP_SPINCOUNT": "300000"}
        spun = _timed(lambda: _wait([_stage(p, "train", spin_env) for p in projects]))
        digests += output_digests(projects)
        row.update(side_by_side_spinning_s=spun, ratio_spinning=spun / back_to_back)
    threads = yaml.safe_load((projects[0] / "params.yaml").read_text()).get("runtime", {}).get("threads")
    return {**row, "threads": threads, "target_ratio": TARGET_RATIO, "identical": len(set(digests)) == 1,
            "outputs_sha256": digests[0]}
