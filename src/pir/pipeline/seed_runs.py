"""One MLflow parent run per configuration, with that configuration's seed runs nested under it.

A trained model's run carries ``pir_config_key``: the hash of everything that decided its weights
except the seed. Once a configuration has test metrics under two or more seeds (any sweep over
``seed``: the ablation command, ``dvc exp run -S seed=...``, the queue), evaluate groups them: a
parent run named ``<experiment name without -s<seed>> · seeds`` (pir.pipeline.tracking's naming) holds the shared params, the mean
of each test metric under its own name (so the runs table lines its column up with the children's),
``<metric>_std``, the 95% interval ``<metric>_ci95_low/high`` and ``n_seeds``. The children point
at it through MLflow's ``mlflow.parentRunId`` tag, which the UI nests (docs/evaluation.md, "Seeds as a group").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from pir import files

from pir.pipeline import tracking
from pir.evaluation.metrics import METRIC_KEYS
from pir.evaluation.seeds import summarise_seeds

CONFIG_KEY_TAG = "pir_config_key"
PARENT_TAG = "pir_seed_group"          # on a parent: the config key it groups
SEEDS_TAG = "pir_seeds"
NESTED_UNDER = "mlflow.parentRunId"    # MLflow's own nesting tag
GROUPED_METRICS = (*(f"test_{k}" for k in METRIC_KEYS), "test_dedup_r_mean", "test_pairwise_r_mean")
_SEED_SUFFIX = re.compile(r"-s\d+$")


def config_key(params: Mapping[str, Any]) -> str:
    """16 hex chars for a run's params without its seed: the runs that differ only in seed share it."""
    blob = json.dumps({k: v for k, v in params.items() if k != "seed"}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _search(root: Path, filter_string: str) -> list:
    experiment_id = tracking.ensure_experiment(root)
    if experiment_id is None:
        return []
    ok, runs = tracking._retry("searching runs", lambda: tracking._client(root).search_runs(
        [experiment_id], filter_string=filter_string, order_by=["attributes.start_time ASC"]))
    return list(runs) if ok else []


def parent_label(children: list) -> str:
    """``ablation-full`` from children of experiments ``ablation-full-s0``, ``-s1``, ...; else ``config <key>``."""
    names = sorted({_SEED_SUFFIX.sub("", c.data.tags.get("dvc_exp_name", "")) for c in children} - {"", "workspace"})
    key = children[0].data.tags.get(CONFIG_KEY_TAG, "")[:8]
    return names[0] if len(names) == 1 else f"config {key}"


def _shared_params(children: list) -> dict[str, str]:
    """Params equal in every child, the seed left out (it is what varies)."""
    first = dict(children[0].data.params)
    return {k: v for k, v in first.items()
            if k != "seed" and all(c.data.params.get(k) == v for c in children[1:])}


def _group_metrics(children: list) -> dict[str, float]:
    metrics: dict[str, float] = {"n_seeds": float(len(children))}
    for name in GROUPED_METRICS:
        values = [c.data.metrics[name] for c in children if name in c.data.metrics]
        if not values:
            continue
        low, high = (children[0].data.metrics.get(f"test_ci95_{name[5:]}_low"),
                     children[0].data.metrics.get(f"test_ci95_{name[5:]}_high"))
        lone_interval = (low, high) if low is not None and high is not None else None
        summary = summarise_seeds(values, bootstrap=lone_interval)
        metrics.update({name: summary.mean, f"{name}_std": summary.std,
                        f"{name}_ci95_low": summary.interval[0], f"{name}_ci95_high": summary.interval[1]})
    return metrics


def _one_run_per_seed(runs: list) -> list:
    """The newest evaluated run of each seed: a rerun of the same seed is the same sample, not another."""
    newest = {}
    for run in runs:  # searched oldest first
        newest[run.data.params.get("seed", run.info.run_id)] = run
    return list(newest.values())


def group_seed_runs(root: str | os.PathLike, key: str, min_runs: int = 2) -> str | None:
    """Create or refresh the parent run of configuration ``key``; its id, or None below ``min_runs``
    evaluated seed runs. Idempotent: a later seed joins the same parent and updates its numbers."""
    root = Path(root).resolve()
    # Parallel queue workers finish evaluate together: one of them at a time creates a group's parent.
    with files.flocked(root / "mlflow.db-groups.lock"):
        children = _one_run_per_seed([r for r in _search(root, f"tags.{CONFIG_KEY_TAG} = '{key}'")
                                      if "test_r_mean" in r.data.metrics and PARENT_TAG not in r.data.tags])
        if len(children) < max(1, min_runs):
            return None
        parents = _search(root, f"tags.{PARENT_TAG} = '{key}'")
        if parents:
            parent_id = parents[0].info.run_id
        else:
            name = tracking.run_name_for("seeds", root, label=parent_label(children))
            ok, run = tracking._retry("creating the seed-group run", lambda: tracking._client(root).create_run(
                tracking.ensure_experiment(root), run_name=name))
            if not ok:
                return None
            parent_id = run.info.run_id
        parent = tracking.Tracker(root, parent_id)
        seeds = sorted({c.data.params.get("seed", "?") for c in children}, key=lambda s: (len(s), s))
        parent.set_tags({PARENT_TAG: key, SEEDS_TAG: ",".join(seeds), "dvc_stage": "seeds",
                         "dvc_exp_name": parent_label(children)})
        parent.log_params(_shared_params(children))
        parent.log_metrics(_group_metrics(children))
        for child in children:
            if child.data.tags.get(NESTED_UNDER) != parent_id:
                tracking.Tracker(root, child.info.run_id).set_tags({NESTED_UNDER: parent_id})
        tracking._retry("closing the seed-group run", lambda: tracking._client(root).set_terminated(parent_id, "FINISHED"))
        return parent_id


def group_runs_of(root: str | os.PathLike, run_id: str | None, min_runs: int = 2) -> str | None:
    """The parent of ``run_id``'s configuration (see group_seed_runs); None for runs without a config key."""
    if not run_id:
        return None
    ok, run = tracking._retry("reading run tags", lambda: tracking._client(Path(root)).get_run(run_id))
    key = run.data.tags.get(CONFIG_KEY_TAG) if ok else None
    return group_seed_runs(root, key, min_runs) if key else None


def group_experiments(root: str | os.PathLike, experiment_names: list[str]) -> list[str]:
    """Parent run ids for the configurations of the named DVC experiments (one seed is enough:
    the ablation command gives every variant its parent)."""
    keys = []
    for name in experiment_names:
        for run in _search(Path(root).resolve(), f"tags.dvc_exp_name = '{name}'"):
            key = run.data.tags.get(CONFIG_KEY_TAG)
            if key and key not in keys:
                keys.append(key)
    return [parent for key in keys if (parent := group_seed_runs(root, key, min_runs=1))]


def logged_interval(root: str | os.PathLike, experiment_name: str, metric: str = "r_mean") -> tuple[float, float] | None:
    """The bootstrap interval evaluate logged for the named DVC experiment's model (`dvc exp show`
    drops the list-valued ``ci95`` of metrics.json, MLflow has it as two numbers)."""
    for run in reversed(_search(Path(root).resolve(), f"tags.dvc_exp_name = '{experiment_name}'")):
        low, high = (run.data.metrics.get(f"test_ci95_{metric}_{end}") for end in ("low", "high"))
        if low is not None and high is not None:
            return low, high
    return None
