"""What people look at about a prepared dataset: ``reports/data.json`` statistics and a sample figure."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from pir import files
from pir.data.prepared import SPLITS, UNKNOWN_SCENE, ImageRecord
from pir.data.text import normalize_caption


def caption_stats(records: list[ImageRecord], max_words: int) -> dict[str, float | int]:
    """Word counts and vocabulary of the normalised captions (what PIR's text encoder sees). Words are
    what the released ``pre_caption`` counts and cuts at ``max_words``: split on single spaces."""
    normalised = [normalize_caption(c, 10 ** 6) for r in records for c in r.captions]
    words = np.array([len(c.split(" ")) for c in normalised]) if normalised else np.zeros(1)
    vocab = {w for c in normalised for w in c.split(" ")}
    return {"mean_words": round(float(words.mean()), 2), "max_words": int(words.max()),
            "over_max_words": int((words > max_words).sum()), "vocab_words": len(vocab)}


def duplicate_stats(records: list[ImageRecord]) -> dict[str, int]:
    """Repeated captions: within one image (RSICD often repeats) and shared by different images."""
    within = sum(len(r.captions) - len({normalize_caption(c) for c in r.captions}) for r in records)
    images_per_caption = Counter(c for r in records for c in {normalize_caption(c) for c in r.captions})
    shared = {c: n for c, n in images_per_caption.items() if n > 1}
    return {"within_image": int(within),
            "images_with_all_distinct": int(sum(len({normalize_caption(c) for c in r.captions}) == len(r.captions)
                                                for r in records)),
            "across_images_strings": len(shared),
            "across_images_captions": int(sum(shared.values()))}


def dataset_summary(name: str, classes: list[str], records: list[ImageRecord], max_words: int,
                    tokenizer_vocab: int | None = None) -> dict:
    """The data.json content: dataset, classes, images/captions per split, caption and class statistics."""
    by_split = {s: [r for r in records if r.split == s] for s in SPLITS}
    per_class = Counter(r.scene for r in records)
    return {
        "dataset": name,
        "classes": len(classes),
        "images": {s: len(rs) for s, rs in by_split.items()},
        "captions": {s: sum(len(r.captions) for r in rs) for s, rs in by_split.items()},
        "unknown_scene": {s: sum(r.scene == UNKNOWN_SCENE for r in rs) for s, rs in by_split.items()},
        "caption_stats": caption_stats(records, max_words),
        "tokenizer_vocab": tokenizer_vocab,
        "duplicate_captions": {s: duplicate_stats(rs) for s, rs in by_split.items()},
        "per_class": {c: {s: sum(r.scene == c for r in rs) for s, rs in by_split.items()}
                      for c in list(classes) + ([UNKNOWN_SCENE] if per_class.get(UNKNOWN_SCENE) else [])},
        "class_names": list(classes),
    }


def save_sample_grid(classes: list[str], records: list[ImageRecord], pixels: np.ndarray, path: str | os.PathLike,
                     per_class: int = 3, max_classes: int = 20, columns: int = 6) -> None:
    """Figure with ``per_class`` images of each class, titled with class and first caption; written atomically."""
    import textwrap

    plt = files.pyplot()
    panels = [i for c in classes[:max_classes] for i in [j for j, r in enumerate(records) if r.scene == c][:per_class]]
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, panels):
        ax.imshow(pixels[i])
        caption = textwrap.shorten(records[i].captions[0], 90, placeholder="...")
        ax.set_title(f"{records[i].scene}\n" + textwrap.fill(caption, 34), fontsize=7)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=90)
