"""Cluster statistics on synthetic embeddings with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from pir.analysis.clusters import (
    class_silhouette,
    class_similarity_matrix,
    cluster_statistics,
    confused_class_pairs,
    knn_purity,
    modality_gap,
)


def clustered(n_classes=4, per_class=20, dim=16, noise=0.05, seed=0):
    """Tight clusters around orthogonal class directions; texts share their image's direction."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_classes] * 3
    labels = np.repeat(np.arange(n_classes), per_class)
    images = centres[labels] + noise * rng.standard_normal((len(labels), dim))
    txt2img = np.repeat(np.arange(len(labels)), 2)
    texts = centres[labels[txt2img]] + noise * rng.standard_normal((len(txt2img), dim))
    return images, labels, texts, txt2img


def test_separated_clusters_score_high_and_random_ones_low():
    images, labels, texts, txt2img = clustered()
    assert class_silhouette(images, labels) > 0.8
    assert knn_purity(images, labels, images, labels, k=5, exclude_self=True) == 1.0
    assert knn_purity(texts, labels[txt2img], images, labels, k=5) == 1.0
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(images.shape)
    assert abs(class_silhouette(noise, labels)) < 0.1
    assert knn_purity(noise, labels, noise, labels, k=5, exclude_self=True) < 0.5


def test_unknown_scenes_are_excluded():
    images, labels, texts, txt2img = clustered()
    labels = labels.copy()
    labels[:5] = -1
    rng = np.random.default_rng(2)
    images[:5] = rng.standard_normal((5, images.shape[1])) * 10  # garbage that would hurt if it were counted
    assert knn_purity(images, labels, images, labels, k=5, exclude_self=True) == 1.0
    stats, _ = cluster_statistics(images, labels, texts, txt2img, ["a", "b", "c", "d"], k=5)
    assert stats["unknown_scene_images"] == 5 and stats["unknown_scene_texts"] == 10


def test_silhouette_undefined_with_one_class():
    assert np.isnan(class_silhouette(np.random.default_rng(0).standard_normal((6, 3)), np.zeros(6, dtype=int)))


def test_modality_gap_of_shifted_copies():
    images, _, _, _ = clustered(noise=0.0)
    texts = images.copy()
    gap = modality_gap(images, texts, np.arange(len(images)))
    assert gap["centroid_distance"] == pytest.approx(0.0, abs=1e-9)
    assert gap["matched_pair_cosine"] == pytest.approx(1.0)
    shifted = modality_gap(images, texts + 5.0, np.arange(len(images)))
    assert shifted["centroid_distance"] > 0.3 and shifted["matched_pair_cosine"] < 1.0


def test_class_similarity_matrix_and_confusion():
    images = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    texts = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # class-1 caption looks like class 0
    matrix = class_similarity_matrix(images, np.array([0, 0, 1]), texts, np.array([0, 1, 1]), 3)
    np.testing.assert_allclose(matrix[:2, :2], [[1.0, 0.5], [0.0, 0.5]])
    assert np.isnan(matrix[2]).all()  # absent class
    top = confused_class_pairs(matrix, ["a", "b", "c"], top=1)[0]
    assert (top["image_class"], top["text_class"], top["margin"]) == ("a", "b", -0.5)


def test_cluster_statistics_keys():
    images, labels, texts, txt2img = clustered()
    stats, matrix = cluster_statistics(images, labels, texts, txt2img, ["a", "b", "c", "d"], k=5)
    assert matrix.shape == (4, 4)
    assert set(stats["silhouette"]) == {"image", "text", "joint"}
    assert stats["silhouette"]["joint"] > 0.8
    assert stats["knn_purity"]["image_to_text"] == 1.0
    assert stats["class_similarity"]["diagonal_mean"] > stats["class_similarity"]["off_diagonal_mean"]
