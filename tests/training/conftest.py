"""Shared fixtures for the training tests: a tiny real prepared dataset, its tokenizer, a tiny PIR config."""

from __future__ import annotations

import pytest

from tests.prepared_fixture import make_prepared

from pir.config import model_config


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """(prepared dataset, tokenizer): 40 generated images at 64 px, 4 classes, 2 captions each."""
    return make_prepared(tmp_path_factory.mktemp("prepared"), images=40, image_size=64, classes=4,
                         captions_per_image=2, split=(0.6, 0.2, 0.2), vocab_size=300)


@pytest.fixture(scope="session")
def tiny_model_cfg(tiny_data):
    """PIR's tiny preset shrunk further: 56 px, two Swin stages (7x7 = 49 tokens + global, as the paper)."""
    _, tokenizer = tiny_data
    return model_config("tiny", image_size=56, swin_depths=(1, 1), swin_heads=(1, 2), text_layers=1,
                        embed_dim=64, heads=2, vocab_size=len(tokenizer), max_tokens=24)
