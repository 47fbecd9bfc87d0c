"""The ``loader`` section: the training loader against the usual PIL decode + PIL augmentation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pir.config import ModelConfig, TrainConfig
from pir.data.prepared import PreparedDataset
from pir_tools.bench.dataset import make_bench_dataset


@dataclass(frozen=True)
class LoaderCase:
    """One loader measurement: a model input size cropped from a pixel cache of ``cache_res``."""
    name: str
    image_size: int
    cache_res: int


LOADER_CASES = (LoaderCase("tiny", 112, 128), LoaderCase("paper", 224, 256))
# The target the report carries beside each measurement (the table prints it; no test asserts timings).
LOADER_TARGET_SPEEDUP = 3.0


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
