"""Train-step rows (``train_cpu``, ``train_cpu_bf16``, ``train_cpu_compiled``, ``train_gpu_bf16``): the
trainer's own step on a fixed batch with typical RSITMD caption lengths, its FLOPs and peak memory."""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from pir.config import ModelConfig, TrainConfig
from pir_tools.bench.machine import sync
from pir_tools.bench.memory import PeakMemory

# Caption lengths in tokens over rsitmd_train.json's 17,175 captions, {tokens: captions}: the
# words left by normalize_caption (median 10) plus [CLS], [SEP] and about one WordPiece split.
RSITMD_CAPTION_TOKENS = {6: 5, 7: 389, 8: 650, 9: 1084, 10: 1899, 11: 2183, 12: 2085, 13: 1827, 14: 1706,
                         15: 1331, 16: 1013, 17: 760, 18: 611, 19: 505, 20: 336, 21: 258, 22: 157, 23: 102,
                         24: 85, 25: 69, 26: 42, 27: 27, 28: 17, 29: 11, 30: 6, 31: 9, 32: 3, 33: 5}


@dataclass(frozen=True)
class StepCase:
    """One train-step measurement: preset, batch, precision ("fp32" | "bf16" autocast), captions
    ("typical": RSITMD lengths, typical_lengths; "max": all at max_tokens), text folding."""
    name: str
    preset: str
    batch_size: int
    precision: str
    warmup: int
    steps: int
    captions: str = "typical"
    fold_text: bool = True
    compile: bool = False

    def lengths(self, cfg: ModelConfig) -> torch.Tensor:
        if self.captions == "max":
            return torch.full((self.batch_size,), cfg.max_tokens)
        return typical_lengths(self.batch_size, cfg.max_tokens)


def typical_lengths(batch_size: int, max_tokens: int) -> torch.Tensor:
    """Caption lengths of a typical RSITMD batch, longest first, capped at ``max_tokens``.

    The (i + 0.5) / batch_size quantiles of RSITMD_CAPTION_TOKENS: a batch of 8 pads to 20
    tokens and averages 13, one of 128 pads to 27 (the median longest of random batches is 19
    and 26).
    """
    tokens = torch.tensor(sorted(RSITMD_CAPTION_TOKENS))
    captions = tokens.repeat_interleave(torch.tensor([RSITMD_CAPTION_TOKENS[t] for t in tokens.tolist()]))
    picks = ((torch.arange(batch_size) + 0.5) / batch_size * len(captions)).long()
    return captions[picks].flip(0).clamp(max=max_tokens)


