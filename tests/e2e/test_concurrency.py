"""The reproducibility contract under load: the real training stage alone and beside another one
(the bench row ``concurrent_train``, pir_tools.bench.concurrent_train) writes the same bytes.

Timings are not asserted (they depend on the machine); what the row computes and checks is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pir_tools.bench import concurrent_train
from pir_tools.bench.table import table

pytestmark = pytest.mark.e2e


def test_concurrent_train_row_runs_the_real_stage_scripts_alone_and_together_with_the_same_bytes(tmp_path):
    """Two training stages back to back and side by side: the reproducibility contract says all four
    runs write the same checkpoint, report and curves. (The bench's third pair, side by side with
    spinning OpenMP threads, changes times only; the bench checks its bytes on every run.)"""
    from pir.pipeline.params import merge_set

    ROOT = Path(__file__).resolve().parents[2]     # the project
    smaller = merge_set(concurrent_train.TINY_RUN, {"synthetic": {"images": 40}, "train": {"pairs_per_image": 1}})
    row = concurrent_train.concurrent_train_benchmark(ROOT, tmp_path, run=smaller, spinning=False)
    for key in ("back_to_back_s", "side_by_side_s"):
        assert math.isfinite(row[key]) and row[key] > 0
    assert row["ratio"] == pytest.approx(row["side_by_side_s"] / row["back_to_back_s"])
    assert row["identical"] is True and row["threads"] == 2
    report = json.loads((tmp_path / "a/reports/train.json").read_text())
    assert report["runtime"]["threads"] == 2 and report["runtime"]["torch"] == torch.__version__
    text = table({**{k: {} for k in ("loader", "train_cpu", "train_cpu_bf16", "train_cpu_compiled",
                                    "train_gpu_bf16", "official_style", "embed")},
                  "matmul_fp32_gflops": {"cpu": 1.0}, "concurrent_train": {"tiny": row},
                  "retrieval_metrics": {"n_images": 1, "n_texts": 5, "vectorised_s": 1, "loop_s": 1,
                                        "speedup": 1, "identical": True}})
    assert "side by side, 2 threads each" in text and "same bytes: True" in text
