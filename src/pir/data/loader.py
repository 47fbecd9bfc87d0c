"""Tensor-only data path: memory-mapped uint8 pixels -> uint8 augmentation -> batches.

``fetch`` decodes every image once into ``pixels.npy`` (uint8 [N, R, R, 3]); here rows
are sliced from the memory map and augmented as uint8 CHW tensors with
``torchvision.transforms.v2`` — no PIL, no re-decoding. Batches stay uint8 until
``normalize_images`` runs on the target device: a quarter of the bytes to pin and
copy, and the float maths happens where the model is.

Determinism: every item is addressed as ``(epoch, index)`` and augmented with a
torch.Generator seeded from ``(seed, epoch, index)`` only, and shuffling is a
``DistributedSampler`` permutation of ``(seed, epoch)``. So an epoch's batches do not
depend on worker count, on what ran before, or on whether training was resumed.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from pir.data.prepared import PreparedDataset, SplitView

# CLIP's normalisation constants (the released configs normalise with these).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# RandAugment as in the released code (BLIP's RandomAugment): levels out of 10, each chosen
# op applied with probability 1/2, grey fill for geometric ops.
RANDAUG_OPS = ("identity", "autocontrast", "equalize", "brightness", "sharpness",
               "shear_x", "shear_y", "translate_x", "translate_y", "rotate")
RANDAUG_MAX_LEVEL = 10
RANDAUG_APPLY_PROB = 0.5
RANDAUG_FILL = 128                   # grey, as BLIP's (128, 128, 128)
TRANSLATE_FRACTION = 10 / 224        # BLIP translates by up to 10 px on 224 px images


# --------------------------------------------------------------------------- transforms

def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (), generator=generator))


@functools.lru_cache(maxsize=64)
def _warp_index(op: str, negative: bool, size: int, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(take indices [3,S,S], fill mask [1,S,S]): the source pixel of every output pixel for one op.

    RandAugment's geometric ops use a fixed magnitude, so for a given (op, sign, size)
    the nearest-neighbour warp is a constant permutation: computing it once by warping an
    image of pixel indices with v2.functional, then gathering, gives F.affine/F.rotate's
    exact result at a fraction of the cost of a grid_sample per image.
    """
    sign = -1.0 if negative else 1.0
    index = torch.arange(size * size, dtype=torch.float32).view(1, size, size)   # exact below 2**24
    if op == "rotate":
        warped = F.rotate(index, sign * level * 30.0, fill=[-1.0])
    else:
        if op.startswith("shear"):
            # BLIP shears by a matrix coefficient (0.3 at level 10); v2 wants degrees.
            degrees = sign * math.degrees(math.atan(level * 0.3))
            shear, shift = ([degrees, 0.0] if op == "shear_x" else [0.0, degrees]), [0, 0]
        else:
            pixels = round(sign * level * TRANSLATE_FRACTION * size)
            shear, shift = [0.0, 0.0], ([pixels, 0] if op == "translate_x" else [0, pixels])
        warped = F.affine(index, angle=0.0, translate=shift, scale=1.0, shear=shear, fill=[-1.0])
    source = warped.flatten().long()
    fill = source < 0
    # flat indices into the whole [3, H, W] image, so one torch.take serves every channel
    take = source.clamp(min=0).unsqueeze(0) + torch.arange(3).unsqueeze(1) * (size * size)
    return take.view(3, size, size), fill.view(1, size, size)


