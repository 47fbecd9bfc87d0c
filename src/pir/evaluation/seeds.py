"""Runs of one configuration under several seeds: mean, spread, interval, and whether two differ.

Reproductions in this field miss published numbers by as much as the claimed gains, so a single
run proves little (docs/evaluation.md, "Seeds as a group"). The interval of a mean over seeds is
Student's t (mean ± t·s/√n); with one seed there is no spread to measure, and the run's own
bootstrap interval (test images resampled) is the only uncertainty on offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float
    std: float                       # sample std (ddof=1); 0 with one seed
    interval: tuple[float, float]    # 95% interval of the mean (t over seeds; the bootstrap one with a single seed)
    interval_kind: str               # "t over seeds" | "bootstrap" | "none"


def summarise_seeds(values: Sequence[float], bootstrap: tuple[float, float] | None = None) -> SeedSummary:
    """Mean ± std over seeds and the 95% interval of the mean; ``bootstrap`` is used for a lone seed."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to summarise")
    mean = float(values.mean())
    if values.size == 1:
        interval, kind = (tuple(bootstrap), "bootstrap") if bootstrap else ((mean, mean), "none")
        return SeedSummary(1, mean, 0.0, (float(interval[0]), float(interval[1])), kind)
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, values.size - 1)) * std / np.sqrt(values.size)
    return SeedSummary(int(values.size), mean, std, (mean - half, mean + half), "t over seeds")


def difference_beyond_spread(a: Sequence[float], b: Sequence[float],
                             a_interval: tuple[float, float] | None = None,
                             b_interval: tuple[float, float] | None = None) -> tuple[float, bool | None, str]:
    """(mean(b) - mean(a), is the difference beyond the seed spread?, how that was decided).

    Two seeds or more on each side: Welch's t-test at 5%. Otherwise, when both bootstrap
    intervals are given: whether they are disjoint (conservative). Else None: undecidable.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    delta = float(b.mean() - a.mean())
    if a.size >= 2 and b.size >= 2:
        if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
            return delta, delta != 0, "Welch t-test (no spread)"
        p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        return delta, p_value < 1 - LEVEL, f"Welch t-test p={p_value:.3f}"
    if a_interval is not None and b_interval is not None:
        disjoint = a_interval[1] < b_interval[0] or b_interval[1] < a_interval[0]
        return delta, disjoint, "bootstrap intervals " + ("disjoint" if disjoint else "overlap")
    return delta, None, "one seed, no interval"
