"""Bootstrap confidence intervals for the ``itm`` recalls, resampling query images with their captions.

A resample draws n test images with replacement; each drawn image brings its own image->text
query and all its captions' text->image queries. Ranks stay those of the full gallery: the
interval describes which queries a test set happens to hold, not a different gallery
(docs/evaluation.md, "Confidence intervals"). Every resample is one row of multinomial counts,
so all recalls of all resamples are a few matrix products: no loop over resamples or queries.
"""

from __future__ import annotations

import numpy as np

from pir.evaluation.metrics import METRIC_KEYS, RECALL_KS

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
_BLOCK = 250    # resamples per block: bounds the [block, n_images] count matrix


def _hits_per_image(image_ranks: np.ndarray, text_ranks: np.ndarray, txt2img: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image query hits [n_images, K], caption hits summed per image [n_images, K], captions per image)."""
    n_images = len(image_ranks)
    image_hits = np.stack([image_ranks < k for k in RECALL_KS], axis=1).astype(np.float64)
    caption_hits = np.stack([np.bincount(txt2img, weights=text_ranks < k, minlength=n_images)
                             for k in RECALL_KS], axis=1)
    return image_hits, caption_hits, np.bincount(txt2img, minlength=n_images).astype(np.float64)


def resampled_metrics(image_ranks: np.ndarray, text_ranks: np.ndarray, txt2img: np.ndarray,
                      n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """The seven ``itm`` keys [n_resamples] over bootstrap resamples of the query images."""
    image_ranks, text_ranks = np.asarray(image_ranks), np.asarray(text_ranks)
    txt2img = np.asarray(txt2img, dtype=np.int64)
    image_hits, caption_hits, captions = _hits_per_image(image_ranks, text_ranks, txt2img)
    n_images = len(image_ranks)
    rng = np.random.default_rng(seed)
    uniform = np.full(n_images, 1.0 / n_images)
    txt, img = [], []
    for start in range(0, n_resamples, _BLOCK):  # blocks bound memory; each block is one matrix product
        counts = rng.multinomial(n_images, uniform, size=min(_BLOCK, n_resamples - start)).astype(np.float64)
        txt.append(100.0 * (counts @ image_hits) / n_images)
        drawn_captions = np.maximum(counts @ captions, 1.0)[:, None]   # a resample with no caption scores 0
        img.append(100.0 * (counts @ caption_hits) / drawn_captions)
    txt_r, img_r = np.concatenate(txt), np.concatenate(img)
    out = {f"txt_r{k}": txt_r[:, i] for i, k in enumerate(RECALL_KS)}
    out.update({f"img_r{k}": img_r[:, i] for i, k in enumerate(RECALL_KS)})
    out["r_mean"] = (txt_r.mean(axis=1) + img_r.mean(axis=1)) / 2
    return {k: out[k] for k in METRIC_KEYS}


def bootstrap_intervals(image_ranks: np.ndarray, text_ranks: np.ndarray, txt2img: np.ndarray,
                        n_resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
                        seed: int = 0) -> dict[str, list[float]]:
    """Percentile interval [low, high] (percent) for r_mean and each R@K under ``itm``."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2, got {n_resamples}")
    samples = resampled_metrics(image_ranks, text_ranks, txt2img, n_resamples, seed)
    tail = 100 * (1 - level) / 2
    return {k: [float(v) for v in np.percentile(samples[k], [tail, 100 - tail])]
            for k in ("r_mean", *METRIC_KEYS[:-1])}
