"""The ``official_style`` section: our paper train step against the same model run the authors' way.

    python -m pir_tools.bench.official '<json>'   one side of official_style_benchmark, in a fresh process
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
from typing import Any

import torch

from pir.config import ModelConfig, TrainConfig
from pir_tools.bench.steps import make_step, random_batch, time_steps, typical_lengths

# The target the report carries beside the measurement (the table prints it; no test asserts timings).
OFFICIAL_STYLE_TARGET_SPEEDUP = 1.25
# What runs one side of the comparison in a fresh interpreter (this module's ``__main__``).
STEP_TIMES_MODULE = "pir_tools.bench.official"


def official_style_model(cfg: ModelConfig) -> torch.nn.Module:
    """Our paper model run with the authors' implementation choices, as a same-machine reference.

    From their train loop and models/pir.py: no text masks (so no folding), eager attention in
    Swin and BERT, the frozen ResNet left in train mode (BatchNorm on batch statistics) in NCHW
    under autograd, and (in step_times) a per-parameter AdamW loop. Kept: our
    row-0-only last cross-attention blocks and batched losses, which makes it a little faster
    than their code, never slower.
    """
    from pir.models import PIR, backbones

    class OfficialStylePIR(PIR):
        def train(self, mode: bool = True) -> "OfficialStylePIR":
            torch.nn.Module.train(self, mode)                  # the frozen prior's BN follows the model
            return self

        def instruction(self, images: torch.Tensor) -> torch.Tensor:
            return self.conv_proj(self.scene_prior(images))

    model = OfficialStylePIR(dataclasses.replace(cfg, text_mask=False))
    model.scene_prior.to(memory_format=torch.contiguous_format)
    backbones.use_fused_attention(model.vision_encoder, enabled=False)
    model.text_encoder.set_attn_implementation("eager")
    return model


def step_times(style: str, preset: str, lengths: list[int], warmup: int, steps: int, seed: int) -> list[float]:
    """fp32 step times of a preset on a batch of ``lengths`` captions, in a fresh process (see
    official_style_benchmark): "ours" as the stages run it, "official" as official_style_model."""
    from pir.config import model_config
    from pir.device import retain_freed_memory
    from pir.models import create_model
    from pir.training.optim import make_optimizer, param_groups
    cfg = model_config(preset)
    train = TrainConfig()
    torch.manual_seed(seed)
    if style == "ours":
        retain_freed_memory()                          # as every stage process does (pir.pipeline.entry.main)
        model = create_model(cfg)
        optimizer = make_optimizer(model, train)
    else:
        model = official_style_model(cfg)
        optimizer = torch.optim.AdamW(param_groups(model, train.weight_decay), lr=train.lr, betas=tuple(train.betas),
                                      eps=train.eps, foreach=False)
    model.train()
    batch = random_batch(cfg, len(lengths), seed, lengths=torch.tensor(lengths))
    cpu = torch.device("cpu")
    return time_steps(make_step(model, optimizer, batch, cpu, "fp32"), warmup, steps, cpu)[1]


def _step_times_in_a_fresh_process(job: dict[str, Any]) -> list[float]:
    run = subprocess.run([sys.executable, "-m", STEP_TIMES_MODULE, json.dumps(job)], capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"official-style benchmark ({job['style']}) failed: {last}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def official_style_benchmark(batch_size: int, rounds: int, warmup: int, steps: int, seed: int = 0,
                             preset: str = "paper") -> dict[str, Any]:
    """Train step, ours vs official_style_model, each side in its own fresh process, alternating.

    A fresh interpreter per run: the official code does not keep freed memory (pir.device),
    and on a noisy host alternating runs compare like with like.
    """
    from pir.config import model_config
    lengths = typical_lengths(batch_size, model_config(preset).max_tokens).tolist()
    times: dict[str, list[float]] = {"ours": [], "official": []}
    for _ in range(rounds):
        for style in times:
            times[style].extend(_step_times_in_a_fresh_process(
                {"style": style, "preset": preset, "lengths": lengths, "warmup": warmup, "steps": steps,
                 "seed": seed}))
    ours, official = (statistics.median(times[k]) for k in ("ours", "official"))
    return {"preset": preset, "batch_size": batch_size, "tokens": max(lengths), "mean_tokens": sum(lengths) / len(lengths),
            "rounds": rounds, "timed_steps_per_round": steps,
            "ours_samples_per_s": batch_size / ours, "official_style_samples_per_s": batch_size / official,
            "speedup": official / ours, "target_speedup": OFFICIAL_STYLE_TARGET_SPEEDUP,
            "official_style": "our model without text masks, eager attention, the frozen ResNet in train mode "
                              "(NCHW, autograd on), per-parameter AdamW loop, default malloc; a reference, not "
                              "the authors' code"}


if __name__ == "__main__":
    print(json.dumps(step_times(**json.loads(sys.argv[1]))))
