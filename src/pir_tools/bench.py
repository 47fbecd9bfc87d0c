"""The benchmark: ``pir bench`` (or ``python stages/bench.py``) -> reports/bench.json and a table.

Every number comes from the library's real code paths: the training loader, the model
built by ``create_model``, the optimiser from ``make_optimizer``, ``embed_split`` and
``retrieval_metrics``. Timings exclude warm-up and report medians (steps) or totals over
a fixed amount of work (loader, embedding), so that re-running gives comparable numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from pir.config import ModelConfig, SyntheticConfig, TrainConfig
from pir.data.prepared import PreparedDataset, load_prepared, write_prepared
from pir_tools.baselines_bench import baselines_benchmark
from pir_tools.concurrency import concurrent_train_benchmark
from pir_tools.onnx_bench import onnx_rows
from pir_tools.onnx_bench import table_rows as onnx_table_rows

# RSICD: 10,921 images over all splits (the leakage audit compares every pair of them).
RSICD_IMAGES = 10_921
# RSITMD's train split: 3,435 images x 5 captions, one pair per caption per epoch (released recipe).
RSITMD_TRAIN_PAIRS = 17_175

# Caption lengths in tokens over rsitmd_train.json's 17,175 captions, {tokens: captions}: the
# words left by normalize_caption (median 10) plus [CLS], [SEP] and about one WordPiece split.
RSITMD_CAPTION_TOKENS = {6: 5, 7: 389, 8: 650, 9: 1084, 10: 1899, 11: 2183, 12: 2085, 13: 1827, 14: 1706,
                         15: 1331, 16: 1013, 17: 760, 18: 611, 19: 505, 20: 336, 21: 258, 22: 157, 23: 102,
                         24: 85, 25: 69, 26: 42, 27: 27, 28: 17, 29: 11, 30: 6, 31: 9, 32: 3, 33: 5}


@dataclass(frozen=True)
class LoaderCase:
    """One loader measurement: a model input size cropped from a pixel cache of ``cache_res``."""
    name: str
    image_size: int
    cache_res: int


LOADER_CASES = (LoaderCase("tiny", 112, 128), LoaderCase("paper", 224, 256))

# Targets the report carries beside each measurement (the table prints them; no test asserts
# timings): the tensor loader against PIL decode + PIL augmentation, and our train step against
# the official-style reference on the same machine.
LOADER_TARGET_SPEEDUP = 3.0
OFFICIAL_STYLE_TARGET_SPEEDUP = 1.25
# `python -m pir_tools.bench step-times '<json>'`: one side of official_style_benchmark in a fresh process.
STEP_TIMES_COMMAND = "step-times"


# --------------------------------------------------------------------------- machine

def machine_info(device: torch.device) -> dict[str, Any]:
    info = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device)}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5,
                  dtype: torch.dtype = torch.float32) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size``-square matmul: the machine's practical peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# --------------------------------------------------------------------------- data

def make_bench_dataset(root: Path, images: int, cache_res: int, seed: int = 0) -> tuple[PreparedDataset, Any]:
    """A synthetic prepared dataset (all images in train) and a WordPiece tokenizer trained on it."""
    from pir.data.synthetic import generate
    from pir.data.text import load_tokenizer, train_wordpiece
    classes, records, pixels = generate(
        SyntheticConfig(images=images, image_size=cache_res, classes=min(16, images), split=(1.0, 0.0, 0.0)),
        seed=seed, progress=False)
    write_prepared(root, "bench", classes, records, pixels)
    train_wordpiece([c for r in records for c in r.captions], 2000, root / "tokenizer")
    return load_prepared(root), load_tokenizer(root / "tokenizer")


def ours_loader_samples_per_s(prepared: PreparedDataset, tokenizer: Any, image_size: int, batch_size: int,
                              batches: int, seed: int = 0) -> float:
    """Samples/s of the real training loader (memory map -> augmentation -> collate) plus the
    CLIP normalisation the trainer applies to each batch: the same work the PIL baseline does."""
    from pir.data.loader import set_epoch, train_pairs_loader
    from pir.data.transforms import normalize_images
    # the recipe's augmentation (TrainConfig defaults), in the main process, 47-token captions
    train_cfg = TrainConfig(global_batch_size=batch_size, num_workers=0)
    model_cfg = ModelConfig(image_size=image_size, max_tokens=47)
    loader = train_pairs_loader(prepared, prepared.split("train"), tokenizer, train_cfg, model_cfg, seed=seed)
    set_epoch(loader, 0)
    iterator = iter(loader)
    normalize_images(next(iterator)["images"])            # warm-up: caches, lazy imports
    done = 0
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:                              # small datasets: wrap into the next epoch
            set_epoch(loader, 1)
            iterator = iter(loader)
            batch = next(iterator)
        normalize_images(batch["images"])
        done += len(batch["image_ids"])
    return done / (time.perf_counter() - start)


def pil_baseline_transform(image_size: int):
    """The usual PIL pipeline (torchvision v1): what the authors' loader does per sample."""
    from torchvision import transforms as T

    from pir.data.transforms import CLIP_MEAN, CLIP_STD
    return T.Compose([
        T.RandomResizedCrop(image_size, scale=(0.5, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.RandAugment(2, 7),
        T.ToTensor(),
        T.Normalize(CLIP_MEAN, CLIP_STD),
    ])


def write_image_files(pixels: np.ndarray, folder: Path, count: int, fmt: str = "tiff") -> list[Path]:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:05d}.{fmt}"
        Image.fromarray(np.asarray(pixels[i])).save(path)
        paths.append(path)
    return paths


def pil_baseline_samples_per_s(paths: list[Path], image_size: int, batch_size: int, samples: int,
                               seed: int = 0) -> float:
    """Samples/s of PIL decode + per-sample PIL augmentation + ToTensor/Normalize + stacking."""
    from PIL import Image
    transform = pil_baseline_transform(image_size)
    torch.manual_seed(seed)

    def load(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return transform(image.convert("RGB"))

    load(paths[0])                                         # warm-up
    start = time.perf_counter()
    done = 0
    while done < samples:
        batch = [load(paths[(done + k) % len(paths)]) for k in range(batch_size)]
        torch.stack(batch)
        done += batch_size
    return done / (time.perf_counter() - start)


def loader_benchmark(case: LoaderCase, workdir: Path, images: int, batch_size: int, batches: int,
                     repeats: int = 3, image_format: str = "tiff") -> dict[str, float]:
    """Ours vs the PIL baseline on the same images, same batch size, same number of samples.

    Each side's best of ``repeats`` alternating runs: a run is a fraction of a second on the
    fast side, so one background hiccup would otherwise swing the ratio by tens of percent.
    """
    prepared, tokenizer = make_bench_dataset(workdir / f"prepared_{case.name}", images, case.cache_res)
    paths = write_image_files(prepared.pixels, workdir / f"files_{case.name}", images, image_format)
    ours, pil = 0.0, 0.0
    for _ in range(repeats):
        ours = max(ours, ours_loader_samples_per_s(prepared, tokenizer, case.image_size, batch_size, batches))
        pil = max(pil, pil_baseline_samples_per_s(paths, case.image_size, batch_size, batch_size * batches))
    return {"image_size": case.image_size, "cache_res": case.cache_res, "batch_size": batch_size,
            "samples": batch_size * batches, "repeats": repeats, "ours_samples_per_s": ours,
            "pil_samples_per_s": pil, "speedup": ours / pil, "target_speedup": LOADER_TARGET_SPEEDUP}


# --------------------------------------------------------------------------- memory

class PeakMemory:
    """Peak memory over a block, measured without disturbing the block's timing.

    CUDA: the allocator's peak. CPU on Linux: the kernel's resident-set high-water mark
    (VmHWM), reset at the start of the block through /proc/self/clear_refs; elsewhere the
    process's lifetime peak (ru_maxrss). Both include the model, optimiser and everything
    else alive. ``growth_mb`` is the peak minus the resident set at the start: with freed
    memory retained (pir.device) a later case reuses an earlier one's heap and may grow by ~0.
    (Sampling RSS from a thread every 2 ms instead slowed the timed steps by 5-15 % on 2 cores.)
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = 0.0
        self.growth_mb = 0.0
        self.measure = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"

    @staticmethod
    def _status_kib(field: str) -> int | None:
        try:
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
        except (OSError, StopIteration):
            return None

    def _reset_cpu_peak(self) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")            # 5 = reset the peak resident set size (Linux >= 4.0)
            return self._status_kib("VmHWM") is not None
        except OSError:
            return False

    @contextlib.contextmanager
    def watch(self) -> Iterator["PeakMemory"]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            yield self
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        if self._reset_cpu_peak():
            start = self._status_kib("VmRSS") / 2**10
            yield self
            self.peak_mb = self._status_kib("VmHWM") / 2**10
        else:
            start = self._lifetime_peak_mb()
            yield self
            self.measure = "process lifetime peak RSS"
            self.peak_mb = self._lifetime_peak_mb()
        self.growth_mb = max(0.0, self.peak_mb - start)

    @staticmethod
    def _lifetime_peak_mb() -> float:
        import resource
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # KiB on Linux, bytes on macOS
        return maxrss / 2**20 if platform.system() == "Darwin" else maxrss / 2**10


# --------------------------------------------------------------------------- training step

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
def _model_options(model: torch.nn.Module, **changes: Any) -> Iterator[None]:
    """Run a PIR model with some ModelConfig flags read at forward time (fold_text) changed."""
    original = model.cfg
    model.cfg = dataclasses.replace(original, **changes)
    try:
        yield
    finally:
        model.cfg = original


def _time_steps(step: Callable[[], torch.Tensor], warmup: int, steps: int,
                device: torch.device) -> tuple[float, list[float], torch.Tensor]:
    """(seconds of the ``warmup`` steps, seconds of each timed step, the last loss)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return warmup_s, times, loss


def train_step_benchmark(model: torch.nn.Module, cfg: ModelConfig, case: StepCase, device: torch.device,
                         seed: int = 0) -> dict[str, float]:
    """Median step time after ``case.warmup`` steps, samples/s, peak memory, achieved GFLOP/s.

    With ``case.compile`` the model runs through ``torch.compile`` (as train.compile=true does);
    the first step, which compiles, is timed on its own as ``compile_s``.
    """
    with _model_options(model, fold_text=case.fold_text):
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
        warmup_s, times, loss = _time_steps(step, case.warmup, case.steps, device)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{case.name}: loss is {float(loss)}")
    median = statistics.median(times)
    samples_per_s = case.batch_size / median
    from pir.models.folding import can_fold
    text_encoder = getattr(model, "text_encoder", None)     # CLIP towers have no BERT to fold
    folded = (case.fold_text and text_encoder is not None
              and can_fold(text_encoder, torch.ones(1, 1, dtype=torch.long, device=device)))
    row = {"preset": case.preset, "batch_size": case.batch_size, "tokens": int(lengths.max()),
           "mean_tokens": float(lengths.float().mean()), "fold_text": folded, "precision": case.precision,
           "warmup_steps": case.warmup, "timed_steps": case.steps, "median_step_s": median,
           "samples_per_s": samples_per_s, "peak_memory_mb": memory.peak_mb,
           "memory_measure": memory.measure,
           "rss_growth_mb": memory.growth_mb,
           "flops_per_sample": flops, "achieved_gflops": flops * samples_per_s / 1e9}
    if case.compile:
        row["compile_s"] = warmup_s - (case.warmup - 1) * median   # the first step minus an ordinary one
    return row


# --------------------------------------------------------------------------- official-style reference

def _official_style_model(cfg: ModelConfig) -> torch.nn.Module:
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
    official_style_benchmark): "ours" as the stages run it, "official" as _official_style_model."""
    from pir.device import retain_freed_memory
    from pir.models import create_model
    from pir.config import model_config
    from pir.training.optim import make_optimizer, param_groups
    cfg = model_config(preset)
    train = TrainConfig()
    torch.manual_seed(seed)
    if style == "ours":
        retain_freed_memory()                          # as every stage process does (pir.pipeline.main)
        model = create_model(cfg)
        optimizer = make_optimizer(model, train)
    else:
        model = _official_style_model(cfg)
        optimizer = torch.optim.AdamW(param_groups(model, train.weight_decay), lr=train.lr, betas=tuple(train.betas),
                                      eps=train.eps, foreach=False)
    model.train()
    batch = random_batch(cfg, len(lengths), seed, lengths=torch.tensor(lengths))
    cpu = torch.device("cpu")
    return _time_steps(make_step(model, optimizer, batch, cpu, "fp32"), warmup, steps, cpu)[1]


def official_style_benchmark(batch_size: int, rounds: int, warmup: int, steps: int, seed: int = 0,
                             preset: str = "paper") -> dict[str, Any]:
    """Train step, ours vs _official_style_model, each side in its own fresh process, alternating.

    A fresh interpreter per run: the official code does not keep freed memory (pir.device),
    and on a noisy host alternating runs compare like with like.
    """
    from pir.config import model_config
    lengths = typical_lengths(batch_size, model_config(preset).max_tokens).tolist()
    times: dict[str, list[float]] = {"ours": [], "official": []}
    for _ in range(rounds):
        for style in times:
            job = json.dumps({"style": style, "preset": preset, "lengths": lengths, "warmup": warmup,
                              "steps": steps, "seed": seed})
            run = subprocess.run([sys.executable, "-m", "pir_tools.bench", STEP_TIMES_COMMAND, job],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                last = (run.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"official-style benchmark ({style}) failed: {last}")
            times[style].extend(json.loads(run.stdout.strip().splitlines()[-1]))
    ours, official = (statistics.median(times[k]) for k in ("ours", "official"))
    return {"preset": preset, "batch_size": batch_size, "tokens": max(lengths), "mean_tokens": sum(lengths) / len(lengths),
            "rounds": rounds, "timed_steps_per_round": steps,
            "ours_samples_per_s": batch_size / ours, "official_style_samples_per_s": batch_size / official,
            "speedup": official / ours, "target_speedup": OFFICIAL_STYLE_TARGET_SPEEDUP,
            "official_style": "our model without text masks, eager attention, the frozen ResNet in train mode "
                              "(NCHW, autograd on), per-parameter AdamW loop, default malloc; a reference, not "
                              "the authors' code"}


# --------------------------------------------------------------------------- evaluation

def embed_benchmark(model: torch.nn.Module, cfg: ModelConfig, prepared: PreparedDataset, tokenizer: Any,
                    images: int, batch_size: int, device: torch.device) -> dict[str, float]:
    """images/s and texts/s of embed_split (fp32, no grad) on the first ``images`` train images and
    their captions: each side timed on its own by embedding an image-only / text-only view."""
    from pir.data.prepared import SplitView
    from pir.evaluation.embed import embed_split
    full = prepared.split("train")
    n = min(images, full.n_images)
    texts = int(np.searchsorted(full.txt2img, n))               # captions are grouped by image
    split = SplitView("bench", full.image_rows[:n], full.labels[:n], full.captions[:texts], full.txt2img[:texts])
    one_caption = SplitView("bench", split.image_rows, split.labels, split.captions[:n], np.arange(n))
    one_image = SplitView("bench", split.image_rows[:1], split.labels[:1], split.captions,
                          np.zeros(texts, dtype=np.int64))
    model.eval()
    common = dict(tokenizer=tokenizer, image_size=cfg.image_size, max_tokens=cfg.max_tokens,
                  batch_size=batch_size, device=device, precision="fp32", progress=False)
    embed_split(model, prepared, one_image, **{**common, "batch_size": min(batch_size, texts)})  # warm-up

    def seconds(view: SplitView) -> float:
        start = time.perf_counter()
        embed_split(model, prepared, view, **common)
        _sync(device)
        return time.perf_counter() - start
    # each view also embeds a little of the other side (n captions / one image): subtract it
    image_side = seconds(one_caption)
    text_side = seconds(one_image)
    per_text = text_side / texts
    return {"images": n, "texts": texts, "batch_size": batch_size,
            "images_per_s": n / max(image_side - n * per_text, 1e-9), "texts_per_s": 1 / per_text}


# --------------------------------------------------------------------------- search (pir index / pir search)

SEARCH_TARGET_MS = 50.0                  # median text query over 100,000 vectors, encoding included
SEARCH_QUERIES = ("many planes parked near a runway", "a green forest beside a river", "storage tanks",
                  "a bridge over the water", "dense residential buildings with roads")


# The ANN row (docs/scaling.md, "Approximate nearest-neighbour search"): what an index past the
# threshold must reach on this 2-core machine.
ANN_TARGETS = {"recall_at_10": 0.95, "query_ms": 10.0, "bytes_per_vector": 256}
# The synthetic embeddings: a mixture of clusters on the sphere, like a model's image embeddings (see
# clustered_embeddings); measured at a million: mean cosine of two vectors 0.20, of a vector and its
# nearest neighbour 0.87, of a query and its nearest 0.83.
ANN_CLUSTERS, ANN_CLUSTER_RANK = 1000, 32
ANN_SPREAD, ANN_NOISE, ANN_QUERY_NOISE = 0.6, 0.3, 0.5


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class _Mixture:
    """Clusters on the unit sphere: centres inside a common cone (a model's embeddings share a mean
    direction), each spread along its own low-rank subspace (the few directions a scene varies in),
    plus isotropic noise; cluster sizes from a Dirichlet draw, so some scenes are common, some rare."""

    def __init__(self, dim: int, rng: np.random.Generator):
        mean = _unit(rng.standard_normal(dim, dtype=np.float32))
        self.centres = _unit(0.6 * mean + _unit(rng.standard_normal((ANN_CLUSTERS, dim), dtype=np.float32)))
        # [C, rank, D]: random directions in 512 dimensions are orthonormal to a few percent
        self.bases = rng.standard_normal((ANN_CLUSTERS, ANN_CLUSTER_RANK, dim), dtype=np.float32) / np.sqrt(dim)
        decay = np.arange(ANN_CLUSTER_RANK, 0, -1, dtype=np.float32) / ANN_CLUSTER_RANK
        self.scales = ANN_SPREAD * np.sqrt(2.0 / ANN_CLUSTER_RANK) * decay
        self.weights = rng.dirichlet(np.full(ANN_CLUSTERS, 2.0))

    def draw(self, count: int, noise: float, rng: np.random.Generator) -> np.ndarray:
        """``count`` unit float32 vectors, each a cluster's centre moved in its subspace, plus ``noise``."""
        dim = self.centres.shape[1]
        cluster = rng.choice(ANN_CLUSTERS, count, p=self.weights)
        z = rng.standard_normal((count, ANN_CLUSTER_RANK), dtype=np.float32) * self.scales
        x = self.centres[cluster] + noise / np.sqrt(dim) * rng.standard_normal((count, dim), dtype=np.float32)
        order = np.argsort(cluster, kind="stable")   # one small product per cluster, not a gathered basis each
        bounds = np.searchsorted(cluster[order], np.arange(ANN_CLUSTERS + 1))
        for c in range(ANN_CLUSTERS):
            rows = order[bounds[c]:bounds[c + 1]]
            x[rows] += z[rows] @ self.bases[c]
        return _unit(x)


def clustered_embeddings(path: Path, count: int, queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(float16 [count, dim] written to the .npy ``path`` and opened as a memmap, float32 [queries, dim]):
    index vectors drawn from a seeded :class:`_Mixture`, and queries drawn from its clusters with more
    noise (a text query lies off the images' manifold: the modality gap)."""
    rng = np.random.default_rng(seed)
    mixture = _Mixture(dim, rng)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(count, dim))
    for at in range(0, count, 65_536):
        out[at:at + 65_536] = mixture.draw(min(65_536, count - at), ANN_NOISE, rng)
    out.flush()
    del out
    return np.load(path, mmap_mode="r"), mixture.draw(queries, ANN_QUERY_NOISE, rng)


def _exact_top(matrix: np.ndarray, queries: np.ndarray, k: int) -> list[np.ndarray]:
    """Exact top ``k`` rows per query (pir.search.query.top_k's order), 50 queries a pass over the memmap."""
    from pir.search.query import top_k

    tops = []
    for at in range(0, len(queries), 50):
        block = queries[at:at + 50]
        scores = np.empty((len(block), len(matrix)), np.float32)
        for row in range(0, len(matrix), 65_536):
            scores[:, row:row + 65_536] = block @ np.asarray(matrix[row:row + 65_536], dtype=np.float32).T
        tops += [top_k(s, k) for s in scores]
    return tops


def ann_benchmark(workdir: Path, vectors: int, queries: int, seed: int = 0, dim: int = 512) -> dict[str, Any]:
    """The approximate index over ``vectors`` clustered ``dim``-d embeddings, through the library code
    `pir index` and `pir search` call: build (train + add), recall of the top 10 against exact search,
    median query time (candidates + exact re-ranking from the float16 memmap), its bytes a vector."""
    import faiss

    from pir.search import ann
    from pir.search.index import Index
    from pir.search.manifest import Entry
    from pir.search.query import Searcher

    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    matrix, asked = clustered_embeddings(workdir / "embeddings.npy", vectors, queries + 3, dim, seed)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    built = ann.build(matrix)
    build_s = time.perf_counter() - start
    meta = ann.write(built, workdir)
    del built
    start = time.perf_counter()
    loaded = ann.read(workdir, meta, vectors, dim)   # as load_index reads it: size and sha256 checked
    load_s = time.perf_counter() - start
    entries = [Entry(f"{i}.png", 0, 0, "", 0, 0) for i in range(vectors)]
    searcher = Searcher(Index(workdir, workdir, {"ann": meta}, entries, matrix, loaded))
    exact = _exact_top(matrix, asked[3:], 10)
    times, recall = [], []
    for q, query in enumerate(asked):             # the first three warm up
        start = time.perf_counter()
        hits = searcher.search(query, 10)
        took = time.perf_counter() - start
        if q >= 3:
            times.append(took)
            recall.append(len({int(h.path[:-4]) for h in hits} & set(exact[q - 3].tolist())) / 10)
    return {"vectors": vectors, "dim": dim, "kind": meta["kind"],
            "params": {k: meta[k] for k in ("nlist", "m", "nbits", "nprobe", "rerank", "train_vectors", "seed")},
            "data": {"clusters": ANN_CLUSTERS, "cluster_rank": ANN_CLUSTER_RANK, "spread": ANN_SPREAD,
                     "noise": ANN_NOISE, "query_noise": ANN_QUERY_NOISE, "seed": seed},
            "queries": queries, "top": 10, "recall_at_10": float(np.mean(recall)),
            "query_ms": 1000 * statistics.median(times), "query_p90_ms": 1000 * float(np.quantile(times, 0.9)),
            "bytes_per_vector": meta["bytes"] / vectors, "float16_bytes_per_vector": 2 * dim,
            "build_s": build_s, "load_s": load_s, "generate_s": generate_s,
            "threads": faiss.omp_get_max_threads(), "targets": ANN_TARGETS, "load_average_1min": os.getloadavg()[0]}


def search_benchmark(workdir: Path, images: int, vectors: int, queries: int, seed: int = 0,
                     dim: int = 512, ann_vectors: int = 0, ann_queries: int = 200) -> dict[str, Any]:
    """`pir index` throughput (images/s, tiny preset, CPU) over ``images`` 256 px PNG tiles, its incremental
    rerun, and the median latency of a text query (encoding + exact top-20) over ``vectors`` random unit
    ``dim``-d float16 vectors, through the library code the commands call; with ``ann_vectors``, the
    approximate index too (:func:`ann_benchmark`, under "ann")."""
    from PIL import Image

    from pir.config import model_config
    from pir.models import create_model
    from pir.models.checkpoint import save_checkpoint
    from pir.search.encoder import load_encoder
    from pir.search.index import Index, build_index
    from pir.search.manifest import Entry
    from pir.search.query import Searcher

    prepared, tokenizer = make_bench_dataset(workdir / "prepared_search", max(images, 16), 256, seed)
    folder = workdir / "tiles"
    folder.mkdir(parents=True)
    for i in range(images):
        Image.fromarray(np.asarray(prepared.pixels[i])).save(folder / f"{prepared.records[i].file.rsplit('.', 1)[0]}.png")
    checkpoints = {}
    for name, overrides in (("tiny", {}), ("tiny_512", {"embed_dim": dim})):
        torch.manual_seed(seed)
        cfg = model_config("tiny", vocab_size=len(tokenizer), **overrides)
        checkpoints[name] = workdir / f"{name}.pt"
        save_checkpoint(checkpoints[name], create_model(cfg), cfg)
    encoder = load_encoder(checkpoints["tiny"], workdir / "prepared_search" / "tokenizer")
    start = time.perf_counter()
    first = build_index(folder, workdir / "index", encoder, checkpoints["tiny"], progress=False)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    again = build_index(folder, workdir / "index", encoder, checkpoints["tiny"], progress=False)
    rerun_s = time.perf_counter() - start

    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((vectors, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    entries = [Entry(f"{i}.png", 0, 0, "", 0, 0) for i in range(vectors)]
    searcher = Searcher(Index(workdir, workdir, {}, entries, matrix.astype(np.float16)))
    encoder = load_encoder(checkpoints["tiny_512"], workdir / "prepared_search" / "tokenizer")
    total, encode, search = [], [], []
    for q in range(queries + 3):              # the first three warm up
        text = SEARCH_QUERIES[q % len(SEARCH_QUERIES)]
        t0 = time.perf_counter()
        vector = encoder.query_text(text)
        t1 = time.perf_counter()
        searcher.search(vector, 20)
        t2 = time.perf_counter()
        if q >= 3:
            total.append(t2 - t0), encode.append(t1 - t0), search.append(t2 - t1)
    return {"preset": "tiny", "device": "cpu", "index_images": images, "tile_px": 256,
            "index_images_per_s": first.new / index_s, "index_s": index_s,
            "rerun_embedded": again.new, "rerun_s": rerun_s,
            "vectors": vectors, "dim": dim, "queries": queries, "top": 20,
            "query_median_ms": 1000 * statistics.median(total), "encode_median_ms": 1000 * statistics.median(encode),
            "search_median_ms": 1000 * statistics.median(search), "target_query_ms": SEARCH_TARGET_MS,
            # the product is memory-bound (205 MB of float32 per query): other processes' load shows in it
            "load_average_1min": os.getloadavg()[0],
            **({"ann": ann_benchmark(workdir / "ann", ann_vectors, ann_queries, seed, dim)} if ann_vectors else {})}


# --------------------------------------------------------------------------- the whole run

@dataclass(frozen=True)
class BenchOptions:
    quick: bool = False             # tiny sizes everywhere (the smoke test): numbers are not meaningful
    skip_paper: bool = False        # skip the paper preset (Swin-T/BERT-base/ResNet-50) measurements
    device: str = "auto"            # GPU measurements run when this resolves to cuda
    compile: bool = False           # also time torch.compile'd CPU steps (compiling the paper model takes minutes)
    seed: int = 0


def _sizes(options: BenchOptions) -> dict[str, int]:
    if options.quick:
        return dict(loader_images=16, loader_batch=8, loader_batches=2, loader_repeats=1, tiny_batch=4,
                    paper_batch=2, warmup=1, steps=1, embed_images=8, gpu_batch=8, metric_images=50,
                    metric_repeats=1, matmul=256, official_rounds=1, audit_images=300, audit_hashed=32,
                    index_images=8, search_vectors=1000, search_queries=3, ann_vectors=300, ann_queries=10)
    return dict(loader_images=128, loader_batch=64, loader_batches=10, loader_repeats=3, tiny_batch=64,
                paper_batch=8, warmup=2, steps=3, embed_images=64, gpu_batch=128, metric_images=1093,
                metric_repeats=3, matmul=2048, official_rounds=2, audit_images=RSICD_IMAGES, audit_hashed=1024,
                index_images=256, search_vectors=100_000, search_queries=100, ann_vectors=1_000_000, ann_queries=200)


def _skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason}


def _preset_model(preset: str, device: torch.device, seed: int) -> tuple[torch.nn.Module, ModelConfig]:
    from pir.models import create_model
    from pir.config import model_config
    torch.manual_seed(seed)
    cfg = model_config(preset)            # random weights: presets never download (pretrained is opt-in)
    return create_model(cfg).to(device), cfg


def _cpu_step_cases(preset: str, cfg: ModelConfig, sizes: dict[str, int],
                    options: BenchOptions) -> Iterator[tuple[str, str, StepCase | None]]:
    """(section, key, case) of every CPU train-step measurement of a preset; case None = skipped.

    Captions have a typical RSITMD batch's lengths (typical_lengths). The paper preset is also
    timed without text folding (``paper_unfolded``: the padded batch, as before folding) and at
    the worst case, every caption at max_tokens (``paper_max_tokens``).
    """
    batch = sizes["tiny_batch" if preset == "tiny" else "paper_batch"]
    case = StepCase(preset, preset, batch, "fp32", sizes["warmup"], sizes["steps"])
    yield "train_cpu", preset, case
    if preset == "paper":
        yield "train_cpu", "paper_unfolded", dataclasses.replace(case, name="paper_unfolded", fold_text=False)
        yield "train_cpu", "paper_max_tokens", dataclasses.replace(case, name="paper_max_tokens", captions="max")
    yield "train_cpu_bf16", preset, dataclasses.replace(case, precision="bf16")
    yield "train_cpu_compiled", preset, dataclasses.replace(case, compile=True) if options.compile else None


def run_benchmarks(options: BenchOptions, workdir: Path, log: Callable[[str], None] = print,
                   root: Path | None = None) -> dict[str, Any]:
    """Every measurement of reports/bench.json; ``workdir`` holds the temporary datasets and files,
    ``root`` is the project whose stage scripts the concurrency row runs."""
    from pir.evaluation.metrics import benchmark_retrieval_metrics
    sizes = _sizes(options)
    cpu = torch.device("cpu")
    want_cuda = options.device in ("auto", "cuda") and torch.cuda.is_available()
    gpu = torch.device("cuda") if want_cuda else None
    report: dict[str, Any] = {"machine": machine_info(gpu or cpu), "options": dataclasses.asdict(options)}

    log("matmul peak")
    peak = matmul_gflops(cpu, sizes["matmul"])
    report["matmul_fp32_gflops"] = {"cpu": peak, "gpu": matmul_gflops(gpu, 4096) if gpu else None}

    report["loader"] = {}
    for case in LOADER_CASES:
        if case.name == "paper" and options.skip_paper:
            report["loader"][case.name] = _skipped("--skip-paper")
            continue
        log(f"loader {case.name}")
        report["loader"][case.name] = loader_benchmark(case, workdir, sizes["loader_images"], sizes["loader_batch"],
                                                       sizes["loader_batches"], sizes["loader_repeats"])

    sections = ("train_cpu", "train_cpu_bf16", "train_cpu_compiled", "embed")
    report.update({section: {} for section in sections})
    prepared, tokenizer = make_bench_dataset(workdir / "prepared_embed", sizes["embed_images"], 128, options.seed)
    for preset in ("tiny", "paper"):
        if preset == "paper" and options.skip_paper:
            for section in sections:
                report[section][preset] = _skipped("--skip-paper")
            continue
        log(f"model {preset}")
        model, cfg = _preset_model(preset, cpu, options.seed)
        for section, key, case in _cpu_step_cases(preset, cfg, sizes, options):
            log(f"{section} {key}")
            if case is None:
                report[section][key] = _skipped("pass --compile")
                continue
            row = train_step_benchmark(model, cfg, case, cpu, options.seed)
            row["fraction_of_matmul_peak"] = row["achieved_gflops"] / peak
            report[section][key] = row
        log(f"embed {preset}")
        report["embed"][preset] = embed_benchmark(model, cfg, prepared, tokenizer, sizes["embed_images"], 32, cpu)
        del model

    log("official_style paper")
    report["official_style"] = {"paper": _skipped("--skip-paper") if options.skip_paper else official_style_benchmark(
        sizes["paper_batch"], sizes["official_rounds"], sizes["warmup"], sizes["steps"], options.seed)}

    report["train_gpu_bf16"] = {"paper": _skipped("no CUDA device") if gpu is None else
                                _gpu_benchmark(options, sizes, gpu, report["matmul_fp32_gflops"]["gpu"])}
    clip_rows = ({"train_cpu": _skipped("--skip-paper"), "train_gpu_bf16": _skipped("--skip-paper")}
                 if options.skip_paper else
                 clip_benchmarks(options, sizes, peak, gpu, report["matmul_fp32_gflops"]["gpu"], log))
    for section, row in clip_rows.items():
        report[section][CLIP_PRESET] = row

    if options.quick or root is None:
        report["concurrent_train"] = {"tiny": _skipped("--quick" if options.quick else "no project root")}
    else:
        log("concurrent_train tiny (two training stages side by side)")
        report["concurrent_train"] = {"tiny": concurrent_train_benchmark(root, workdir / "concurrent")}
    if options.quick or options.skip_paper or root is None:
        report["baselines"] = _skipped("--quick" if options.quick else "--skip-paper" if options.skip_paper
                                       else "no project root")
    else:
        log("baselines (pir baselines end to end: one ViT-B-32 file on the built-in data)")
        report["baselines"] = baselines_benchmark(root, workdir / "baselines", options.seed)
    # ONNX: the cpu recipe's preset here (~20 s); the paper preset's row takes ~1.5 min: `pir bench --only onnx`
    paper_onnx = "--skip-paper" if options.skip_paper else "about 1.5 min: pir bench --only onnx"
    report["onnx"] = ({"tiny": _skipped("--quick"), "paper": _skipped("--quick")} if options.quick else
                      onnx_rows(("tiny",), workdir / "onnx", seed=options.seed, skipped={"paper": paper_onnx}, log=log))

    log("retrieval_metrics")
    images = sizes["metric_images"]
    report["retrieval_metrics"] = benchmark_retrieval_metrics(images, images * 5, options.seed,
                                                              repeats=sizes["metric_repeats"])
    log("evaluation_protocols (itm, dedup, pairwise; bootstrap interval)")
    report["evaluation_protocols"] = protocols_benchmark(images, options.seed, sizes["metric_repeats"])
    log(f"near_duplicates (leakage audit, {sizes['audit_images']} images, all pairs)")
    report["near_duplicates"] = near_duplicates_benchmark(sizes["audit_images"], sizes["audit_hashed"], options.seed)
    log("search (pir index throughput, text query latency, the approximate index)")
    report["search"] = search_benchmark(workdir / "search", sizes["index_images"], sizes["search_vectors"],
                                        sizes["search_queries"], options.seed, ann_vectors=sizes["ann_vectors"],
                                        ann_queries=sizes["ann_queries"])
    return report


def near_duplicates_benchmark(n_images: int, n_hashed: int, seed: int) -> dict[str, Any]:
    """The audit stage's two costs: all-pairs Hamming distances of ``n_images`` random 256-bit hashes
    (RSICD-sized: 60 million pairs, pairs at the threshold kept), and hashing speed on 256 px images."""
    from pir.data import leakage

    rng = np.random.default_rng(seed)
    bits = rng.random((n_images, 256)) < 0.5
    splits = np.array(["train", "val", "test"])[rng.integers(0, 3, n_images)]
    start = time.perf_counter()
    found = leakage.image_pairs([f"{i}.png" for i in range(n_images)], splits, bits, threshold=24)
    pairs_s = time.perf_counter() - start
    pixels = rng.integers(0, 256, (n_hashed, 256, 256, 3), dtype=np.uint8)
    start = time.perf_counter()
    leakage.phash_bits(pixels)
    hash_s = time.perf_counter() - start
    return {"n_images": n_images, "pairs": n_images * (n_images - 1) // 2, "all_pairs_s": pairs_s,
            "pairs_found": len(found["cross"]) + len(found["within"]), "hashed_images": n_hashed,
            "hash_images_per_s": n_hashed / hash_s, "target_all_pairs_s": 10.0}


def protocols_benchmark(n_images: int, seed: int, repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` seconds of the dedup/pairwise protocols and the 1,000-resample bootstrap on
    an RSICD-sized matrix (captions repeated as in RSICD: 3,331 distinct strings in 5,465)."""
    from pir.evaluation.bootstrap import bootstrap_intervals
    from pir.evaluation.metrics import random_similarity, retrieval_ranks
    from pir.evaluation.protocols import all_protocols

    sims, txt2img = random_similarity(n_images, n_images * 5, seed)
    key_ids = np.arange(n_images * 5) % max(1, round(n_images * 5 * 3331 / 5465))
    ranks = retrieval_ranks(sims, txt2img)

    def best(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    return {"n_images": n_images, "n_texts": n_images * 5, "resamples": 1000,
            "protocols_s": best(lambda: all_protocols(sims, txt2img, key_ids)),
            "bootstrap_s": best(lambda: bootstrap_intervals(*ranks, txt2img, n_resamples=1000, seed=seed)),
            "target_bootstrap_s": 1.0}


def _gpu_benchmark(options: BenchOptions, sizes: dict[str, int], gpu: torch.device,
                   fp32_peak: float) -> dict[str, Any]:
    """Paper preset, bf16 autocast, batch 128 on one GPU; and the 50-epoch RSITMD estimate."""
    if options.skip_paper:
        return _skipped("--skip-paper")
    model, cfg = _preset_model("paper", gpu, options.seed)
    batch = sizes["gpu_batch"]
    case = StepCase("train_gpu_bf16/paper", "paper", batch, "bf16", 3, 10 if not options.quick else 1)
    row = train_step_benchmark(model, cfg, case, gpu, options.seed)
    row["fraction_of_fp32_matmul_peak"] = row["achieved_gflops"] / fp32_peak
    # one GPU at this batch, model step only (the loader runs in workers beside it), no validation
    row["rsitmd_50_epochs_hours"] = 50 * RSITMD_TRAIN_PAIRS / row["samples_per_s"] / 3600
    row["rsitmd_assumption"] = (f"{RSITMD_TRAIN_PAIRS} pairs/epoch (every caption), one GPU at batch "
                                f"{case.batch_size}, step time only: no loader stalls, no validation")
    return row


CLIP_PRESET = "clip-b32"


def clip_benchmarks(options: BenchOptions, sizes: dict[str, int], peak: float, gpu: torch.device | None,
                    gpu_peak: float | None, log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """One CLIP-B/32 train step (CLIP-CL: open_clip towers, contrastive loss) on CPU in fp32 at the paper
    batch, and on the GPU in bf16 at the GPU batch when there is one: {section: row}."""
    cpu = torch.device("cpu")
    log(f"train_cpu {CLIP_PRESET}")
    torch.manual_seed(options.seed)
    from pir.config import model_config
    from pir.models import create_model
    cfg = model_config(CLIP_PRESET, use_vir=False, use_lca=False, use_affiliation=False)
    model = create_model(cfg)
    case = StepCase(f"train_cpu/{CLIP_PRESET}", CLIP_PRESET, sizes["paper_batch"], "fp32", sizes["warmup"],
                    sizes["steps"])
    rows = {"train_cpu": train_step_benchmark(model, cfg, case, cpu, options.seed)}
    rows["train_cpu"]["fraction_of_matmul_peak"] = rows["train_cpu"]["achieved_gflops"] / peak
    if gpu is None:
        rows["train_gpu_bf16"] = _skipped("no CUDA device")
        return rows
    log(f"train_gpu_bf16 {CLIP_PRESET}")
    model.to(gpu)
    case = StepCase(f"train_gpu_bf16/{CLIP_PRESET}", CLIP_PRESET, sizes["gpu_batch"], "bf16", 3,
                    10 if not options.quick else 1)
    rows["train_gpu_bf16"] = train_step_benchmark(model, cfg, case, gpu, options.seed)
    rows["train_gpu_bf16"]["fraction_of_fp32_matmul_peak"] = rows["train_gpu_bf16"]["achieved_gflops"] / gpu_peak
    return rows


def table(report: dict[str, Any]) -> str:
    """The human-readable summary printed by the stage."""
    lines = [f"{'measurement':<34} {'value':>14}  unit"]

    def add(name: str, value: Any, unit: str) -> None:
        text = f"{value:14.2f}" if isinstance(value, (int, float)) else f"{str(value):>14}"
        lines.append(f"{name:<34} {text}  {unit}")

    def measured(section: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, row in report[section].items():
            if "skipped" in row:
                add(f"{section} {name}", "skipped", row["skipped"])
            else:
                yield name, row

    add("matmul fp32 (cpu)", report["matmul_fp32_gflops"]["cpu"], "GFLOP/s")
    for name, row in measured("loader"):
        add(f"loader {name} ours", row["ours_samples_per_s"], "samples/s")
        add(f"loader {name} PIL baseline", row["pil_samples_per_s"], "samples/s")
        add(f"loader {name} speedup", row["speedup"], f"x (target >= {row['target_speedup']:g})")
    for section in ("train_cpu", "train_cpu_bf16", "train_cpu_compiled", "train_gpu_bf16"):
        for name, row in measured(section):
            add(f"{section} {name} (batch {row['batch_size']}, {row['tokens']} tok)", row["samples_per_s"],
                f"samples/s (captions average {row['mean_tokens']:.1f} tokens; "
                f"{'folded' if row['fold_text'] else 'padded'})")
            add("  median step", row["median_step_s"], "s")
            if "compile_s" in row:
                add("  compile (first step)", row["compile_s"], "s")
            add("  peak memory", row["peak_memory_mb"], f"MiB ({row['memory_measure']})")
            add("  achieved", row["achieved_gflops"], "GFLOP/s")
            if "fraction_of_matmul_peak" in row:
                add("  of matmul peak", 100 * row["fraction_of_matmul_peak"], "%")
            if "rsitmd_50_epochs_hours" in row:
                add("  50 RSITMD epochs", row["rsitmd_50_epochs_hours"], "h (estimate)")
    for name, row in measured("official_style"):
        add(f"official-style {name} (batch {row['batch_size']}, {row['tokens']} tok)",
            row["official_style_samples_per_s"], "samples/s (reference: see report)")
        add("  ours, same rounds", row["ours_samples_per_s"], "samples/s")
        add("  speedup", row["speedup"], f"x (target >= {row['target_speedup']:g})")
    for name, row in measured("embed"):
        add(f"embed {name} images", row["images_per_s"], "images/s")
        add(f"embed {name} texts", row["texts_per_s"], "texts/s")
    for name, row in measured("concurrent_train"):
        add(f"two {name} train stages back to back", row["back_to_back_s"], f"s ({row['cores']} cores)")
        add(f"  side by side, {row['threads']} threads each", row["side_by_side_s"],
            f"s ({row['ratio']:.2f}x; target <= {row['target_ratio']:g}x; same bytes: {row['identical']})")
        if "side_by_side_spinning_s" in row:
            add("  side by side, spinning OpenMP threads", row["side_by_side_spinning_s"],
                f"s ({row['ratio_spinning']:.2f}x)")
    metrics = report["retrieval_metrics"]
    add(f"retrieval_metrics {metrics['n_images']}x{metrics['n_texts']}", metrics["vectorised_s"] * 1000, "ms")
    add("  per-query argsort loop", metrics["loop_s"] * 1000, "ms")
    add("  speedup", metrics["speedup"], f"x (identical: {metrics['identical']})")
    protocols = report.get("evaluation_protocols")
    if protocols:
        add(f"all three protocols {protocols['n_images']}x{protocols['n_texts']}", protocols["protocols_s"] * 1000, "ms")
        add(f"  bootstrap interval, {protocols['resamples']} resamples", protocols["bootstrap_s"] * 1000,
            f"ms (target <= {protocols['target_bootstrap_s'] * 1000:g} ms)")
    audit = report.get("near_duplicates")
    if audit:
        add(f"near-duplicate audit, {audit['n_images']} images", audit["all_pairs_s"],
            f"s for {audit['pairs']} pairs (target <= {audit['target_all_pairs_s']:g} s)")
        add("  perceptual hash, 256 px images", audit["hash_images_per_s"], "images/s")
    search = report.get("search")
    if search:
        add(f"pir index {search['preset']} ({search['index_images']} x {search['tile_px']} px)",
            search["index_images_per_s"], "images/s (cpu)")
        add("  rerun, nothing changed", search["rerun_s"], f"s ({search['rerun_embedded']} embedded)")
        add(f"text query, {search['vectors']:,} x {search['dim']}", search["query_median_ms"],
            f"ms median (target < {search['target_query_ms']:g} ms)")
        add("  of which encoding / search", search["encode_median_ms"],
            f"ms / {search['search_median_ms']:.2f} ms (load average {search['load_average_1min']:.1f})")
        ann = search.get("ann")
        if ann:
            p, t = ann["params"], ann["targets"]
            add(f"ANN query, {ann['vectors']:,} x {ann['dim']}", ann["query_ms"],
                f"ms median, re-ranking included (target <= {t['query_ms']:g} ms; "
                f"load average {ann['load_average_1min']:.1f})")
            add("  recall@10 against exact", ann["recall_at_10"], f"(target >= {t['recall_at_10']:g})")
            add("  index memory", ann["bytes_per_vector"], f"bytes/vector (target <= {t['bytes_per_vector']:g}; "
                f"+ {ann['float16_bytes_per_vector']} of float16 on disk)")
            add("  build (train + add)", ann["build_s"], f"s, {ann['kind']} nlist {p['nlist']}, PQ {p['m']}x{p['nbits']}, "
                f"nprobe {p['nprobe']}, rerank {p['rerank']} ({ann['threads']} threads)")
    baselines = report.get("baselines")
    if baselines and "skipped" not in baselines:
        add("pir baselines, one ViT-B-32 file", baselines["wall_s"],
            f"s end to end (target <= {baselines['target_s']:g} s)")
        add("  scene prior trained", str(baselines["scene_prior_trained"]), "(CLIP-CL takes none)")
    onnx_table_rows(report, add)
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None, root: Path | None = None) -> None:
    """``pir bench [--quick] [--skip-paper] [--compile] [--device auto|cpu|cuda] [--out PATH] [--only search]``.

    Not part of the DVC pipeline (timings are not reproducible outputs); same keys every run.
    """
    import argparse
    import tempfile

    from pir import files
    from pir.device import retain_freed_memory
    from pir.params import PipelineConfig, load_params
    from pir.paths import Paths
    from pir_tools.project import project_root

    root = root or project_root()
    parser = argparse.ArgumentParser(prog="pir bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; numbers not meaningful)")
    parser.add_argument("--skip-paper", action="store_true", help="skip the paper-preset measurements")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd CPU train steps (minutes of compiling for the paper preset)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=Paths(root).reports / "bench.json")
    parser.add_argument("--only", choices=("clip", "search", "baselines", "onnx"), default=None,
                        help="measure only these rows and update them in --out (clip: train_cpu/train_gpu_bf16 "
                             "clip-b32; search: the search section; baselines: pir baselines end to end; onnx: "
                             "onnxruntime against torch images/s and the export, tiny and paper presets; with "
                             "--quick tiny alone at batch 4, a smoke test)")
    args = parser.parse_args(argv)
    try:   # only the seed is read: the bench does not need the rest of params.yaml to be runnable
        seed = PipelineConfig.from_params(load_params(root / "params.yaml")).seed
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    tuned = retain_freed_memory()      # as the train and evaluate stages run (pir.device)
    options = BenchOptions(quick=args.quick, skip_paper=args.skip_paper, compile=args.compile, device=args.device,
                           seed=seed)
    if args.only == "clip":
        report = json.loads(args.out.read_text()) if args.out.is_file() else {}
        gpu = torch.device("cuda") if args.device in ("auto", "cuda") and torch.cuda.is_available() else None
        sizes = _sizes(options)
        rows = clip_benchmarks(options, sizes, matmul_gflops(torch.device("cpu"), sizes["matmul"]), gpu,
                               matmul_gflops(gpu, 4096) if gpu else None,
                               log=lambda msg: print(f"[bench] {msg}", flush=True))
        for section, row in rows.items():
            report.setdefault(section, {})[CLIP_PRESET] = row
            print(f"{section} {CLIP_PRESET}: " + json.dumps(row))
        files.write_json(args.out, report)
        print(f"updated {args.out}")
        return
    if args.only in ("baselines", "search", "onnx"):
        sizes = _sizes(options)
        presets = ("tiny",) if args.quick or args.skip_paper else ("tiny", "paper")
        with tempfile.TemporaryDirectory(prefix="pir-bench-") as workdir:
            section = (baselines_benchmark(root, Path(workdir) / "baselines", seed) if args.only == "baselines" else
                       onnx_rows(presets, Path(workdir) / "onnx", 4 if args.quick else 32, 1 if args.quick else 5, seed,
                                 log=lambda msg: print(f"[bench] {msg}", flush=True)) if args.only == "onnx" else
                       search_benchmark(Path(workdir), sizes["index_images"], sizes["search_vectors"],
                                        sizes["search_queries"], seed, ann_vectors=sizes["ann_vectors"],
                                        ann_queries=sizes["ann_queries"]))
        report = json.loads(args.out.read_text()) if args.out.is_file() else {}
        report[args.only] = section
        files.write_json(args.out, report)
        print(json.dumps(section, indent=2))
        print(f"updated the {args.only} section of {args.out}")
        return
    with tempfile.TemporaryDirectory(prefix="pir-bench-") as workdir:
        report = run_benchmarks(options, Path(workdir), log=lambda msg: print(f"[bench] {msg}", flush=True),
                                root=root)
    report["machine"]["malloc_retains_freed_memory"] = tuned
    files.write_json(args.out, report)
    print(table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == [STEP_TIMES_COMMAND]:
        print(json.dumps(step_times(**json.loads(sys.argv[2]))))
    else:
        main(sys.argv[1:])
