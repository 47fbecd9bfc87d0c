"""The one pipeline run end-to-end tests share: `dvc repro` of a tiny project, once per test session.

pytest-xdist runs test files in two worker processes (pyproject: `-n 2 --dist loadfile`); whichever
worker first needs the run makes it, under a file lock in the session's shared temp folder, and the
other waits for it. The shared project is read only: tests that change a project work on a copy
(e2e_project.copy_project).
"""

from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.e2e_project import make_project, run


@pytest.fixture(scope="session")
def repro(tmp_path_factory, worker_id) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny project after `dvc repro`, run with OMP_NUM_THREADS set to a count the params do not name
    (runtime.threads decides, and each report records what was used)."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent        # the xdist workers' common folder
    project, output = shared / "e2e-pipeline", shared / "e2e-pipeline.json"
    with open(shared / "e2e-pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                            # released when the file closes
        if not output.exists():
            project.mkdir()
            proc = run(["dvc", "repro"], make_project(project), env={"OMP_NUM_THREADS": "3"})
            output.write_text(json.dumps({"stdout": proc.stdout, "stderr": proc.stderr}))
        saved = json.loads(output.read_text())
    return project, subprocess.CompletedProcess(["dvc", "repro"], 0, saved["stdout"], saved["stderr"])
