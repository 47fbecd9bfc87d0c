"""Scene classification scores shared by the scene prior (pir.training.scene_prior) and zero-shot
classification (pir.evaluation.zeroshot): the confusion matrix, recall per class, the confusion figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pir import files


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """[true, predicted] counts, by one bincount."""
    return np.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall per true class in percent (NaN for classes absent from the split)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals * 100, np.nan)


def plot_confusion(confusion: np.ndarray, classes: list[str], path: str | Path, title: str) -> None:
    """Row-normalised confusion matrix as a PNG (written atomically)."""
    plt = files.pyplot()
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    shown = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=120)
