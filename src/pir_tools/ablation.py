"""Reproduce the paper's ablation study as queued DVC experiments, then tabulate it.

    pir ablation                      # 5 variants x seed 0, 2 at a time
    pir ablation --seeds 0 1 2 -j 2   # mean ± std over seeds
    pir ablation -S train.epochs=2    # extra overrides for every variant
    pir ablation --collect-only       # only rebuild the table from finished experiments

Each variant x seed is `dvc exp run --queue -n <prefix>-<variant>-s<seed> -S ...`;
`dvc queue start -j N` runs the queue (pir_tools.dvc_queue; each in a temporary clone, MLflow
runs tagged with the experiment name). The table comes from `dvc exp show --json`:
reports/ablation.md and reports/figures/ablation.png.
"""

from __future__ import annotations

import argparse
import sys

from pathlib import Path

from pir import files
from pir.pipeline.paths import Paths
from pir.pipeline.seed_runs import group_experiments, logged_interval
from pir_tools.dvc_queue import finished_metrics, queue_experiment, run_queue
from pir_tools.experiments import ABLATION, Variant, ablation_figure, experiment_name, markdown_table, summarise
from pir_tools.project import project_root


def chosen(names: list[str] | None) -> list[Variant]:
    known = {v.name: v for v in ABLATION}
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [v for v in ABLATION if not names or v.name in names]


def queue(root: Path, prefix: str, variants: list[Variant], seeds: list[int], extra: list[str]) -> None:
    for variant in variants:
        for seed in seeds:
            queue_experiment(root, experiment_name(prefix, variant, seed), {**variant.overrides, "seed": seed}, extra)


def collect(root: Path, prefix: str, variants: list[Variant], seeds: list[int]) -> None:
    metrics = finished_metrics(root, prefix)
    results: dict[str, list[dict[str, float]]] = {}
    used_seeds: dict[str, list[int]] = {}
    for variant in variants:
        for seed in seeds:
            run = metrics.get(experiment_name(prefix, variant, seed))
            if run is None:
                print(f"warning: no finished experiment {experiment_name(prefix, variant, seed)}", file=sys.stderr)
                continue
            interval = logged_interval(root, experiment_name(prefix, variant, seed))
            results.setdefault(variant.name, []).append({**run, "ci95": {"r_mean": list(interval)}} if interval else run)
            used_seeds.setdefault(variant.name, []).append(seed)
    rows = summarise(results, used_seeds)
    if not rows:
        sys.exit(f"no finished experiments named {prefix}-*: run without --collect-only first")
    table = markdown_table(rows)
    files.write_text(Paths(root).reports / "ablation.md",
                  "# PIR ablation (test split, %)\n\n" + table +
                  f"\nExperiments `{prefix}-<variant>-s<seed>`; see `dvc exp show` and the MLflow runs of the same names.\n")
    ablation_figure(rows, Paths(root).figures / "ablation.png")
    # One MLflow parent per variant, its seed runs nested under it (mean ± std and interval on the parent).
    for variant in variants:
        group_experiments(root, [experiment_name(prefix, variant, seed) for seed in used_seeds.get(variant.name, [])])
    print(table)


def main(argv: list[str] | None = None, root: Path | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", help=f"subset of {', '.join(v.name for v in ABLATION)}")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="experiments run in parallel")
    parser.add_argument("--prefix", default="ablation", help="experiment name prefix")
    parser.add_argument("-S", "--set-param", action="append", default=[], help="extra override for every variant")
    parser.add_argument("--collect-only", action="store_true")
    args = parser.parse_args(argv)
    root = root or project_root()
    variants = chosen(args.variants)
    if not args.collect_only:
        queue(root, args.prefix, variants, args.seeds, args.set_param)
        run_queue(root, args.jobs)
    collect(root, args.prefix, variants, args.seeds)

