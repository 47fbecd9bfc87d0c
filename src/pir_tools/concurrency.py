"""Bench row ``concurrent_train``: two tiny training stages side by side, with and without the
thread budget (pir.threads), against running the same two back to back.

Two copies of a tiny project are prepared (fetch and scene_prior, untimed). Then the real stage
script ``stages/train.py`` runs in both copies: one after the other, at the same time with
``runtime.threads: auto``, and at the same time with every process taking all cores (what every
stage did before the budget). Both copies name the same ``DVC_ROOT``, as the workers of
``dvc queue start -j 2`` do, so they find each other in the same registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from pir.params import merge_set
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
# Bars the issue set: concurrent with the budget within 1.15x of back to back.
TARGET_RATIO = 1.15


def _stage(project: Path, stage: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(project / "stages" / f"{stage}.py")], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"bench stage failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")


def _set_threads(projects: list[Path], threads: int | str) -> None:
    for project in projects:
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["runtime"] = {"threads": threads}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


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


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def concurrent_train_benchmark(root: Path, workdir: Path, run: dict = TINY_RUN) -> dict[str, Any]:
    projects, env = prepare_projects(root, workdir, run)
    _set_threads(projects, "auto")
    back_to_back = _timed(lambda: [_wait([_stage(p, "train", env)]) for p in projects])
    together = _timed(lambda: _wait([_stage(p, "train", env) for p in projects]))
    _set_threads(projects, available_cores())
    unbudgeted = _timed(lambda: _wait([_stage(p, "train", env) for p in projects]))
    return {"cores": available_cores(), "back_to_back_s": back_to_back, "concurrent_budget_s": together,
            "concurrent_all_cores_s": unbudgeted, "ratio_budget": together / back_to_back,
            "ratio_all_cores": unbudgeted / back_to_back, "target_ratio": TARGET_RATIO}