def random_batch(cfg: ModelConfig, batch_size: int, seed: int = 0, classes: int = 16,
                 lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """uint8 images, random token ids padded to the longest of ``lengths`` (default: every
    caption at max_tokens, the worst case), distinct image ids."""
    lengths = torch.full((batch_size,), cfg.max_tokens) if lengths is None else lengths
    generator = torch.Generator().manual_seed(seed)
    mask = (torch.arange(int(lengths.max())) < lengths[:, None]).long()
    return {
        "images": torch.randint(0, 256, (batch_size, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8,
                                generator=generator),
        "input_ids": torch.randint(1000, cfg.vocab_size, mask.shape, generator=generator) * mask,  # [PAD] = 0
        "attention_mask": mask,
        "image_ids": torch.arange(batch_size),
        "labels": torch.randint(0, classes, (batch_size,), generator=generator),
    }


def _on_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor but the uint8 images moved once; images are normalised on the device per step."""
    return {k: v if k == "images" else v.to(device) for k, v in batch.items()}


def make_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
              device: torch.device, precision: str) -> Callable[[], torch.Tensor]:
    """The trainer's own step (pir.training.trainer.train_step) on a fixed batch, bf16 allowed on
    CPU. Returns the loss tensor (no host sync)."""
    from pir.training.trainer import train_step
    batch = _on_device(batch, device)
    return lambda: train_step(model, batch, optimizer, device, precision, cpu_bf16=True)["loss"]


def flops_per_sample(model: torch.nn.Module, cfg: ModelConfig, device: torch.device, batch_size: int = 2,
                     lengths: torch.Tensor | None = None) -> float:
    """Forward + backward FLOPs of one training sample (torch's FlopCounterMode: matmuls/convs/attention),
    on a batch of ``lengths`` captions when given (else ``batch_size`` at max_tokens)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pir.training.trainer import forward_batch
    size = batch_size if lengths is None else len(lengths)
    batch = _on_device(random_batch(cfg, size, seed=1, lengths=lengths), device)
    params = [p for p in model.parameters() if p.requires_grad]
    with FlopCounterMode(display=False) as counter:
        torch.autograd.grad(forward_batch(model, batch, device)["loss"], params)
    return counter.get_total_flops() / size


@contextlib.contextmanager
def model_options(model: torch.nn.Module, **changes: Any) -> Iterator[None]:
    """Run a PIR model with some ModelConfig flags read at forward time (fold_text) changed."""
    original = model.cfg
    model.cfg = dataclasses.replace(original, **changes)
    try:
        yield
    finally:
        model.cfg = original


def time_steps(step: Callable[[], torch.Tensor], warmup: int, steps: int,
               device: torch.device) -> tuple[float, list[float], torch.Tensor]:
    """(seconds of the ``warmup`` steps, seconds of each timed step, the last loss)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        sync(device)
        times.append(time.perf_counter() - start)
    return warmup_s, times, loss


def train_step_benchmark(model: torch.nn.Module, cfg: ModelConfig, case: StepCase, device: torch.device,
                         seed: int = 0) -> dict[str, float]:
    """Median step time after ``case.warmup`` steps, samples/s, peak memory, achieved GFLOP/s.

    With ``case.compile`` the model runs through ``torch.compile`` (as train.compile=true does);
    the first step, which compiles, is timed on its own as ``compile_s``.
    """
    with model_options(model, fold_text=case.fold_text):
        return _train_step_benchmark(model, cfg, case, device, seed)


def _train_step_benchmark(model: torch.nn.Module, cfg: ModelConfig, case: StepCase, device: torch.device,
                          seed: int) -> dict[str, float]:
    from pir.training.optim import make_optimizer
    lengths = case.lengths(cfg)
    flops = flops_per_sample(model, cfg, device, lengths=lengths)      # on the timed batch itself
    model.train()
    optimizer = make_optimizer(model, TrainConfig())
    step_model = torch.compile(model) if case.compile else model
    step = make_step(step_model, optimizer, random_batch(cfg, case.batch_size, seed, lengths=lengths), device,
                     case.precision)
    with PeakMemory(device).watch() as memory:    # from the first step: optimiser state appears there
        warmup_s, times, loss = time_steps(step, case.warmup, case.steps, device)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{case.name}: loss is {float(loss)}")
    median = statistics.median(times)
    samples_per_s = case.batch_size / median
    row = {"preset": case.preset, "batch_size": case.batch_size, "tokens": int(lengths.max()),
           "mean_tokens": float(lengths.float().mean()), "fold_text": _folds(model, case, device),
           "precision": case.precision, "warmup_steps": case.warmup, "timed_steps": case.steps,
           "median_step_s": median, "samples_per_s": samples_per_s, "peak_memory_mb": memory.peak_mb,
           "memory_measure": memory.measure,
           "rss_growth_mb": memory.growth_mb,
           "flops_per_sample": flops, "achieved_gflops": flops * samples_per_s / 1e9}
    if case.compile:
        row["compile_s"] = warmup_s - (case.warmup - 1) * median   # the first step minus an ordinary one
    return row


def _folds(model: torch.nn.Module, case: StepCase, device: torch.device) -> bool:
    """Whether the timed steps folded the text batch: asked for, and the text encoder can (CLIP towers
    have no BERT to fold)."""
    from pir.models.folding import can_fold
    text_encoder = getattr(model, "text_encoder", None)
    return bool(case.fold_text and text_encoder is not None
                and can_fold(text_encoder, torch.ones(1, 1, dtype=torch.long, device=device)))
