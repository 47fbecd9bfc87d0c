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


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread per test (the machine's cores are shared, and results stay reproducible);
    the previous count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
