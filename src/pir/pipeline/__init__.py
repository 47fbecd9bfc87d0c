"""The pipeline's stages as library functions, and the one entry point the stage scripts call.

Each module here holds one DVC stage as ``run(cfgs, paths)``: typed configs in (pir.params),
every file it reads or writes from ``paths`` (pir.paths). dvc.yaml calls stages/<name>.py, and
each of those is one call to :func:`main` with its stage module, which handles params, seeding and errors the same
way for every stage (docs/design.md, "Where things live").
"""

from __future__ import annotations

import importlib
import os
import random
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from pir.device import retain_freed_memory
from pir.params import PipelineConfig, load_params
from pir.paths import Paths

STAGES = ("fetch", "scene_prior", "train", "evaluate", "analyze")


def load_configs(params_file: Path) -> PipelineConfig:
    """params.yaml resolved (recipe applied) and checked before any work; ValueError names the problem."""
    cfgs = PipelineConfig.from_params(load_params(params_file))
    problems = cfgs.problems()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{params_file.name}: {problems[0]}{more}")
    return cfgs


def seed_everything(seed: int) -> None:
    """The one ``seed`` drives Python, NumPy and torch (loaders derive their own streams from it)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_stage(name: str, cfgs: PipelineConfig, paths: Paths) -> None:
    """Seed, then run stage ``name``; errors propagate (tests call this directly)."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    stage = importlib.import_module(f"pir.pipeline.{name}")
    seed_everything(cfgs.seed)
    stage.run(cfgs, paths)


# What a user can cause (bad params, a missing or unreadable file, a failed download): one line, no
# traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError)


def main(stage: ModuleType, root: Path) -> None:
    """Entry point of stages/<name>.py: params.yaml of ``root`` -> ``stage.run``; user errors end in one line.

    The script passes the stage module itself, so its imports are visible to the DVC deps check.

    Inside a queued experiment DVC runs the stage in a temporary clone and names the real repository
    in ``DVC_ROOT``: the MLflow store and downloads live there, shared by every clone.
    """
    # Stage processes are short-lived and allocate the same large batches every step: keeping freed
    # memory spares a page fault per 4 KiB of every batch (see pir.device).
    retain_freed_memory()
    name = stage.__name__.rsplit(".", 1)[-1]
    root = Path(root).resolve()
    repo = Path(os.environ.get("DVC_ROOT") or root).resolve()
    try:
        run_stage(name, load_configs(root / "params.yaml"), Paths(root, repo))
    except USER_ERRORS as exc:
        for detail in getattr(exc, "problems", ()):   # every import problem (the message lists a few)
            print(f"  - {detail}", file=sys.stderr)
        sys.exit(f"{name}: {exc}")
