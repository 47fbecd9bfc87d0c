"""The one pipeline run end-to-end tests share: `dvc repro` of a tiny project, once per session.

Every e2e test is in the xdist group "pipeline" (pyproject: `--dist loadgroup`), so they all run in
one pytest-xdist worker and find this run done; tests that change the project work on a copy
(e2e_project.copy_project).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.e2e_project import make_project, run


@pytest.fixture(scope="session")
def repro(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny project after `dvc repro`, run with OMP_NUM_THREADS set to a count the params do not name
    (runtime.threads decides, and each report records what was used)."""
    project = make_project(tmp_path_factory.mktemp("pipeline"))
    return project, run(["dvc", "repro"], project, env={"OMP_NUM_THREADS": "3"})
