"""Built-in generated remote-sensing dataset (``data.dataset: synthetic``).

Each image is a top-down RGB scene of one RSITMD-like class, drawn from a
class-typical ground texture plus objects (runways and planes, rows of cars,
round tanks, buildings with shadows, rivers crossed by bridges...) whose
counts, sizes, colours, positions and rotations are random. Distractor objects
of other classes add semantic noise. Each image gets captions from a small
grammar that states what was drawn (counts, colours, objects, relations), so
images of one class are told apart mainly by the details the captions mention;
a share of captions name only the scene, which makes same-class captions
overlap and keeps R@1 below 100.

Layout: ``canvas`` draws (the Canvas, colour tables, object primitives), ``scenes`` composes one
scene per class (painters, distractors, the class registry), ``captions`` says what was drawn (the
caption grammar), ``duplicates`` plants near-duplicates across splits for the leakage audit; this
module builds the dataset (``generate``, ``CLASSES``).
Everything is deterministic from ``seed`` (one numpy Generator per image).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tqdm import tqdm

from pir.config import SyntheticConfig
from pir.data.prepared import SPLITS, ImageRecord
from pir.data.synthetic import duplicates
from pir.data.synthetic.canvas import Canvas
from pir.data.synthetic.captions import make_captions
from pir.data.synthetic.scenes import SCENES, add_distractors

# Class names in registry order; SyntheticConfig.classes takes the first N.
CLASSES: tuple[str, ...] = tuple(SCENES)


# --------------------------------------------------------------------------- dataset

def render_image(cls: str, cfg: SyntheticConfig, rng: np.random.Generator,
                 caption_rng: np.random.Generator | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """One image of class ``cls`` and its captions (drawn from ``caption_rng`` when given: other words
    for the same drawing)."""
    cv = Canvas(cfg.image_size, rng)
    scene = SCENES[cls](cv)
    distractors = add_distractors(cv, cls, cfg.distractor_rate)
    captions = make_captions(cls, scene, distractors, cfg.captions_per_image, cfg.generic_caption_rate,
                             caption_rng or rng)
    return cv.finish(), captions


def split_names(n: int, fractions: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Assign each image a split by a seeded permutation (splits are by image, never by caption)."""
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"synthetic.split must be three non-negative fractions, got {list(fractions)}")
    fractions = np.asarray(fractions, float) / sum(fractions)
    bounds = np.round(np.cumsum(fractions) * n).astype(int)
    names = np.empty(n, dtype=object)
    order = rng.permutation(n)
    names[order[:bounds[0]]] = SPLITS[0]
    names[order[bounds[0]:bounds[1]]] = SPLITS[1]
    names[order[bounds[1]:]] = SPLITS[2]
    return names


def generate(cfg: SyntheticConfig, seed: int, progress: bool = True
             ) -> tuple[list[str], list[ImageRecord], np.ndarray]:
    """Generate the dataset: (classes, records, pixels uint8 [N, S, S, 3]); same seed -> same bytes."""
    if not 2 <= cfg.classes <= len(CLASSES):
        raise ValueError(f"synthetic.classes must be between 2 and {len(CLASSES)}, got {cfg.classes}")
    if cfg.images < cfg.classes or cfg.image_size < 32 or cfg.captions_per_image < 1:
        raise ValueError(f"synthetic: need images >= classes, image_size >= 32 and captions_per_image >= 1 "
                         f"(got {cfg.images}, {cfg.image_size}, {cfg.captions_per_image})")
    classes = list(CLASSES[:cfg.classes])
    top = np.random.default_rng([seed, 0])
    labels = top.permutation(np.arange(cfg.images) % cfg.classes)   # balanced classes, shuffled
    splits = split_names(cfg.images, cfg.split, top)
    pixels = np.empty((cfg.images, cfg.image_size, cfg.image_size, 3), np.uint8)
    records = []
    for i in tqdm(range(cfg.images), desc="generate synthetic", disable=not progress, mininterval=1.0):
        cls = classes[labels[i]]
        # one Generator per image: image i does not depend on how many numbers earlier images drew
        pixels[i], captions = render_image(cls, cfg, np.random.default_rng([seed, 1, i]))
        records.append(ImageRecord(f"{cls}_{i}.png", str(splits[i]), cls, int(labels[i]), captions))
    for k, (source, target) in enumerate(duplicates.choose_pairs(labels, splits, cfg.planted_duplicates, seed)):
        # the target becomes an altered copy of the source's drawing, described anew (duplicates.py)
        _, captions = render_image(classes[labels[source]], cfg, np.random.default_rng([seed, 1, source]),
                                   caption_rng=np.random.default_rng([seed, 3, k]))
        kind = duplicates.KINDS[k % len(duplicates.KINDS)]
        pixels[target] = duplicates.alter(pixels[source], kind, np.random.default_rng([seed, 4, k]))
        records[target] = dataclasses.replace(records[target], captions=captions)
    return classes, records, pixels


def planted_duplicates(cfg: SyntheticConfig, seed: int, records: list[ImageRecord]) -> list[list[str]]:
    """[[train file, val/test file], ...]: the near-duplicate pairs ``generate`` planted (reports/data.json)."""
    labels = np.array([r.label for r in records])
    splits = np.array([r.split for r in records])
    return [[records[s].file, records[t].file]
            for s, t in duplicates.choose_pairs(labels, splits, cfg.planted_duplicates, seed)]
