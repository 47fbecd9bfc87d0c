"""Fixtures every test gets."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

# Per-user state (pir_tools.known_indexes: the indexes built on this machine) goes to a throw-away
# folder, never the real home; set at import so subprocesses the tests start (`dvc repro`, `pir serve`)
# inherit it. One folder per test process, removed when it exits.
os.environ["PIR_STATE_HOME"] = tempfile.mkdtemp(prefix="pir-test-state-")
atexit.register(shutil.rmtree, os.environ["PIR_STATE_HOME"], ignore_errors=True)

# The files that take minutes, in the order the two xdist workers should start them (pyproject's
# --no-loadscope-reorder hands files out in collection order): longest first, so no worker ends up
# running a long file alone at the end. The first one builds the e2e tests' shared `dvc repro` while the
# other worker runs files that do not need it; test_pipeline.py waits for that run, so it comes later.
LONG_FILES_FIRST = ("tests/e2e/test_exp_workflow.py", "tests/e2e/test_concurrency.py", "tests/e2e/test_ablation.py",
                    "tests/test_bench.py",
                    "tests/test_params.py", "tests/e2e/test_pipeline.py", "tests/test_mlflow_ui.py",
                    "tests/test_tracking.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))   # stable: the rest in order


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread per test (the machine's cores are shared, and results stay reproducible);
    the previous count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
