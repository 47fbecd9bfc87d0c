"""The built-in generated dataset: determinism, shapes, classes, captions that state what was drawn."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest

from pir.config import SyntheticConfig
from pir.data import synthetic
from pir.data.prepared import SPLITS
from pir.data.synthetic.canvas import Canvas
from pir.data.synthetic.captions import GENERIC, NUMBER_WORDS, _synonyms, make_captions
from pir.data.synthetic.scenes import scene_storagetanks

SMALL = SyntheticConfig(images=120, image_size=48, classes=12, distractor_rate=1.0)


@pytest.fixture(scope="module")
def small():
    return synthetic.generate(SMALL, seed=3, progress=False)


def test_deterministic_from_seed(small):
    classes, records, pixels = small
    again = synthetic.generate(SMALL, seed=3, progress=False)
    other = synthetic.generate(SMALL, seed=4, progress=False)
    assert again[1] == records and np.array_equal(again[2], pixels)
    assert not np.array_equal(other[2], pixels)


def test_shapes_classes_splits(small):
    classes, records, pixels = small
    assert classes == list(synthetic.CLASSES[:12]) and len(set(classes)) == 12
    assert {"airport", "parking", "storagetanks", "river", "beach"} <= set(classes)
    assert pixels.shape == (120, 48, 48, 3) and pixels.dtype == np.uint8
    assert Counter(r.label for r in records) == {k: 10 for k in range(12)}   # balanced
    assert Counter(r.split for r in records) == {"train": 96, "val": 12, "test": 12}
    for r in records:
        assert classes[r.label] == r.scene and re.fullmatch(rf"{r.scene}_\d+\.png", r.file)
        assert r.split in SPLITS and len(r.captions) == 5 and all(c.strip() for c in r.captions)


def test_classes_look_different(small):
    """Mean colour per class differs: classes are visually distinct."""
    classes, records, pixels = small
    labels = np.array([r.label for r in records])
    means = np.stack([pixels[labels == k].reshape(-1, 3).mean(0) for k in range(len(classes))])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(len(classes), 1)]
    assert np.median(distances) > 15


def test_captions_state_drawn_counts():
    """Storage-tank captions with an exact count word name the number of tanks really drawn."""
    cfg = SyntheticConfig(images=40, image_size=64, classes=16, generic_caption_rate=0.0, distractor_rate=0.0)
    for i in range(40):
        cv = Canvas(64, np.random.default_rng(i))
        scene = scene_storagetanks(cv)
        captions = make_captions("storagetanks", scene, [], 5, 0.0, np.random.default_rng(i))
        n = scene.slots["tanks"].count
        for caption in captions:
            words = set(caption.split())
            exact = words & set(NUMBER_WORDS[2:])
            if exact:
                assert exact == {NUMBER_WORDS[n]}, (n, caption)
            assert scene.slots["tanks"].colour in words or "tank area" in caption or "size" in caption
    assert cfg.classes == 16


def test_generic_rate_controls_scene_only_captions():
    def generic_share(rate: float) -> float:
        _, records, _ = synthetic.generate(SyntheticConfig(images=60, image_size=32, classes=6,
                                                           generic_caption_rate=rate), 0, progress=False)
        generic = [c for r in records for c in r.captions
                   if any(re.fullmatch(_synonyms(g.replace("{scene}", ".*"), np.random.default_rng(0))
                                       .replace("[", "").replace("]", ""), c) for g in GENERIC)]
        return len(generic) / (5 * len(records))
    assert generic_share(0.0) < 0.1 < 0.5 < generic_share(0.9)


def test_same_class_captions_overlap_but_images_differ(small):
    _, records, pixels = small
    by_class = Counter(c for r in records if r.scene == "airport" for c in set(r.captions))
    assert max(by_class.values()) > 1   # some caption strings are shared within a class
    assert len({r.captions for r in records}) == len(records)   # but no two images have the same set


def test_default_size_is_fast():
    start = time.perf_counter()
    synthetic.generate(SyntheticConfig(images=200), 0, progress=False)
    assert time.perf_counter() - start < 6.0   # ~0.5 s here; default 2,000 images scale linearly


def test_bad_config_is_one_line():
    with pytest.raises(ValueError, match="synthetic.classes"):
        synthetic.generate(SyntheticConfig(classes=99), 0)
    with pytest.raises(ValueError, match="synthetic.split"):
        synthetic.generate(SyntheticConfig(images=20, classes=4, split=(0.5, 0.5)), 0)
