"""The named protocols and the bootstrap interval, on hand-made matrices whose answers are worked out here."""

from __future__ import annotations

import numpy as np
import pytest

from pir.data.text import caption_keys
from pir.evaluation import retrieval_metrics
from pir.evaluation.bootstrap import bootstrap_intervals, resampled_metrics
from pir.evaluation.metrics import METRIC_KEYS, retrieval_ranks
from pir.evaluation.protocols import all_protocols, dedup_metrics, itm_metrics, pairwise_metrics
from pir_tools.bench.retrieval import random_similarity

# 3 images, 5 captions. Captions 1 and 3 are the same string (owned by images 0 and 1), so
# under itm caption 3's top image (0) is a miss, under dedup a hit.
CAPTIONS = ["a red roof", "Two ships.", "a green field", "two ships", "a bridge"]
TXT2IMG = np.array([0, 0, 1, 1, 2])
SIMS = np.array([
    # c0   c1   c2   c3   c4
    [0.9, 0.8, 0.1, 0.7, 0.0],   # image 0
    [0.2, 0.6, 0.3, 0.5, 0.4],   # image 1
    [0.0, 0.1, 0.2, 0.2, 0.1],   # image 2
])


def test_itm_is_the_released_scorer():
    assert itm_metrics(SIMS, TXT2IMG) == {k: retrieval_metrics(SIMS, TXT2IMG)[k] for k in METRIC_KEYS}


def test_itm_worked_out():
    # image->text: image 0 ranks c0 first (hit@1); image 1 ranks c1 (not its own), c3 second -> rank 1;
    # image 2: scores (0.0, 0.1, 0.2, 0.2, 0.1): two ahead, own c4 tied with c1 -> rank 2 or 3 (argsort decides).
    image_ranks, text_ranks = retrieval_ranks(SIMS, TXT2IMG)
    assert image_ranks[:2].tolist() == [0, 1] and image_ranks[2] in (2, 3)
    # text->image: c0 -> image 0 first; c1 -> image 0 (own) first; c2 -> image 1 first; c3 -> image 0 first,
    # own image 1 second; c4 -> image 1 first, own image 2 second.
    assert text_ranks.tolist() == [0, 0, 0, 1, 1]
    metrics = itm_metrics(SIMS, TXT2IMG)
    assert metrics["txt_r1"] == pytest.approx(100 / 3) and metrics["txt_r5"] == 100.0
    assert metrics["img_r1"] == pytest.approx(60.0) and metrics["img_r5"] == 100.0


def test_dedup_worked_out():
    normalised, key_ids = caption_keys(CAPTIONS)
    assert normalised[1] == normalised[3] == "two ships"
    # Distinct strings, sorted: "a bridge"(c4) "a green field"(c2) "a red roof"(c0) "two ships"(c1, first).
    assert key_ids.tolist() == [2, 3, 1, 3, 0]
    metrics = dedup_metrics(SIMS, TXT2IMG, key_ids)
    # String columns: [c4, c2, c0, c1]. Image 0 owns {a red roof, two ships}: its top string c0 -> hit@1.
    # Image 1 owns {a green field, two ships}: scores (0.4, 0.3, 0.2, 0.6) -> "two ships" first: hit@1.
    # Image 2 owns {a bridge}: scores (0.1, 0.2, 0.0, 0.1): "a bridge" ties "two ships" at 0.1 behind 0.2
    # -> rank 1 or 2, a miss at 1, a hit at 5.
    assert metrics["txt_r1"] == pytest.approx(200 / 3) and metrics["txt_r5"] == 100.0
    # Text->image, one query per string: "a bridge" (c4 column: 0.0, 0.4, 0.1) -> image 1 first, own image 2
    # second: miss@1. "a green field" -> image 1 first: hit. "a red roof" -> image 0: hit. "two ships"
    # (c1 column: 0.8, 0.6, 0.1) -> image 0 first, which owns it: hit (a miss for itm's caption 3).
    assert metrics["img_r1"] == pytest.approx(75.0) and metrics["img_r5"] == 100.0


def test_dedup_equals_itm_when_every_caption_is_distinct_and_one_per_image():
    sims, txt2img = random_similarity(30, 30, seed=1, dim=16)
    _, key_ids = caption_keys([f"caption {i}" for i in range(30)])
    assert dedup_metrics(sims, txt2img, key_ids) == itm_metrics(sims, txt2img)


