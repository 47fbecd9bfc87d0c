"""A small generated dataset in the canonical prepared layout, with its WordPiece tokenizer.

Shared by the loader, embedding and training tests (``from tests.prepared_fixture import make_prepared``).
"""

from __future__ import annotations

from pathlib import Path

from pir.config import SyntheticConfig
from pir.data.prepared import PreparedDataset, load_prepared, write_prepared
from pir.data.synthetic import generate
from pir.data.text import load_tokenizer, train_wordpiece


def make_prepared(root: Path, *, images: int, image_size: int, classes: int, captions_per_image: int,
                  split: tuple[float, float, float], vocab_size: int):
    """(prepared dataset, tokenizer) generated with seed 0 into ``root``."""
    names, records, pixels = generate(SyntheticConfig(images=images, image_size=image_size, classes=classes,
                                                      captions_per_image=captions_per_image, split=split),
                                      seed=0, progress=False)
    write_prepared(root, "synthetic", names, records, pixels)
    train_wordpiece([c for r in records for c in r.captions], vocab_size, root / "tokenizer")
    prepared: PreparedDataset = load_prepared(root)
    return prepared, load_tokenizer(root / "tokenizer")
