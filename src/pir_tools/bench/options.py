"""What a bench run measures: its options, the sizes they select, and helpers every section shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pir.config import ModelConfig
from pir_tools.bench.near_duplicates import RSICD_IMAGES


@dataclass(frozen=True)
class BenchOptions:
    quick: bool = False             # tiny sizes everywhere (the smoke test): numbers are not meaningful
    skip_paper: bool = False        # skip the paper preset (Swin-T/BERT-base/ResNet-50) measurements
    device: str = "auto"            # GPU measurements run when this resolves to cuda
    compile: bool = False           # also time torch.compile'd CPU steps (compiling the paper model takes minutes)
    seed: int = 0


def sizes_for(options: BenchOptions) -> dict[str, int]:
    """Every size of a run: the real ones (RSICD- and RSITMD-like where it matters), or --quick's."""
    if options.quick:
        return dict(loader_images=16, loader_batch=8, loader_batches=2, loader_repeats=1, tiny_batch=4,
                    paper_batch=2, warmup=1, steps=1, embed_images=8, gpu_batch=8, metric_images=50,
                    metric_repeats=1, matmul=256, official_rounds=1, audit_images=300, audit_hashed=32,
                    index_images=8, search_vectors=1000, search_queries=3, ann_vectors=300, ann_queries=10)
    return dict(loader_images=128, loader_batch=64, loader_batches=10, loader_repeats=3, tiny_batch=64,
                paper_batch=8, warmup=2, steps=3, embed_images=64, gpu_batch=128, metric_images=1093,
                metric_repeats=3, matmul=2048, official_rounds=2, audit_images=RSICD_IMAGES, audit_hashed=1024,
                index_images=256, search_vectors=100_000, search_queries=100, ann_vectors=1_000_000, ann_queries=200)


def timed_steps(options: BenchOptions) -> int:
    """Timed steps of a GPU row: a GPU step is short, so more of them than on the CPU."""
    return 10 if not options.quick else 1


def skipped(reason: str) -> dict[str, Any]:
    """A row that was not measured, and why (the report keeps its key either way)."""
    return {"skipped": reason}


def preset_model(preset: str, device: torch.device, seed: int) -> tuple[torch.nn.Module, ModelConfig]:
    from pir.config import model_config
    from pir.models import create_model
    torch.manual_seed(seed)
    cfg = model_config(preset)            # random weights: presets never download (pretrained is opt-in)
    return create_model(cfg).to(device), cfg