def test_pairwise_worked_out():
    # First captions: image 0 -> c0, image 1 -> c2, image 2 -> c4. Square matrix columns (c0, c2, c4):
    #   image 0: 0.9 0.1 0.0 -> own first        image 1: 0.2 0.3 0.4 -> own (0.3) second
    #   image 2: 0.0 0.2 0.1 -> own (0.1) second
    # text->image: c0 column (0.9, 0.2, 0.0) hit; c2 column (0.1, 0.3, 0.2) hit; c4 column (0.0, 0.4, 0.1) second.
    metrics = pairwise_metrics(SIMS, TXT2IMG)
    assert metrics["txt_r1"] == pytest.approx(100 / 3) and metrics["txt_r5"] == 100.0
    assert metrics["img_r1"] == pytest.approx(200 / 3) and metrics["img_r5"] == 100.0
    assert metrics["r_mean"] == pytest.approx((100 / 3 + 100 + 100 + 200 / 3 + 100 + 100) / 6)


def test_pairwise_leaves_captionless_images_out():
    sims = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])   # image 2 has no caption and would win everything
    assert pairwise_metrics(sims, np.array([0, 1]))["img_r1"] == 100.0
    assert itm_metrics(sims, np.array([0, 1]))["img_r1"] == 0.0


def test_all_protocols_have_the_same_seven_keys():
    _, key_ids = caption_keys(CAPTIONS)
    protocols = all_protocols(SIMS, TXT2IMG, key_ids)
    assert list(protocols) == ["itm", "dedup", "pairwise"]
    assert all(list(values) == list(METRIC_KEYS) for values in protocols.values())


def test_bootstrap_resamples_images_with_their_captions():
    # Image 0's captions are all hits, image 1's all misses: a resample's img_r1 is the hit share of
    # the drawn captions, weighted by caption counts (3 vs 1), never a per-caption draw.
    image_ranks = np.array([0.0, 50.0])
    text_ranks = np.array([0.0, 0.0, 0.0, 50.0])
    samples = resampled_metrics(image_ranks, text_ranks, np.array([0, 0, 0, 1]), n_resamples=400, seed=0)
    assert set(np.unique(samples["img_r1"])) <= {0.0, 75.0, 100.0}
    assert set(np.unique(samples["txt_r1"])) <= {0.0, 50.0, 100.0}
    assert len(samples["r_mean"]) == 400


def test_bootstrap_interval_covers_the_full_data_value():
    sims, txt2img = random_similarity(200, 1000, seed=2, dim=64)
    full = retrieval_metrics(sims, txt2img)
    interval = bootstrap_intervals(*retrieval_ranks(sims, txt2img), txt2img, n_resamples=1000, seed=0)
    assert set(interval) == set(METRIC_KEYS)
    for key, (low, high) in interval.items():
        assert low <= full[key] <= high, key      # equal only where a recall is saturated (both ends 100)
    assert interval["r_mean"][0] < full["r_mean"] < interval["r_mean"][1]


def test_bootstrap_interval_narrows_as_the_data_grows():
    # Ranks from one fixed distribution (a retrieval task of constant difficulty) at 100 and 1,600 images:
    # the standard error shrinks as 1/sqrt(n), so 16x the images gives about a quarter of the width.
    rng = np.random.default_rng(5)
    widths = []
    for n_images in (100, 1600):
        txt2img = np.repeat(np.arange(n_images), 5)
        image_ranks = rng.geometric(0.3, n_images) - 1.0
        text_ranks = rng.geometric(0.2, 5 * n_images) - 1.0
        low, high = bootstrap_intervals(image_ranks, text_ranks, txt2img, seed=0)["r_mean"]
        widths.append(high - low)
    assert 0.15 * widths[0] < widths[1] < 0.4 * widths[0]


def test_bootstrap_is_seeded():
    sims, txt2img = random_similarity(50, 250, seed=3, dim=32)
    ranks = retrieval_ranks(sims, txt2img)
    assert bootstrap_intervals(*ranks, txt2img, seed=7) == bootstrap_intervals(*ranks, txt2img, seed=7)
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals(*ranks, txt2img, level=1.5)