def _warp(image: torch.Tensor, warp: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    take, fill = warp
    return torch.take(image, take).masked_fill_(fill, RANDAUG_FILL)


def _sharpen(image: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL/torchvision sharpness (equal to F.adjust_sharpness): blend with the SMOOTH-filtered image.

    SMOOTH is [[1,1,1],[1,5,1],[1,1,1]]/13 = (3x3 box sum + 4 x centre)/13, borders kept;
    done with integer shifted sums instead of torchvision's float grouped conv (faster at any size).
    """
    x = image.to(torch.int16)
    rows = x[:, :-2] + x[:, 1:-1] + x[:, 2:]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    blurred = x.clone()
    # +6 then floor == round: 13 is odd, so no value is exactly half-way
    blurred[:, 1:-1, 1:-1] = torch.div(box + 4 * x[:, 1:-1, 1:-1] + 6, 13, rounding_mode="floor")
    return torch.lerp(blurred.float(), x.float(), factor).clamp_(0, 255).to(torch.uint8)


class RestrictedRandAugment(nn.Module):
    """RandAugment over GUIDE §4's op list (v2.RandAugment cannot restrict its ops).

    Draws ``num_ops`` ops with replacement from RANDAUG_OPS, applies each with probability
    1/2 and a random sign for signed ops, all from the given ``generator``.
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 7):
        super().__init__()
        self.num_ops = num_ops
        self.level = magnitude / RANDAUG_MAX_LEVEL

    def _apply(self, op: str, image: torch.Tensor, negative: bool = False) -> torch.Tensor:
        if op == "identity":
            return image
        if op == "autocontrast":
            return F.autocontrast(image)
        if op == "equalize":
            return F.equalize(image)
        if op == "brightness":
            return F.adjust_brightness(image, self.level * 1.8 + 0.1)
        if op == "sharpness":
            return _sharpen(image, self.level * 1.8 + 0.1)
        if op in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate"):
            return _warp(image, _warp_index(op, negative, image.shape[-1], self.level))
        raise ValueError(f"unknown RandAugment op {op!r}")

    def forward(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        choices = torch.randint(len(RANDAUG_OPS), (self.num_ops,), generator=generator).tolist()
        applied = (torch.rand(self.num_ops, generator=generator) < RANDAUG_APPLY_PROB).tolist()
        negative = (torch.rand(self.num_ops, generator=generator) < 0.5).tolist()
        for choice, apply, sign in zip(choices, applied, negative):
            if apply:
                image = self._apply(RANDAUG_OPS[choice], image, sign)
        return image


def crop_box(height: int, width: int, scale: Sequence[float], generator: torch.Generator | None,
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a RandomResizedCrop: torchvision's algorithm, drawn from ``generator``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(generator, scale[0], scale[1])
        aspect = math.exp(_uniform(generator, *log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return _randint(generator, height - h + 1), _randint(generator, width - w + 1), h, w
    # fallback: the largest centred crop within the ratio bounds
    in_ratio = width / height
    w, h = ((width, round(width / ratio[0])) if in_ratio < ratio[0] else
            (round(height * ratio[1]), height) if in_ratio > ratio[1] else (width, height))
    return (height - h) // 2, (width - w) // 2, h, w


class TrainAugment(nn.Module):
    """GUIDE §4 train augmentation on a uint8 CHW tensor: RandomResizedCrop (bicubic, antialias),
    horizontal flip, RandAugment — every random draw from the caller's generator."""

    def __init__(self, image_size: int, crop_scale: Sequence[float] = (0.5, 1.0), hflip: bool = True,
                 randaug_ops: int = 2, randaug_magnitude: int = 7):
        super().__init__()
        self.image_size = image_size
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self.randaug = RestrictedRandAugment(randaug_ops, randaug_magnitude) if randaug_ops > 0 else None

    def forward(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        top, left, h, w = crop_box(image.shape[-2], image.shape[-1], self.crop_scale, generator)
        image = F.resized_crop(image, top, left, h, w, [self.image_size, self.image_size],
                               interpolation=InterpolationMode.BICUBIC, antialias=True)
        if self.hflip and float(torch.rand((), generator=generator)) < 0.5:
            image = F.horizontal_flip(image)
        return self.randaug(image, generator) if self.randaug is not None else image


class EvalResize(nn.Module):
    """Test-time: resize to the model's input size, bicubic (a no-op when the cache already matches)."""

    def __init__(self, image_size: int):
        super().__init__()
        self.image_size = image_size

    def forward(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if tuple(image.shape[-2:]) == (self.image_size, self.image_size):
            return image
        return F.resize(image, [self.image_size, self.image_size], interpolation=InterpolationMode.BICUBIC,
                        antialias=True)


def train_transform(image_size: int, crop_scale: Sequence[float] = (0.5, 1.0), hflip: bool = True,
                    randaug_ops: int = 2, randaug_magnitude: int = 7) -> TrainAugment:
    return TrainAugment(image_size, crop_scale, hflip, randaug_ops, randaug_magnitude)


def eval_transform(image_size: int) -> EvalResize:
    return EvalResize(image_size)


def normalize_images(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 [B,3,S,S] -> float32 CLIP-normalised on ``device`` (non-blocking copy from pinned memory)."""
    images = images.to(device or images.device, non_blocking=True)
    std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
    # (x/255 - mean)/std as one in-place multiply-add on the fresh float copy (5x faster on CPU)
    return images.float().mul_(1 / (255.0 * std)).add_(-mean / std)


# --------------------------------------------------------------------------- datasets

def item_seed(seed: int, epoch: int, index: int) -> int:
    """A torch seed that depends only on (seed, epoch, index): resume-exact, worker-count independent."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2**63 - 1)


def _split_key(key: int | tuple[int, int]) -> tuple[int, int]:
    return (key[0], key[1]) if isinstance(key, tuple) else (0, int(key))


class PixelSource:
    """Rows of a uint8 [N,R,R,3] array; pickles a memory map by file name, not by content.

    DataLoader workers started with spawn/forkserver would otherwise receive a full copy.
    """

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    def __getstate__(self) -> dict[str, Any]:
        if isinstance(self.pixels, np.memmap) and self.pixels.filename:
            return {"filename": self.pixels.filename}
        return {"pixels": self.pixels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.pixels = np.load(state["filename"], mmap_mode="r") if "filename" in state else state["pixels"]

    def __len__(self) -> int:
        return len(self.pixels)

    def chw(self, row: int) -> torch.Tensor:
        """One image as a uint8 CHW tensor (one copy out of the memory map, then a view)."""
        return torch.from_numpy(np.array(self.pixels[row])).permute(2, 0, 1)


def _augment(transform: nn.Module, image: torch.Tensor, seed: int, epoch: int, index: int) -> torch.Tensor:
    # A private generator per item: no global RNG state is read or changed (with num_workers=0
    # the global RNG is the training RNG that dropout draws from).
    generator = torch.Generator().manual_seed(item_seed(seed, epoch, index))
    return transform(image, generator).contiguous()


class TrainPairs(Dataset):
    """Image-caption pairs of one split: one item per caption (or ``pairs_per_image`` per image).

    With ``pairs_per_image = k`` < captions, epoch ``e`` uses captions ``e*k .. e*k+k-1``
    (cyclically) of every image, so all captions are seen over the epochs.
    """

    def __init__(self, prepared: PreparedDataset, split: SplitView, transform: nn.Module, seed: int,
                 pairs_per_image: int = 0):
        self.source = PixelSource(prepared.pixels)
        self.split = split
        self.transform = transform
        self.seed = seed
        self.pairs_per_image = pairs_per_image
        self.caption_lists = [split.img2txt[pos] for pos in range(split.n_images)]

    def __len__(self) -> int:
        if self.pairs_per_image > 0:
            return self.split.n_images * self.pairs_per_image
        return self.split.n_texts

    def _caption_index(self, epoch: int, index: int) -> int:
        if self.pairs_per_image <= 0:
            return index
        position, slot = divmod(index, self.pairs_per_image)
        own = self.caption_lists[position]
        return int(own[(epoch * self.pairs_per_image + slot) % len(own)])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = _split_key(key)
        text_index = self._caption_index(epoch, index)
        position = int(self.split.txt2img[text_index])
        row = int(self.split.image_rows[position])
        image = _augment(self.transform, self.source.chw(row), self.seed, epoch, index)
        return {"image": image, "caption": self.split.captions[text_index], "image_id": row,
                "label": int(self.split.labels[position])}


class LabelledImages(Dataset):
    """Images (rows of a pixel array) with one integer target each: eval images, scene classes."""

    def __init__(self, pixels: np.ndarray, rows: np.ndarray, targets: np.ndarray, transform: nn.Module,
                 seed: int = 0):
        if len(rows) != len(targets):
            raise ValueError(f"{len(rows)} rows but {len(targets)} targets")
        self.source = PixelSource(pixels)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = _split_key(key)
        image = _augment(self.transform, self.source.chw(int(self.rows[index])), self.seed, epoch, index)
        return image, int(self.targets[index])


def eval_images(prepared: PreparedDataset, split: SplitView, image_size: int) -> LabelledImages:
    """A split's images in order, resized for the model; target = the image's global row."""
    return LabelledImages(prepared.pixels, split.image_rows, split.image_rows, eval_transform(image_size))


# --------------------------------------------------------------------------- batching

class PairCollate:
    """Stack uint8 images and tokenize captions (pir.data.text.tokenize normalises them first)."""

    def __init__(self, tokenizer: Any, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from pir.data.text import tokenize
        input_ids, attention_mask = tokenize(self.tokenizer, [it["caption"] for it in items], self.max_tokens)
        return {
            "images": torch.stack([it["image"] for it in items]),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "image_ids": torch.tensor([it["image_id"] for it in items], dtype=torch.long),
            "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys: the index order of a DistributedSampler (seeded by seed+epoch)
    tagged with the epoch, so augmentation seeds reach workers even when they are persistent."""

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        # A DistributedSampler with one replica is a plain seeded shuffle: one code path for both.
        self.indices = DistributedSampler(range(size), num_replicas=world_size, rank=rank, shuffle=shuffle,
                                          seed=seed, drop_last=False)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.indices.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return ((self.epoch, i) for i in self.indices)


def _worker_init(worker_id: int) -> None:
    # Each worker does light per-sample work; more than one intra-op thread per worker only
    # oversubscribes the cores the main process is training on.
    torch.set_num_threads(1)
    np.random.seed(torch.initial_seed() % 2**32)


def resolve_workers(num_workers: int, device: torch.device | str) -> int:
    """``num_workers < 0`` = auto: none on CPU (augmentation costs ~1 ms a sample, and worker processes
    would fight the model's threads for the same cores), up to 8 beside a GPU."""
    if num_workers >= 0:
        return num_workers
    return 0 if torch.device(device).type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, num_workers: int = 0,
                collate_fn: Callable | None = None, device: torch.device | str = "cpu", drop_last: bool = False,
                rank: int = 0, world_size: int = 1) -> DataLoader:
    """DataLoader over ``(epoch, index)`` keys; call ``set_epoch(loader, e)`` before each epoch."""
    num_workers = resolve_workers(num_workers, device)
    if num_workers > 0:
        # HF fast tokenizers in forked workers warn (and may deadlock) unless told not to thread.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), shuffle, seed, rank, world_size),
        num_workers=num_workers, collate_fn=collate_fn, pin_memory=torch.device(device).type == "cuda",
        drop_last=drop_last, generator=generator, worker_init_fn=_worker_init,
        persistent_workers=num_workers > 0,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Point the loader's sampler (order, augmentation seeds) and generator at ``epoch``."""
    loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(item_seed(loader.sampler.indices.seed, epoch, 0))


def train_pairs_loader(prepared: PreparedDataset, split: SplitView, tokenizer: Any, *, image_size: int,
                       max_tokens: int, batch_size: int, seed: int, crop_scale: Sequence[float] = (0.5, 1.0),
                       hflip: bool = True, randaug_ops: int = 2, randaug_magnitude: int = 7,
                       pairs_per_image: int = 0, num_workers: int = 0, device: torch.device | str = "cpu",
                       rank: int = 0, world_size: int = 1) -> DataLoader:
    """Shuffled, augmented, tokenized training pairs; incomplete last batch dropped (contrastive batches)."""
    transform = train_transform(image_size, crop_scale, hflip, randaug_ops, randaug_magnitude)
    pairs = TrainPairs(prepared, split, transform, seed, pairs_per_image)
    return make_loader(pairs, batch_size, shuffle=True, seed=seed, num_workers=num_workers,
                       collate_fn=PairCollate(tokenizer, max_tokens), device=device, drop_last=True,
                       rank=rank, world_size=world_size)
