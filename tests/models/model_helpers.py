"""Shared fixtures for the model tests: the tiny preset on CPU and small random batches."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # tests never download

import torch

from pir.models import create_model
from pir.config import model_config


def tiny_config(**overrides):
    return model_config("tiny", **overrides)


def build_tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model(tiny_config(**overrides))


def random_batch(cfg, batch: int = 6, length: int = 12, seed: int = 1):
    """Images, padded token ids (first two captions shorter), mask, image ids with repeats, scene labels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, cfg.image_size, cfg.image_size, generator=gen)
    input_ids = torch.randint(5, cfg.vocab_size, (batch, length), generator=gen)
    input_ids[:, 0] = 2                                   # a [CLS]-like first token
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, 7:] = 0
    mask[1, 9:] = 0
    input_ids[mask == 0] = 0                              # [PAD]
    image_ids = torch.tensor([0, 0, 1, 2, 2, 3])[:batch]
    labels = torch.tensor([1, 1, 0, 1, 1, 0])[:batch]
    return images, input_ids, mask, image_ids, labels
