"""The ``clip-b32`` rows of ``train_cpu`` and ``train_gpu_bf16``: one CLIP-CL train step (open_clip towers,
contrastive loss), timed the way the PIR rows are."""

from __future__ import annotations

from typing import Any, Callable

import torch

from pir_tools.bench.options import BenchOptions, skipped, timed_steps
from pir_tools.bench.steps import StepCase, train_step_benchmark

CLIP_PRESET = "clip-b32"


def clip_benchmarks(options: BenchOptions, sizes: dict[str, int], peak: float, gpu: torch.device | None,
                    gpu_peak: float | None, log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """One CLIP-B/32 train step (CLIP-CL: open_clip towers, contrastive loss) on CPU in fp32 at the paper
    batch, and on the GPU in bf16 at the GPU batch when there is one: {section: row}."""
    from pir.config import model_config
    from pir.models import create_model
    log(f"train_cpu {CLIP_PRESET}")
    torch.manual_seed(options.seed)
    cfg = model_config(CLIP_PRESET, use_vir=False, use_lca=False, use_affiliation=False)
    model = create_model(cfg)
    case = StepCase(f"train_cpu/{CLIP_PRESET}", CLIP_PRESET, sizes["paper_batch"], "fp32", sizes["warmup"],
                    sizes["steps"])
    rows = {"train_cpu": train_step_benchmark(model, cfg, case, torch.device("cpu"), options.seed)}
    rows["train_cpu"]["fraction_of_matmul_peak"] = rows["train_cpu"]["achieved_gflops"] / peak
    if gpu is None:
        rows["train_gpu_bf16"] = skipped("no CUDA device")
        return rows
    log(f"train_gpu_bf16 {CLIP_PRESET}")
    model.to(gpu)        # the CPU row's model, moved: the same weights on both devices
    case = StepCase(f"train_gpu_bf16/{CLIP_PRESET}", CLIP_PRESET, sizes["gpu_batch"], "bf16", 3, timed_steps(options))
    rows["train_gpu_bf16"] = train_step_benchmark(model, cfg, case, gpu, options.seed)
    rows["train_gpu_bf16"]["fraction_of_fp32_matmul_peak"] = rows["train_gpu_bf16"]["achieved_gflops"] / gpu_peak
    return rows
