"""The thread budget of a stage process: its share of the cores, so parallel runs do not oversubscribe.

Each stage process takes every core for its intra-op threads by default. Two of them on the same
cores (``dvc queue start -j 2``, or a ``dvc repro`` beside another run) then spin-wait for cores the
other holds, and run tens of times slower, not two. The budget is

    intra-op threads = max(1, cores // concurrent stage processes - its loader workers)

and the count of concurrent stage processes comes from a registry of small files, one per live stage
process, under the real repository's ``.dvc/tmp`` (DVC does not tell a queued stage how many workers
run beside it). Processes re-count at every epoch and every few steps (:func:`refresh`), so two runs
started at the same moment settle on half the cores each within a few steps. ``OMP_NUM_THREADS`` or
an explicit ``runtime.threads`` always wins.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pir import processes

AUTO = "auto"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:       # not on Linux
        return os.cpu_count() or 1


def budget(setting: int | str, cores: int, workers: int, loader_workers: int = 0,
           env: dict[str, str] | None = None) -> int:
    """Intra-op threads for one of ``workers`` concurrent stage processes on ``cores`` cores."""
    from_env = (os.environ if env is None else env).get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        return int(from_env)
    if setting != AUTO:
        return int(setting)
    return max(1, cores // max(1, workers) - loader_workers)


def resolve_workers(num_workers: int, device: torch.device | str) -> int:
    """DataLoader worker processes; ``num_workers < 0`` = auto: none on CPU (augmentation costs ~1 ms a
    sample, and worker processes would fight the model's threads for the same cores), up to 8 beside
    a GPU (within the process's cores)."""
    if num_workers >= 0:
        return num_workers
    return 0 if torch.device(device).type == "cpu" else max(1, min(8, available_cores() - 1))


class Registry:
    """One file per live stage process in ``folder``; files of dead processes are removed when counted."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.entry = self.folder / f"{processes.this_host()}-{os.getpid()}"

    def __enter__(self) -> "Registry":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.entry.touch()
        return self

    def __exit__(self, *exc) -> None:
        self.entry.unlink(missing_ok=True)

    def count(self) -> int:
        """Live stage processes on this host, this one included."""
        host = processes.this_host()
        live = 0
        for path in self.folder.glob(f"{host}-*"):
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and processes.alive(int(pid)):
                live += 1
            else:
                path.unlink(missing_ok=True)
        return max(1, live)


class ThreadBudget:
    """Holds this process's registration and applies its budget with torch.set_num_threads."""

    def __init__(self, setting: int | str, registry_folder: Path, loader_workers: int = 0):
        self.setting = setting
        self.registry = Registry(registry_folder)
        self.loader_workers = loader_workers
        self.threads = 0

    def __enter__(self) -> "ThreadBudget":
        global _active
        self.registry.__enter__()
        _active = self
        self.apply()
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        self.registry.__exit__(*exc)

    def apply(self) -> int:
        threads = budget(self.setting, available_cores(), self.registry.count(), self.loader_workers)
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
        return threads


_active: ThreadBudget | None = None


def refresh() -> None:
    """Re-count the concurrent stage processes and resize the thread pool (cheap: a directory listing).

    Training loops call this every epoch and every few steps; without an active budget it does nothing.
    """
    if _active is not None:
        _active.apply()
