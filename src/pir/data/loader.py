"""Tensor-only data path: memory-mapped uint8 pixels -> uint8 augmentation -> batches.

``fetch`` decodes every image once into ``pixels.npy`` (uint8 [N, R, R, 3]); here rows
are sliced from the memory map, augmented as uint8 CHW tensors (``pir.data.transforms``,
torchvision v2 semantics) — no PIL, no re-decoding — and batched with their tokenized
captions. Batches stay uint8 until ``pir.data.transforms.normalize_images`` runs on the
target device: a quarter of the bytes to pin and copy, and the float maths happens where
the model is.

Determinism: every item is addressed as ``(epoch, index)`` and augmented with a
torch.Generator seeded from ``(seed, epoch, index)`` only, and shuffling is a
``DistributedSampler`` permutation of ``(seed, epoch)``. So an epoch's batches do not
depend on worker count, on what ran before, or on whether training was resumed.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from pir.config import ModelConfig, TrainConfig
from pir.data.prepared import PreparedDataset, SplitView
from pir.data.transforms import eval_transform, train_transform
from pir.threads import resolve_workers


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


def augment_item(transform: nn.Module, image: torch.Tensor, seed: int, epoch: int, index: int) -> torch.Tensor:
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
        image = augment_item(self.transform, self.source.chw(row), self.seed, epoch, index)
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
        image = augment_item(self.transform, self.source.chw(int(self.rows[index])), self.seed, epoch, index)
        return image, int(self.targets[index])


def eval_images(prepared: PreparedDataset, split: SplitView, image_size: int) -> LabelledImages:
    """A split's images in order, resized for the model; target = the image's global row."""
    return LabelledImages(prepared.pixels, split.image_rows, split.image_rows, eval_transform(image_size))


# --------------------------------------------------------------------------- batching

class PairCollate:
    """Stack uint8 images and tokenize captions (pir.data.text.tokenize decides what the text encoder reads:
    normalised text for PIR, the raw caption for open_clip's tokenizer)."""

    def __init__(self, tokenizer: Any, max_tokens: int, max_words: int = 30):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.max_words = max_words

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from pir.data.text import tokenize
        input_ids, attention_mask = tokenize(self.tokenizer, [it["caption"] for it in items], self.max_tokens,
                                             self.max_words)
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

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        # A DistributedSampler with one replica is a plain seeded shuffle: one code path for both.
        # drop_last (the train loader's): the tail is cut, never padded with repeats, so W ranks step
        # exactly the one-process batches, as many of them (docs/scaling.md)
        self.indices = DistributedSampler(range(size), num_replicas=world_size, rank=rank, shuffle=shuffle,
                                          seed=seed, drop_last=drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.indices.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return ((self.epoch, i) for i in self.indices)


def worker_init(worker_id: int) -> None:
    # Each worker does light per-sample work; more than one intra-op thread per worker only
    # oversubscribes the cores the main process is training on.
    torch.set_num_threads(1)
    np.random.seed(torch.initial_seed() % 2**32)


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
        dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), shuffle, seed, rank, world_size, drop_last),
        num_workers=num_workers, collate_fn=collate_fn, pin_memory=torch.device(device).type == "cuda",
        drop_last=drop_last, generator=generator, worker_init_fn=worker_init,
        persistent_workers=num_workers > 0,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Point the loader's sampler (order, augmentation seeds) and generator at ``epoch``; a streamed
    dataset (pir.data.stream), which has no sampler, takes the epoch itself."""
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
        seed = loader.dataset.seed
    else:
        loader.sampler.set_epoch(epoch)
        seed = loader.sampler.indices.seed
    loader.generator.manual_seed(item_seed(seed, epoch, 0))


def train_pairs_loader(prepared: PreparedDataset, split: SplitView, tokenizer: Any, train_cfg: TrainConfig,
                       model_cfg: ModelConfig, *, seed: int, device: torch.device | str = "cpu", rank: int = 0,
                       world_size: int = 1) -> DataLoader:
    """Shuffled, augmented, tokenized training pairs; incomplete last batch dropped (contrastive batches).

    Each process gets ``train_cfg.per_process_batch(world_size)`` pairs a batch (the losses gather
    the global batch back); images are cropped to ``model_cfg.image_size``, captions cut to its
    ``max_tokens`` (and, for tokenizers that read normalised text, first to its ``max_words``).
    """
    transform = train_transform(model_cfg.image_size, train_cfg.crop_scale, train_cfg.hflip, train_cfg.randaug_ops,
                                train_cfg.randaug_magnitude)
    pairs = TrainPairs(prepared, split, transform, seed, train_cfg.pairs_per_image)
    return make_loader(pairs, train_cfg.per_process_batch(world_size), shuffle=True, seed=seed,
                       num_workers=train_cfg.num_workers,
                       collate_fn=PairCollate(tokenizer, model_cfg.max_tokens, model_cfg.max_words), device=device,
                       drop_last=True, rank=rank, world_size=world_size)
