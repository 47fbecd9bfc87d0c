"""Embed a split's images and captions with a trained model (validation in train, the evaluate stage)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from pir.data.loader import eval_images, make_loader
from pir.data.prepared import PreparedDataset, SplitView
from pir.data.transforms import image_stats, normalize_images
from pir.device import precision_context


def encode_images(model: nn.Module, images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 [B, 3, S, S] at the model's input size -> float32 [B, D] on the CPU (normalised on ``device`` with
    the model's own mean/std)."""
    return model.encode_image(normalize_images(images, torch.device(device), *image_stats(model))).float().cpu()


def encode_captions(model: nn.Module, tokenizer: Any, captions: list[str], max_tokens: int, max_words: int,
                    device: torch.device | str) -> torch.Tensor:
    """Raw caption strings -> float32 [B, D] on the CPU, tokenized as in training (pir.data.text.tokenize)."""
    from pir.data.text import tokenize
    ids, mask = tokenize(tokenizer, captions, max_tokens, max_words)
    return model.encode_text(ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)).float().cpu()


@torch.inference_mode()
def embed_split(model: nn.Module, prepared: PreparedDataset, split_view: SplitView, tokenizer: Any,
                image_size: int, max_tokens: int, batch_size: int, device: torch.device | str = "cpu",
                precision: str = "fp32", num_workers: int = 0, cpu_bf16: bool = False,
                progress: bool = True, max_words: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """(image_emb float32 [n_images, D], text_emb float32 [n_texts, D]) on the CPU, in split order.

    Captions are embedded in split order without length sorting: with ``text_mask=False``
    (the official behaviour) padding changes embeddings, and we keep that comparable.
    """
    if split_view.n_images == 0 or split_view.n_texts == 0:
        raise ValueError(f"split {split_view.name!r} has {split_view.n_images} images and "
                         f"{split_view.n_texts} captions: nothing to embed")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    images = make_loader(eval_images(prepared, split_view, image_size), batch_size, shuffle=False, seed=0,
                         num_workers=num_workers, device=device)
    image_chunks, text_chunks = [], []
    with precision_context(device, precision, cpu_bf16):
        for batch, _rows in tqdm(images, desc=f"embed {split_view.name} images", disable=not progress, leave=False):
            image_chunks.append(encode_images(model, batch, device))
        for start in tqdm(range(0, split_view.n_texts, batch_size), desc=f"embed {split_view.name} texts",
                          disable=not progress, leave=False):
            text_chunks.append(encode_captions(model, tokenizer, split_view.captions[start:start + batch_size],
                                               max_tokens, max_words, device))
    model.train(was_training)
    return torch.cat(image_chunks), torch.cat(text_chunks)
