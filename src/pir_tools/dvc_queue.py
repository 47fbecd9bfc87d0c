"""Queued DVC experiments, shared by the tools that run a batch of them (ablation, baselines).

Each experiment is `dvc exp run --queue -n <name> -S ...`; `dvc queue start -j N` runs the queue,
each in a temporary clone, every run landing in MLflow under its experiment's name, and
`dvc queue status` says when every task is done. Finished results come back from `dvc exp show --json`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from pir.evaluation.metrics import METRIC_KEYS
from pir.pipeline.tracking import ensure_experiment
from pir_tools.experiments import set_param_args


def dvc(root: Path, *args: str, capture: bool = False) -> str:
    """Run ``dvc args`` in ``root``; a failure exits with one line (the last line of dvc's stderr)."""
    proc = subprocess.run(["dvc", *args], cwd=root, text=True, capture_output=capture)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if capture and proc.stderr.strip() else ""
        sys.exit(f"dvc {' '.join(args)} failed with exit code {proc.returncode}" + (f": {last}" if last else ""))
    return proc.stdout if capture else ""


def queue_experiment(root: Path, name: str, overrides: Mapping[str, object], extra: list[str]) -> None:
    """Queue experiment ``name`` with ``overrides`` (params keys -> values) and raw ``-S`` strings ``extra``."""
    print(f"queueing {name}", flush=True)
    dvc(root, "exp", "run", "--queue", "-n", name, *set_param_args(overrides), *[a for s in extra for a in ("-S", s)])


# Seconds between `dvc queue status` calls: each is a process start that takes CPU from the experiments.
POLL_S = 5.0


def run_queue(root: Path, jobs: int, poll_s: float = POLL_S) -> None:
    """Run every queued experiment, ``jobs`` at a time, and return when none is queued or running.

    Not `dvc exp run --run-all`: with -j 2 a worker's monitor can decide the queue is empty while
    the worker still runs a task, and that worker then never exits, so `--run-all` waits forever
    after every experiment succeeded (seen here with DVC 3.67; treeverse/dvc#10398). Polling the
    tasks' states and stopping the workers afterwards does not depend on them exiting. The MLflow
    store is created first: concurrent first use races."""
    ensure_experiment(root)
    dvc(root, "queue", "start", "-j", str(jobs))
    while True:
        status = dvc(root, "queue", "status", capture=True)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(poll_s)
    dvc(root, "queue", "stop", capture=True)
    failed = re.findall(r"^\S+\s+(\S+)\s+.*\bFailed\b", status, re.M)   # this batch's and earlier ones
    if failed:
        print(f"dvc queue: failed experiment(s) in the queue: {', '.join(failed)} "
              f"(`dvc queue logs {failed[0]}` says why)", file=sys.stderr)


def finished_metrics(root: Path, prefix: str) -> dict[str, dict[str, float]]:
    """Experiment name -> reports/metrics.json of every finished experiment named <prefix>-*."""
    shown = json.loads(dvc(root, "exp", "show", "--json", "--no-fetch", capture=True) or "[]")
    found: dict[str, dict[str, float]] = {}
    for baseline in shown:
        for group in baseline.get("experiments") or []:
            for rev in group.get("revs") or []:
                name = rev.get("name") or ""
                metrics = ((rev.get("data") or {}).get("metrics") or {}).get("reports/metrics.json", {}).get("data")
                if name.startswith(prefix + "-") and metrics and all(k in metrics for k in METRIC_KEYS):
                    found[name] = metrics
    return found
