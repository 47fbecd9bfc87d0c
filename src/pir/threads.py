"""The thread count of a stage process: a fixed number, because it changes the numbers.

A float sum split over threads adds its parts in another order, so the same params trained with 1
and with 2 intra-op threads end in different weights (the default run: scene prior test top-1 89.5
against 89.0, test r_mean 25.40 against 29.18). The count is therefore a param, ``runtime.threads``,
listed in the params of every stage that computes with floats (dvc.yaml), recorded in each stage's
report, and never derived from the machine's load: a run gives the same bytes alone, beside a
second ``dvc repro`` or in ``dvc queue start -j N`` (docs/workflows.md, "Reproducibility contract").

Sharing the cores without changing the count: idle OpenMP threads spin only briefly, then sleep
(``pir.pipeline.entry.OPENMP_WAIT``, set before torch loads). Threads of two processes that spin for
long wait for cores the other holds and run many times slower; sleeping ones give the core up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # torch is imported where it is used: available_cores serves the torch-free ONNX path
    import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:       # not on Linux
        return os.cpu_count() or 1


def fix_threads(threads: int) -> None:
    """Every thread pool of the process at ``threads``: torch's intra-op pool, and the BLAS and OpenMP
    pools numpy, scipy and scikit-learn use (their sums split over threads too). Overrides
    ``OMP_NUM_THREADS``: the param, not the environment, decides what a run computes."""
    import torch   # here, not at the top: available_cores serves the ONNX indexing path, which runs without torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def resolve_workers(num_workers: int, device: torch.device | str) -> int:
    """DataLoader worker processes; ``num_workers < 0`` = auto: none on CPU (augmentation costs ~1 ms a
    sample, and worker processes would fight the model's threads for the same cores), up to 8 beside
    a GPU (within the process's cores). Workers run one thread each, so their count never changes the
    numbers (pir.data.loader)."""
    import torch

    if num_workers >= 0:
        return num_workers
    return 0 if torch.device(device).type == "cpu" else max(1, min(8, available_cores() - 1))
