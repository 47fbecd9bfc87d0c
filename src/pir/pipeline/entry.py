"""The one entry point every stage script calls (:func:`main`): params, output folders, seeding, the
thread count and errors handled the same way for every stage (docs/design.md, "Where things live" and
"Failures"). Import it before anything that loads torch: it sets OpenMP's wait policy first."""

from __future__ import annotations

import importlib
import os
import random
import signal
import sys
import tempfile
from pathlib import Path
from types import ModuleType

# OpenMP's default lets an idle thread spin for ~300,000 rounds: two processes on the same cores then
# wait for cores the other holds (a tiny train stage pair: 48 s against 16 s back to back). PASSIVE
# sleeps at once (portable: libgomp and LLVM's libomp read it), but waking costs every small parallel
# region (the default train stage alone: 117 s against 87 s); libgomp's GOMP_SPINCOUNT, which wins
# over the policy there, spins a few microseconds first. Measured in docs/design.md, "Parallel
# runs". A value the user set is kept. Never changes the numbers, only the waiting.
OPENMP_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}

# Before torch loads its OpenMP runtime: an idle thread spins briefly, then sleeps, so stage processes
# that share the cores keep their fixed thread counts without slowing each other down (pir.threads).
for _name, _value in OPENMP_WAIT.items():
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pir.device import retain_freed_memory
from pir.pipeline.params import PipelineConfig, load_params
from pir.pipeline.paths import Paths
from pir.threads import fix_threads

STAGES = ("fetch", "audit", "scene_prior", "train", "evaluate", "analyze", "index")


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


def check_writable(folders: tuple[Path, ...]) -> None:
    """Create each output folder and write a scratch file there: a read-only or blocked output folder
    then stops the stage before it computes anything, not after hours of work."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise PermissionError(f"{folder}: cannot write the stage's outputs there "
                                  f"({exc.strerror or type(exc).__name__})") from None


def run_stage(name: str, cfgs: PipelineConfig, paths: Paths) -> None:
    """Check the output folders, seed, then run stage ``name``; errors propagate (tests call this)."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    stage = importlib.import_module(f"pir.pipeline.{name}")
    # Under torchrun only global rank 0 (RANK) writes: the other ranks' nodes may not share this folder
    # (docs/scaling.md), so they create nothing in it, not even the output folders.
    if int(os.environ.get("RANK", "0")) == 0:
        check_writable(paths.stage_folders(name))
    seed_everything(cfgs.seed)
    # A fixed count whatever else runs: the thread count changes the numbers (pir.threads).
    fix_threads(cfgs.runtime.threads)
    stage.run(cfgs, paths)


# What a user can cause: bad params or data, a missing, unreadable or unwritable file, a failed download,
# a diverged loss (the trainer's message carries the hint), a batch too big for the GPU. One line, no
# traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, torch.OutOfMemoryError)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def unwind_on_sigterm() -> None:
    """``kill`` and `dvc queue kill` send SIGTERM: unwind like Ctrl-C, so the MLflow run is closed as
    KILLED and temp files are removed, instead of dying mid-write."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def main(stage: ModuleType, root: Path) -> None:
    """Entry point of stages/<name>.py: params.yaml of ``root`` -> ``stage.run``; user errors end in one line.

    The script passes the stage module itself, so its imports are visible to the DVC deps check.

    Inside a queued experiment DVC runs the stage in a temporary clone and names the real repository
    in ``DVC_ROOT``: the MLflow store and downloads live there, shared by every clone.
    """
    # Stage processes are short-lived and allocate the same large batches every step: keeping freed
    # memory spares a page fault per 4 KiB of every batch (see pir.device).
    retain_freed_memory()
    unwind_on_sigterm()
    name = stage.__name__.rsplit(".", 1)[-1]
    root = Path(root).resolve()
    repo = Path(os.environ.get("DVC_ROOT") or root).resolve()
    try:
        run_stage(name, load_configs(root / "params.yaml"), Paths(root, repo))
    except USER_ERRORS as exc:
        for detail in getattr(exc, "problems", ()):   # every import problem (the message lists a few)
            print(f"  - {detail}", file=sys.stderr)
        if isinstance(exc, torch.OutOfMemoryError):
            exc = "out of GPU memory: lower train.global_batch_size (or evaluate.batch_size)"
        sys.exit(f"{name}: {exc}")
    except KeyboardInterrupt:
        sys.exit(f"{name}: interrupted")
