"""Planted near-duplicates across splits (``synthetic.planted_duplicates``): what the leakage audit must find.

Real benchmarks leak: RSITMD was built partly from RSICD images, and the same scene reappears
re-encoded, re-cropped or with another colour balance. The generator reproduces this on purpose,
so that the ``audit`` stage has something to find in the default run and the tests can measure
its recall and precision against a known answer.

Each planted pair is a train image (the source) and a val or test image (the target) of the same
scene class; the target's pixels become an altered copy of the source's drawing, one of:

- ``jpeg``: re-encoded as JPEG at quality 70-90;
- ``crop``: a border of 0.3-0.5 % of the side (about half a pixel of 128) cut off each edge, resized back (bicubic);
- ``recolour``: per-channel gain 0.9-1.1 and a brightness shift of up to +-10 levels.

The alterations are slight on purpose: a DCT hash is robust to re-encoding and colour changes but
not to shifts (docs/evaluation.md, "Leakage audit", has the distances measured for each kind).

The target keeps its file name, split and class, and gets new captions of the copied drawing
(the same caption grammar with another random stream: a second annotator describing the same
scene). Everything is deterministic from ``seed``; with ``planted_duplicates: 0`` the dataset is
byte for byte the one generated without this module.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

KINDS = ("jpeg", "crop", "recolour")


def choose_pairs(labels: np.ndarray, splits: np.ndarray, count: int, seed: int) -> list[tuple[int, int]]:
    """(source train index, target val/test index) of ``count`` planted pairs, same class each.

    Targets are distinct val/test images; sources are distinct train images of the target's class.
    """
    if count <= 0:
        return []
    rng = np.random.default_rng([seed, 2])
    held_out = np.flatnonzero(splits != "train")
    train = np.flatnonzero(splits == "train")
    if count > len(held_out):
        raise ValueError(f"synthetic.planted_duplicates = {count}: only {len(held_out)} val/test images to plant into")
    pairs, used = [], set()
    for target in rng.permutation(held_out):
        candidates = [i for i in train[labels[train] == labels[target]] if i not in used]
        if not candidates:
            continue
        source = int(rng.choice(candidates))
        used.add(source)
        pairs.append((source, int(target)))
        if len(pairs) == count:
            return pairs
    raise ValueError(f"synthetic.planted_duplicates = {count}: not enough train images of the val/test classes")


def alter(pixels: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A near-duplicate of uint8 ``pixels`` [S, S, 3] made by ``kind`` (see the module docstring)."""
    size = pixels.shape[0]
    if kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(rng.integers(70, 91)))
        return np.asarray(Image.open(buffer).convert("RGB"))
    if kind == "crop":
        # a border of 0.3-0.5 % of the side off each edge (about half a pixel of 128, resampled): a slight zoom
        border = size * rng.uniform(0.003, 0.005)
        box = (border, border, size - border, size - border)
        return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BICUBIC, box=box))
    if kind == "recolour":
        gain = rng.uniform(0.9, 1.1, 3)
        shift = rng.uniform(-10, 10)
        return np.clip(pixels.astype(np.float32) * gain + shift, 0, 255).round().astype(np.uint8)
    raise ValueError(f"unknown near-duplicate kind {kind!r}; choose from {', '.join(KINDS)}")
