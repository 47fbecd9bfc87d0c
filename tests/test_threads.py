"""The thread budget: each stage process takes its share of the cores (pir.threads)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pir import threads
from pir.params import PipelineConfig


@pytest.mark.parametrize("workers,expected", [(1, 8), (2, 4), (3, 2), (8, 1), (20, 1)])
def test_auto_gives_each_worker_its_share_of_the_cores(workers, expected):
    assert threads.budget("auto", cores=8, workers=workers, env={}) == expected


def test_loader_workers_come_out_of_the_same_budget():
    assert threads.budget("auto", cores=8, workers=2, loader_workers=3, env={}) == 1
    assert threads.budget("auto", cores=8, workers=1, loader_workers=3, env={}) == 5


def test_an_explicit_value_or_omp_num_threads_wins():
    assert threads.budget(3, cores=8, workers=4, env={}) == 3
    assert threads.budget("auto", cores=8, workers=4, env={"OMP_NUM_THREADS": "6"}) == 6
    assert threads.budget(3, cores=8, workers=4, env={"OMP_NUM_THREADS": "6"}) == 6
    assert threads.budget("auto", cores=8, workers=4, env={"OMP_NUM_THREADS": ""}) == 2


def test_runtime_threads_param():
    assert PipelineConfig.from_params({}).runtime.threads == "auto"
    assert PipelineConfig.from_params({"runtime": {"threads": "4"}}).runtime.threads == 4   # as -S writes it
    with pytest.raises(ValueError, match="runtime.threads = 'many': auto or a number >= 1"):
        PipelineConfig.from_params({"runtime": {"threads": "many"}})


def test_registry_counts_live_stage_processes_and_forgets_dead_ones(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        host_prefix = threads.Registry(tmp_path).entry.name.rsplit("-", 1)[0]
        (tmp_path / f"{host_prefix}-{sleeper.pid}").touch()                   # a live stage beside us
        (tmp_path / f"{host_prefix}-{finished.stdout.strip()}").touch()       # a killed one left its file
        (tmp_path / f"other-host-{sleeper.pid}").touch()                      # another machine's
        with threads.Registry(tmp_path) as registry:
            assert registry.count() == 2
            assert not (tmp_path / f"{host_prefix}-{finished.stdout.strip()}").exists()
        assert not registry.entry.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_budget_resizes_torch_threads_when_a_run_starts_beside_it(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with threads.ThreadBudget("auto", tmp_path) as budget:
            assert torch.get_num_threads() == 4
            (tmp_path / f"{budget.registry.entry.name.rsplit('-', 1)[0]}-{sleeper.pid}").touch()
            threads.refresh()
            assert torch.get_num_threads() == 2
        threads.refresh()                      # no active budget: nothing changes
        assert torch.get_num_threads() == 2
    finally:
        sleeper.kill()
        sleeper.wait()
