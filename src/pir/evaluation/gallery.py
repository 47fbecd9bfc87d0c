"""Retrieval gallery: what the model actually returns for a few test queries.

Top half: captions with their top-k images (green frame = the caption's own
image, red = another one). Bottom half: images with their top-k captions
(green = one of the image's own captions). Looking at the red ones is the
fastest way to see whether misses are model errors or benchmark ambiguity.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from pir import files

plt = files.pyplot()

CORRECT = "#1a9641"
WRONG = "#d7191c"
ROW_HEIGHT_IN = 2.0
FIGURE_WIDTH_IN = 15.0
DPI = 100


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best candidates per row, best first (ties by index, display only)."""
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def choose_queries(n: int, count: int, seed: int) -> np.ndarray:
    """A seeded, sorted sample of ``count`` query indices out of ``n``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(count, n), replace=False))


def _framed_image(ax, pixels: np.ndarray, colour: str | None, title: str = "") -> None:
    ax.imshow(pixels)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour is not None:
            spine.set_edgecolor(colour)
            spine.set_linewidth(5)
    if title:
        ax.set_title(title, fontsize=8)


def _text_panel(ax, lines: Sequence[tuple[str, str]], width: int) -> None:
    """Wrapped lines of text, each in its own colour, top to bottom."""
    ax.axis("off")
    y = 1.0
    for text, colour in lines:
        wrapped = textwrap.fill(text, width=width)
        ax.text(0.0, y, wrapped, va="top", ha="left", fontsize=8, color=colour, transform=ax.transAxes)
        y -= 0.11 * (wrapped.count("\n") + 1) + 0.03


def gallery_figure(sims: np.ndarray, txt2img: np.ndarray, pixels: np.ndarray, captions: Sequence[str],
                   text_queries: np.ndarray, image_queries: np.ndarray, k: int = 5,
                   scenes: Sequence[str] | None = None):
    """Matplotlib figure of the top-k results for the given text and image queries.

    ``pixels`` uint8 [n_images, R, R, 3] in the same order as the rows of ``sims``;
    ``scenes`` (optional, per image) labels each thumbnail with its scene class.
    """
    def name(image: int) -> str:
        return f"image #{image}" + (f" ({scenes[image]})" if scenes is not None else "")

    n_rows = len(text_queries) + len(image_queries)
    if n_rows == 0:
        raise ValueError("gallery needs at least one query")
    fig = plt.figure(figsize=(FIGURE_WIDTH_IN, ROW_HEIGHT_IN * n_rows), dpi=DPI)
    height = ROW_HEIGHT_IN * n_rows
    grid = fig.add_gridspec(n_rows, k + 2, wspace=0.08, hspace=0.3, left=0.01, right=0.99,
                            bottom=0.1 / height, top=1 - 0.8 / height)
    images_for_texts = top_k(sims.T[text_queries], k)
    for row, (text, ranked) in enumerate(zip(text_queries, images_for_texts)):
        _text_panel(fig.add_subplot(grid[row, :2]), [(f"caption #{text}: {captions[text]}", "black")], 45)
        for col, image in enumerate(ranked):
            colour = CORRECT if image == txt2img[text] else WRONG
            _framed_image(fig.add_subplot(grid[row, col + 2]), pixels[image], colour, f"{col + 1}. {name(image)}")
    captions_for_images = top_k(sims[image_queries], k)
    for offset, (image, ranked) in enumerate(zip(image_queries, captions_for_images)):
        row = len(text_queries) + offset
        _framed_image(fig.add_subplot(grid[row, 0]), pixels[image], None, f"query {name(image)}")
        lines = [(f"{rank + 1}. {'✓' if txt2img[t] == image else '✗'} {captions[t]}",
                  CORRECT if txt2img[t] == image else WRONG) for rank, t in enumerate(ranked)]
        _text_panel(fig.add_subplot(grid[row, 1:]), lines, 150)
    fig.suptitle("Retrieval gallery: captions → top images (green = own image), images → top captions "
                 "(green = own caption)", fontsize=10)
    return fig


def save_gallery(path: str | Path, sims: np.ndarray, txt2img: np.ndarray, pixels: np.ndarray,
                 captions: Sequence[str], n_queries: int, seed: int, k: int = 5,
                 scenes: Sequence[str] | None = None) -> None:
    """Pick ``n_queries`` seeded text and image queries and write the gallery PNG atomically."""
    text_queries = choose_queries(sims.shape[1], n_queries, seed)
    image_queries = choose_queries(sims.shape[0], n_queries, seed + 1)
    fig = gallery_figure(sims, txt2img, pixels, captions, text_queries, image_queries, k, scenes)
    files.save_figure(fig, path, dpi=DPI)
