"""Cluster statistics of the common image-text subspace.

All measures use cosine geometry (the model's embeddings are L2-normalised and
retrieval ranks by dot product). Samples with an unknown scene (label -1) are
dropped from every class statistic; callers report how many.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import silhouette_score

KNN_QUERY_BLOCK = 1024  # queries per block: bounds the [block, n_reference] similarity matrix


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def class_silhouette(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Cosine silhouette of the scene classes (-1 excluded); NaN when undefined (<2 classes)."""
    known = labels >= 0
    n_classes = len(np.unique(labels[known]))
    if n_classes < 2 or n_classes >= known.sum():
        return float("nan")
    return float(silhouette_score(embeddings[known], labels[known], metric="cosine"))


def modality_gap(image_emb: np.ndarray, text_emb: np.ndarray, txt2img: np.ndarray) -> dict[str, float]:
    """Distance between the modality centroids, and matched vs all-pairs mean cosine."""
    image_emb, text_emb = l2_normalize(image_emb), l2_normalize(text_emb)
    image_centre, text_centre = image_emb.mean(0), text_emb.mean(0)
    matched = np.einsum("nd,nd->n", image_emb[txt2img], text_emb)
    return {
        "centroid_distance": float(np.linalg.norm(image_centre - text_centre)),
        "matched_pair_cosine": float(matched.mean()),
        # mean over every (image, text) pair of their cosine == dot of the two centroids
        "all_pairs_cosine": float(image_centre @ text_centre),
    }


def knn_purity(queries: np.ndarray, query_labels: np.ndarray, references: np.ndarray,
               reference_labels: np.ndarray, k: int, exclude_self: bool = False) -> float:
    """Mean share of each query's k cosine-nearest references that share its scene class.

    ``exclude_self`` (queries == references) keeps a sample from being its own neighbour.
    Unknown-scene queries and references are dropped first.
    """
    q_known, r_known = query_labels >= 0, reference_labels >= 0
    if exclude_self:
        q_known = r_known = q_known & r_known
    queries, query_labels = l2_normalize(queries[q_known]), query_labels[q_known]
    references, reference_labels = l2_normalize(references[r_known]), reference_labels[r_known]
    k = min(k, len(references) - int(exclude_self))
    if k < 1 or len(queries) == 0:
        return float("nan")
    hits = 0
    for start in range(0, len(queries), KNN_QUERY_BLOCK):  # blocks bound memory, not a per-sample loop
        sims = queries[start:start + KNN_QUERY_BLOCK] @ references.T
        if exclude_self:
            rows = np.arange(len(sims))
            sims[rows, start + rows] = -np.inf
        neighbours = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        hits += int((reference_labels[neighbours] == query_labels[start:start + KNN_QUERY_BLOCK, None]).sum())
    return hits / (len(queries) * k)


def class_means(embeddings: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean L2-normalised embedding per class [n_classes, D]; NaN rows for absent classes."""
    known = labels >= 0
    onehot = np.zeros((n_classes, known.sum()), dtype=np.float64)
    onehot[labels[known], np.arange(known.sum())] = 1.0
    counts = onehot.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (onehot @ l2_normalize(embeddings[known]).astype(np.float64)) / counts


def class_similarity_matrix(image_emb: np.ndarray, image_labels: np.ndarray, text_emb: np.ndarray,
                            text_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """[image class, text class] mean cosine over all pairs (= dot of the class means)."""
    return class_means(image_emb, image_labels, n_classes) @ class_means(text_emb, text_labels, n_classes).T


def confused_class_pairs(matrix: np.ndarray, class_names: Sequence[str], top: int = 10) -> list[dict]:
    """Off-diagonal (image class, text class) pairs closest to (or above) the image class's own similarity.

    ``margin`` = sim(image a, text b) - sim(image a, text a): near 0 or positive means
    captions of b describe images of a about as well as a's own captions do.
    """
    own = np.diag(matrix)
    margin = matrix - own[:, None]
    np.fill_diagonal(margin, np.nan)
    valid = np.argwhere(np.isfinite(margin))
    order = np.argsort(-margin[valid[:, 0], valid[:, 1]], kind="stable")[:top]
    return [{"image_class": class_names[a], "text_class": class_names[b], "similarity": float(matrix[a, b]),
             "own_similarity": float(own[a]), "margin": float(margin[a, b])} for a, b in valid[order]]


def cluster_statistics(image_emb: np.ndarray, image_labels: np.ndarray, text_emb: np.ndarray,
                       txt2img: np.ndarray, class_names: Sequence[str], k: int) -> tuple[dict, np.ndarray]:
    """Everything analyze reports, and the class-similarity matrix for its figure."""
    text_labels = image_labels[txt2img]
    joint_emb = np.concatenate([image_emb, text_emb])
    joint_labels = np.concatenate([image_labels, text_labels])
    matrix = class_similarity_matrix(image_emb, image_labels, text_emb, text_labels, len(class_names))
    diagonal = np.diag(matrix)
    off_diagonal = matrix[~np.eye(len(matrix), dtype=bool)]
    stats = {
        "n_images": int(len(image_emb)),
        "n_texts": int(len(text_emb)),
        "unknown_scene_images": int(np.count_nonzero(image_labels < 0)),
        "unknown_scene_texts": int(np.count_nonzero(text_labels < 0)),
        "silhouette": {
            "image": class_silhouette(image_emb, image_labels),
            "text": class_silhouette(text_emb, text_labels),
            "joint": class_silhouette(joint_emb, joint_labels),
        },
        "modality_gap": modality_gap(image_emb, text_emb, txt2img),
        "knn_purity": {
            "k": int(k),
            "image": knn_purity(image_emb, image_labels, image_emb, image_labels, k, exclude_self=True),
            "text": knn_purity(text_emb, text_labels, text_emb, text_labels, k, exclude_self=True),
            "image_to_text": knn_purity(image_emb, image_labels, text_emb, text_labels, k),
            "text_to_image": knn_purity(text_emb, text_labels, image_emb, image_labels, k),
        },
        "class_similarity": {
            "diagonal_mean": float(np.nanmean(diagonal)) if np.isfinite(diagonal).any() else float("nan"),
            "off_diagonal_mean": float(np.nanmean(off_diagonal)) if np.isfinite(off_diagonal).any() else float("nan"),
            "top_confused": confused_class_pairs(matrix, class_names),
        },
    }
    return stats, matrix
