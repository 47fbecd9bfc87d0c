"""Joint t-SNE of image and text embeddings: does the common subspace group scenes across modalities?"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.manifold import TSNE

from pir import files
from pir.analysis.clusters import l2_normalize

plt = files.pyplot()

MODALITY_MARKERS = {"image": "o", "text": "^"}
UNKNOWN_COLOUR = (0.0, 0.0, 0.0, 1.0)  # black: tab10/tab20 have no black, so unknown scenes stand out


def subsample(n: int, cap: int, seed: int) -> np.ndarray:
    """Sorted seeded sample of at most ``cap`` indices out of ``n`` (all of them when n <= cap)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def joint_tsne(image_emb: np.ndarray, text_emb: np.ndarray, perplexity: float, seed: int,
               max_iter: int = 1000) -> np.ndarray:
    """2-D t-SNE of both modalities together [n_images + n_texts, 2] (images first).

    Embeddings are L2-normalised, so Euclidean t-SNE distances order pairs as cosine does.
    Perplexity is capped below the sample count, which small test splits would violate.
    """
    points = l2_normalize(np.concatenate([image_emb, text_emb]).astype(np.float32))
    if len(points) < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {len(points)}")
    perplexity = min(perplexity, (len(points) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=max_iter)
    return tsne.fit_transform(points)


def tsne_table(coords: np.ndarray, modality: Sequence[str], scenes: Sequence[str]) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of reports/tsne.csv, for `dvc plots` (coordinates to 4 decimals)."""
    rows = [(f"{x:.4f}", f"{y:.4f}", m, s) for (x, y), m, s in zip(coords, modality, scenes)]
    return ["x", "y", "modality", "scene"], rows


def _class_colours(n_classes: int) -> np.ndarray:
    cmap = plt.get_cmap("tab20" if n_classes > 10 else "tab10")
    return np.array([cmap(i % cmap.N) for i in range(max(n_classes, 1))])


def tsne_figure(coords: np.ndarray, modality: Sequence[str], labels: np.ndarray, class_names: Sequence[str]):
    """Scatter coloured by scene class (black = unknown), marker by modality."""
    modality = np.asarray(modality)
    colours = _class_colours(len(class_names))
    fig, ax = plt.subplots(figsize=(11, 8), dpi=100)
    for name, marker in MODALITY_MARKERS.items():
        picked = modality == name
        point_colours = np.where((labels[picked] >= 0)[:, None], colours[np.maximum(labels[picked], 0)],
                                 UNKNOWN_COLOUR)
        ax.scatter(coords[picked, 0], coords[picked, 1], c=point_colours, marker=marker, s=14,
                   alpha=0.75, linewidths=0, label=name)
    present = np.unique(labels[labels >= 0])
    class_handles = [plt.Line2D([], [], marker="s", linestyle="", color=colours[c], label=class_names[c])
                     for c in present]
    if (labels < 0).any():
        class_handles.append(plt.Line2D([], [], marker="s", linestyle="", color=UNKNOWN_COLOUR, label="unknown"))
    modality_handles = [plt.Line2D([], [], marker=m, linestyle="", color="black", label=n)
                        for n, m in MODALITY_MARKERS.items()]
    first = ax.legend(handles=modality_handles, loc="upper left", fontsize=8, title="modality")
    ax.add_artist(first)
    ax.legend(handles=class_handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
              title="scene", ncol=1 + len(class_handles) // 32)
    ax.set_title("t-SNE of the common subspace (test split): images and captions")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def class_similarity_figure(matrix: np.ndarray, class_names: Sequence[str]):
    """Heat map of mean image-class x text-class cosine; bright off-diagonal cells = confusion zones."""
    size = max(6.0, 0.28 * len(class_names) + 3)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=100)
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel("text class")
    ax.set_ylabel("image class")
    ax.set_title("Mean image-text cosine by scene class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
