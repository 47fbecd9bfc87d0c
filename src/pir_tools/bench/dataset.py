"""The synthetic data the loader, embed and search rows read: written the way the fetch stage writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pir.config import SyntheticConfig
from pir.data.prepared import PreparedDataset, load_prepared, write_prepared


def make_bench_dataset(root: Path, images: int, cache_res: int, seed: int = 0) -> tuple[PreparedDataset, Any]:
    """A synthetic prepared dataset (all images in train) and a WordPiece tokenizer trained on it."""
    from pir.data.synthetic import generate
    from pir.data.text import load_tokenizer, train_wordpiece
    classes, records, pixels = generate(
        SyntheticConfig(images=images, image_size=cache_res, classes=min(16, images), split=(1.0, 0.0, 0.0)),
        seed=seed, progress=False)
    write_prepared(root, "bench", classes, records, pixels)
    train_wordpiece([c for r in records for c in r.captions], 2000, root / "tokenizer")
    return load_prepared(root), load_tokenizer(root / "tokenizer")
