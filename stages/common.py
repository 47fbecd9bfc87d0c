"""What every stage script shares: the repo root, params.yaml -> typed configs, seeding.

Stage scripts own paths and params; the library in ``src/pir`` only sees the
dataclasses built here.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pir.params import PipelineConfig, load_params
from pir.paths import Paths
from pir.device import retain_freed_memory

# Stage processes are short-lived and allocate the same large batches every step: keeping freed
# memory spares a page fault per 4 KiB of every batch (see pir.device).
retain_freed_memory()

ROOT = Path(__file__).resolve().parent.parent
PATHS = Paths(ROOT)   # every artifact path, written once (pir.paths)


def repo_root() -> Path:
    """The real repository root, also inside a queued experiment's temp clone (DVC sets DVC_ROOT)."""
    return Path(os.environ.get("DVC_ROOT") or ROOT).resolve()


# One typed, validated view of params.yaml with the recipe applied (pir.params).
Configs = PipelineConfig


def configs(path: Path | None = None) -> PipelineConfig:
    """params.yaml resolved and checked before any work: a bad value ends the stage in one line."""
    try:
        cfgs = PipelineConfig.from_params(load_params(path or ROOT / "params.yaml"))
    except ValueError as exc:
        sys.exit(str(exc))
    problems = cfgs.problems()
    if problems:
        sys.exit(f"params.yaml: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return cfgs


def run_stage(name: str, body: Callable[[Configs], None]) -> None:
    """Entry point of a stage script: params -> seed -> body; bad input ends in one line naming the stage."""
    cfgs = configs()
    seed_everything(cfgs.seed)
    try:
        body(cfgs)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"{name}: {exc}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
