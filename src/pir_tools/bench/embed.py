"""The ``embed`` section: images/s and texts/s of the evaluate stage's embed_split."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from pir.config import ModelConfig
from pir.data.prepared import PreparedDataset
from pir_tools.bench.machine import sync


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
        sync(device)
        return time.perf_counter() - start
    # each view also embeds a little of the other side (n captions / one image): subtract it
    image_side = seconds(one_caption)
    text_side = seconds(one_image)
    per_text = text_side / texts
    return {"images": n, "texts": texts, "batch_size": batch_size,
            "images_per_s": n / max(image_side - n * per_text, 1e-9), "texts_per_s": 1 / per_text}
