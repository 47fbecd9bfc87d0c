"""The thread count of a stage process is a param: fixed, applied to every pool, recorded (pir.threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from pir import threads
from pir.device import numerics_record
from pir.pipeline.params import PipelineConfig


def test_runtime_threads_param_is_a_fixed_number():
    assert PipelineConfig.from_params({}).runtime.threads == 2
    assert PipelineConfig.from_params({"runtime": {"threads": "4"}}).runtime.threads == 4   # as -S writes it
    for bad in ("auto", "many", 1.5):        # "auto" was the load-following count of earlier versions
        with pytest.raises(ValueError, match=r"runtime.threads = .*: expected an integer"):
            PipelineConfig.from_params({"runtime": {"threads": bad}})
    with pytest.raises(ValueError, match=r"runtime.threads = 0: a number >= 1 \(fixed"):
        PipelineConfig.from_params({"runtime": {"threads": 0}})


def test_fix_threads_sets_torch_and_the_blas_pools():
    torch_before = torch.get_num_threads()
    try:
        threads.fix_threads(3)
        assert torch.get_num_threads() == 3
        np.ones((2, 2)) @ np.ones((2, 2))           # numpy's BLAS is loaded
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 3 for pool in blas)
    finally:
        threads.fix_threads(torch_before)


def test_stage_processes_let_idle_threads_sleep_and_a_users_setting_wins():
    """pir.pipeline sets the OpenMP wait before torch loads OpenMP; values the user set are kept."""
    probe = "import pir.pipeline.entry, os; print(os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          check=True).stdout.split() == ["PASSIVE", "3000"]
    assert subprocess.run([sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "7"},
                          capture_output=True, text=True, check=True).stdout.split() == ["ACTIVE", "7"]


def test_numerics_record_names_threads_software_and_processor():
    record = numerics_record("cpu")
    assert record["threads"] == torch.get_num_threads()
    assert record["torch"] == torch.__version__ and record["numpy"] == np.__version__
    assert record["cpu"] and record["device"] == "cpu"
    assert record["gpu"] is None and record["cuda"] is None
    json.dumps(record)                                     # goes into JSON reports as is


def test_auto_workers_none_on_cpu():
    assert threads.resolve_workers(-1, "cpu") == 0
    assert threads.resolve_workers(3, "cpu") == 3
