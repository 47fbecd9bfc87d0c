"""The paper row of ``train_gpu_bf16``: the paper preset's train step on one GPU, and what 50 RSITMD epochs
would take at that speed."""

from __future__ import annotations

from typing import Any

import torch

from pir_tools.bench.options import BenchOptions, preset_model, skipped, timed_steps
from pir_tools.bench.steps import StepCase, train_step_benchmark

# RSITMD's train split: 3,435 images x 5 captions, one pair per caption per epoch (released recipe).
RSITMD_TRAIN_PAIRS = 17_175


def gpu_benchmark(options: BenchOptions, sizes: dict[str, int], gpu: torch.device,
                  fp32_peak: float) -> dict[str, Any]:
    """Paper preset, bf16 autocast, batch 128 on one GPU; and the 50-epoch RSITMD estimate."""
    if options.skip_paper:
        return skipped("--skip-paper")
    model, cfg = preset_model("paper", gpu, options.seed)
    batch = sizes["gpu_batch"]
    case = StepCase("train_gpu_bf16/paper", "paper", batch, "bf16", 3, timed_steps(options))
    row = train_step_benchmark(model, cfg, case, gpu, options.seed)
    row["fraction_of_fp32_matmul_peak"] = row["achieved_gflops"] / fp32_peak
    # one GPU at this batch, model step only (the loader runs in workers beside it), no validation
    row["rsitmd_50_epochs_hours"] = 50 * RSITMD_TRAIN_PAIRS / row["samples_per_s"] / 3600
    row["rsitmd_assumption"] = (f"{RSITMD_TRAIN_PAIRS} pairs/epoch (every caption), one GPU at batch "
                                f"{case.batch_size}, step time only: no loader stalls, no validation")
    return row
