"""retrieval_metrics against the official per-query argsort loop, and the extra metrics."""

from __future__ import annotations

import numpy as np
import pytest

from pir.data.text import caption_keys
from pir.evaluation import retrieval_metrics
from pir.evaluation.report import evaluation_report
from pir.evaluation.metrics import (
    METRIC_KEYS,
    best_positive_ranks,
    caption_duplicates,
    per_class_recall,
    rank_statistics,
    retrieval_ranks,
)
from pir_tools.bench.retrieval import retrieval_metrics_reference


def official_itm_eval(scores_i2t, scores_t2i, txt2img, img2txt):
    """The authors' itm_eval, restated independently of the library (dict-based, as released)."""
    ranks = np.zeros(scores_i2t.shape[0])
    for index, score in enumerate(scores_i2t):
        inds = np.argsort(score)[::-1]
        rank = 1e20
        for i in img2txt[index]:
            tmp = np.where(inds == i)[0][0]
            rank = min(rank, tmp)
        ranks[index] = rank
    tr = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    ranks = np.zeros(scores_t2i.shape[0])
    for index, score in enumerate(scores_t2i):
        inds = np.argsort(score)[::-1]
        ranks[index] = np.where(inds == txt2img[index])[0][0]
    ir = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    tr_mean, ir_mean = sum(tr) / 3, sum(ir) / 3
    return {"txt_r1": tr[0], "txt_r5": tr[1], "txt_r10": tr[2], "txt_r_mean": tr_mean,
            "img_r1": ir[0], "img_r5": ir[1], "img_r10": ir[2], "img_r_mean": ir_mean,
            "r_mean": (tr_mean + ir_mean) / 2}


def official(sims, txt2img):
    img2txt = {i: [t for t in range(len(txt2img)) if txt2img[t] == i] for i in range(sims.shape[0])}
    return official_itm_eval(sims, sims.T, {t: int(i) for t, i in enumerate(txt2img)}, img2txt)


def random_case(rng, kind):
    n_images = int(rng.integers(1, 60))
    captions_per_image = int(rng.integers(1, 7))
    if kind == "uneven":  # random owners: some images get several captions, some none
        txt2img = rng.integers(0, n_images, int(rng.integers(1, 150)))
    else:
        txt2img = np.repeat(np.arange(n_images), captions_per_image)
    shape = (n_images, len(txt2img))
    if kind == "float":
        sims = rng.standard_normal(shape).astype(rng.choice([np.float32, np.float64]))
    elif kind == "nan":
        sims = rng.integers(-2, 3, shape).astype(np.float64)
        sims[rng.random(shape) < 0.1] = np.nan
    else:  # tie-heavy integer-valued scores, as float32/float64/int64
        sims = rng.integers(0, int(rng.integers(1, 5)), shape).astype(rng.choice([np.float32, np.float64, np.int64]))
    return sims, txt2img


@pytest.mark.parametrize("kind", ["float", "ties", "uneven", "nan"])
def test_equals_the_official_loop_on_random_matrices(kind):
    rng = np.random.default_rng(["float", "ties", "uneven", "nan"].index(kind))
    for _ in range(60):
        sims, txt2img = random_case(rng, kind)
        assert retrieval_metrics(sims, txt2img) == official(sims, txt2img)


def test_equals_the_official_loop_on_large_tied_rows():
    # Beyond 16 candidates numpy's default argsort leaves ties in no simple order.
    rng = np.random.default_rng(7)
    sims = rng.integers(0, 3, (40, 400)).astype(np.float32)
    txt2img = np.repeat(np.arange(40), 10)
    assert retrieval_metrics(sims, txt2img) == official(sims, txt2img)
    assert retrieval_metrics_reference(sims, txt2img) == official(sims, txt2img)


def test_standard_keys_are_percent_and_unrounded():
    sims = np.eye(3, dtype=np.float32)
    metrics = retrieval_metrics(sims, np.arange(3))
    assert set(METRIC_KEYS) <= set(metrics)
    assert metrics["r_mean"] == 100.0
    sims[0] = [0, 1, 0.5]  # image 0 ranks its caption third, caption 0 still ranks image 0 first
    metrics = retrieval_metrics(sims, np.arange(3))
    assert metrics["txt_r1"] == pytest.approx(200 / 3) and metrics["txt_r1"] != round(metrics["txt_r1"], 2)


