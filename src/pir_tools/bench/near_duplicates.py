"""The ``near_duplicates`` section: the audit stage's two costs on an RSICD-sized set of images."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

# RSICD: 10,921 images over all splits (the leakage audit compares every pair of them).
RSICD_IMAGES = 10_921


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
