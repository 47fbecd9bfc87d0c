"""End-to-end fixtures: a throw-away git+DVC copy of this project with tiny params.

The copy holds exactly what a clone would (tracked and untracked-but-not-ignored
files), so the real `dvc repro` / `dvc exp run` run against it as a user would.
One such project runs `dvc repro` once per test session (tests/e2e/conftest.py);
tests that need a pipeline that already ran start from a copy of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]

# Small enough for a few CI minutes, large enough that every stage does real work.
TINY_PARAMS = {
    "synthetic": {"images": 160, "classes": 4},
    "scene_prior": {"epochs": 2, "batch_size": 32, "patience": 2},
    "train": {"epochs": 2, "global_batch_size": 32, "num_workers": 0},
    "evaluate": {"batch_size": 64},
    "analyze": {"max_points": 120, "perplexity": 5.0},
    # one thread per stage process: pytest-xdist runs two test workers on the cores
    "runtime": {"threads": 1},
}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "pir-tests", "GIT_AUTHOR_EMAIL": "tests@localhost",
    "GIT_COMMITTER_NAME": "pir-tests", "GIT_COMMITTER_EMAIL": "tests@localhost",
}


def run(cmd: list[str], cwd: Path, timeout: float = 900, check: bool = True, env: dict[str, str] | None = None,
        **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, **GIT_ENV, "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("DVC_ROOT", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def make_project(dest: Path) -> Path:
    """Copy the project's clone-visible files to ``dest``, apply tiny params, commit."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = PROJECT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # A lock from the real params would only confuse the tiny run.
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params = merge(params, TINY_PARAMS)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "tiny project"], dest)
    return dest


def copy_project(source: Path, dest: Path) -> Path:
    """A copy of a project that already ran: git history, DVC cache and run cache, data/, reports and
    its MLflow store (whose artifact locations are moved to the copy). DVC's temporary state (queue,
    locks) is left behind."""
    shutil.copytree(source, dest, symlinks=True, ignore=lambda folder, names: [
        n for n in names if n == "tmp" and Path(folder).name == ".dvc"])
    store = dest / "mlflow.db"
    if store.exists():
        old, new = (Path(source).resolve() / "mlartifacts").as_uri(), (Path(dest).resolve() / "mlartifacts").as_uri()
        with contextlib.closing(sqlite3.connect(store)) as db, db:
            db.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", (old, new))
            db.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (old, new))
    return dest