def test_image_without_captions_counts_as_a_miss():
    sims = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    image_ranks, _ = retrieval_ranks(sims, np.array([0, 1]))
    assert np.isinf(image_ranks[2])
    assert retrieval_metrics(sims, np.array([0, 1]))["txt_r10"] == pytest.approx(200 / 3)


def test_ranks_on_a_hand_made_matrix():
    sims = np.array([[0.9, 0.1, 0.8, 0.3],
                     [0.2, 0.7, 0.6, 0.4]])
    txt2img = np.array([0, 1, 1, 1])
    image_ranks, text_ranks = retrieval_ranks(sims, txt2img)
    np.testing.assert_array_equal(image_ranks, [0, 0])      # image 1: caption 1 (0.7) is first
    np.testing.assert_array_equal(text_ranks, [0, 0, 1, 0])  # caption 2 prefers image 0 (0.8 > 0.6)
    stats = rank_statistics(image_ranks, text_ranks)
    assert stats == {"txt_mean_rank": 1.0, "txt_median_rank": 1.0, "img_mean_rank": 1.25, "img_median_rank": 1.0}


def test_best_positive_ranks_with_several_positives():
    scores = np.array([[0.1, 0.9, 0.5, 0.7]])
    ranks = best_positive_ranks(scores, np.array([0, 0]), np.array([0, 2]))
    assert ranks.tolist() == [2.0]  # order 1, 3, 2, 0: first positive (2) is third


@pytest.mark.parametrize("sims, txt2img", [
    (np.zeros((0, 3)), np.zeros(3, dtype=int)),
    (np.zeros((2, 3)), np.zeros(2, dtype=int)),
    (np.zeros((2, 3)), np.array([0, 1, 2])),
    (np.zeros((2, 3)), np.array([0.0, 1.0, 1.0])),
    (np.zeros(3), np.array([0, 0, 0])),
])
def test_bad_input_is_a_one_line_error(sims, txt2img):
    with pytest.raises(ValueError) as info:
        retrieval_metrics(sims, txt2img)
    assert "\n" not in str(info.value)


def test_per_class_recall_splits_queries_by_scene():
    # Two images of class 0 retrieved perfectly, one of class 1 retrieved last; -1 skipped.
    sims = np.array([[1.0, 0.0, 0.0, 0.2],
                     [0.0, 1.0, 0.0, 0.2],
                     [0.5, 0.5, 0.1, 0.2],
                     [0.0, 0.0, 0.0, 1.0]])
    txt2img = np.arange(4)
    image_ranks, text_ranks = retrieval_ranks(sims, txt2img)
    table = per_class_recall(image_ranks, text_ranks, np.array([0, 0, 1, -1]), txt2img, ["a", "b", "c"])
    assert set(table) == {"a", "b"}  # class c has no test image
    assert table["a"]["txt_r1"] == 100.0 and table["a"]["img_r1"] == 100.0 and table["a"]["n_images"] == 2
    assert table["b"]["txt_r1"] == 0.0 and table["b"]["n_texts"] == 1


def test_caption_duplicates_counts_identical_strings():
    captions = ["A dense residential area.", "a dense residential area", "a bridge over a river"]
    normalised, key_ids = caption_keys(captions)
    assert normalised == ["a dense residential area", "a dense residential area", "a bridge over a river"]
    assert key_ids.tolist() == [1, 1, 0]
    assert caption_duplicates(key_ids, np.array([0, 1, 2])) == {
        "n_texts": 3, "distinct_captions": 2, "duplicated_captions": 2, "captions_shared_across_images": 2}


def test_evaluation_report_keeps_the_standard_numbers():
    rng = np.random.default_rng(4)
    sims = rng.standard_normal((10, 30)).astype(np.float32)
    txt2img = np.repeat(np.arange(10), 3)
    report = evaluation_report(sims, txt2img, np.arange(10) % 3, ["x", "y", "z"], [f"c{i % 7}" for i in range(30)])
    standard = retrieval_metrics(sims, txt2img)
    assert {k: report[k] for k in standard} == standard
    assert report["n_images"] == 10 and report["n_texts"] == 30 and report["duplicates"]["distinct_captions"] == 7
    assert set(report["per_class"]) == {"x", "y", "z"}
    assert report["protocols"]["itm"] == {k: standard[k] for k in METRIC_KEYS}
    assert set(report["protocols"]) == {"itm", "dedup", "pairwise"}
    assert set(report["ci95"]) == set(METRIC_KEYS)
