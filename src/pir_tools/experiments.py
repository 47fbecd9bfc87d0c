"""The paper's ablation study: variants, and the table/figure built from their results.

Running the variants is DVC's job (queued experiments, see `pir ablation`: pir_tools.ablation);
this module only says what each variant changes and summarises finished runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pir.evaluation.metrics import METRIC_KEYS
from pir.evaluation.seeds import SeedSummary, difference_beyond_spread, summarise_seeds

METRIC_TITLES = ("I→T R@1", "I→T R@5", "I→T R@10", "T→I R@1", "T→I R@5", "T→I R@10", "mR")


@dataclass(frozen=True)
class Variant:
    name: str                      # short id used in experiment names
    title: str                     # row label in the table
    overrides: Mapping[str, object]  # params.yaml keys -> values


# Paper Table (ablation): Swin-T + BERT-B baseline, each PIR component alone, then all of them.
ABLATION: tuple[Variant, ...] = (
    Variant("baseline", "Baseline (Swin-T + BERT-B)", {"model.use_vir": False, "model.use_lca": False, "model.use_affiliation": False}),
    Variant("vir", "+ VIR", {"model.use_vir": True, "model.use_lca": False, "model.use_affiliation": False}),
    Variant("lca", "+ LCA", {"model.use_vir": False, "model.use_lca": True, "model.use_affiliation": False}),
    Variant("affiliation", "+ affiliation loss", {"model.use_vir": False, "model.use_lca": False, "model.use_affiliation": True}),
    Variant("full", "PIR (VIR + LCA + affiliation)", {"model.use_vir": True, "model.use_lca": True, "model.use_affiliation": True}),
)


def experiment_name(prefix: str, variant: Variant, seed: int) -> str:
    return f"{prefix}-{variant.name}-s{seed}"


def set_param_args(overrides: Mapping[str, object]) -> list[str]:
    """`dvc exp run -S` arguments (Hydra override syntax: lowercase booleans, lists as [a,b])."""
    def fmt(value: object) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, (list, tuple)):
            return "[" + ",".join(fmt(v) for v in value) + "]"
        return str(value)
    return [arg for key, value in overrides.items() for arg in ("-S", f"{key}={fmt(value)}")]


@dataclass(frozen=True)
class VariantSummary:
    variant: Variant
    seeds: tuple[int, ...]
    mean: dict[str, float]
    std: dict[str, float]
    r_mean: SeedSummary               # mR over seeds, with its 95% interval
    r_mean_values: tuple[float, ...]  # one per seed, for comparisons
    r_mean_interval: tuple[float, float] | None = None   # the lone seed's bootstrap interval


def _lone_interval(runs: Sequence[Mapping]) -> tuple[float, float] | None:
    ci = runs[0].get("ci95") if len(runs) == 1 else None
    return tuple(ci["r_mean"]) if isinstance(ci, Mapping) and "r_mean" in ci else None


def summarise(results: Mapping[str, Sequence[Mapping[str, float]]], seeds: Mapping[str, Sequence[int]]) -> list[VariantSummary]:
    """Mean and (sample) std over seeds, and mR's 95% interval, for each variant that has results, in table order."""
    rows = []
    for variant in ABLATION:
        runs = results.get(variant.name) or []
        if not runs:
            continue
        values = np.array([[float(run[k]) for k in METRIC_KEYS] for run in runs])
        std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(METRIC_KEYS))
        r_means = tuple(float(v) for v in values[:, METRIC_KEYS.index("r_mean")])
        lone = _lone_interval(runs)
        rows.append(VariantSummary(variant, tuple(seeds.get(variant.name, ())),
                                   dict(zip(METRIC_KEYS, values.mean(axis=0))), dict(zip(METRIC_KEYS, std)),
                                   summarise_seeds(r_means, bootstrap=lone), r_means, lone))
    return rows


def _comparison_cell(reference: VariantSummary, row: VariantSummary) -> str:
    if row is reference:
        return "—"
    delta, beyond, how = difference_beyond_spread(reference.r_mean_values, row.r_mean_values,
                                                  reference.r_mean_interval, row.r_mean_interval)
    verdict = {True: "yes", False: "no", None: "n/a"}[beyond]
    return f"{delta:+.2f} ({verdict}: {how})"


def markdown_table(rows: Sequence[VariantSummary]) -> str:
    """Mean ± std over seeds per metric, mR's 95% interval, and each variant's mR difference from the
    first row with whether it exceeds the seed spread (pir.evaluation.seeds)."""
    several = any(len(r.seeds) > 1 for r in rows)
    header = ("| Variant | seeds | " + " | ".join(METRIC_TITLES) +
              f" | mR 95% CI | Δ mR vs {rows[0].variant.name if rows else 'first'} (beyond seed spread?) |")
    lines = [header, "|" + " --- |" * (len(METRIC_TITLES) + 4)]
    for row in rows:
        cells = [f"{row.mean[k]:.2f} ± {row.std[k]:.2f}" if several else f"{row.mean[k]:.2f}" for k in METRIC_KEYS]
        low, high = row.r_mean.interval
        interval = f"{low:.2f}–{high:.2f} ({row.r_mean.interval_kind})" if row.r_mean.interval_kind != "none" else "n/a"
        lines.append(f"| {row.variant.title} | {len(row.seeds)} | " + " | ".join(cells) +
                     f" | {interval} | {_comparison_cell(rows[0], row)} |")
    return "\n".join(lines) + "\n"


def ablation_figure(rows: Sequence[VariantSummary], path: Path) -> None:
    """Grouped bars of R@K both ways and mR per variant, error bars = std over seeds."""
    from pir import files
    plt = files.pyplot()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(METRIC_KEYS))
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, row in enumerate(rows):
        ax.bar(x + i * width, [row.mean[k] for k in METRIC_KEYS], width,
               yerr=[row.std[k] for k in METRIC_KEYS], label=row.variant.title, capsize=2)
    ax.set_xticks(x + width * (len(rows) - 1) / 2, METRIC_TITLES)
    ax.set_ylabel("recall / mR (%)")
    ax.set_title("PIR ablation (test split)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=120)
