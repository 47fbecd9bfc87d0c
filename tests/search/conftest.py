"""A tiny project for the search tests: an untrained tiny PIR checkpoint where the train stage puts it
(data/train/best.pt), the fetch stage's tokenizer beside it, and a folder of small scene images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pir.config import model_config
from pir.data.text import load_tokenizer, train_wordpiece
from pir.models import create_model
from pir.models.checkpoint import save_checkpoint

SCENES = ("forest", "beach", "airport")
CAPTIONS = [f"a {scene} with {w} things" for scene in SCENES for w in ("many", "few", "green", "grey")]


def scene_pixels(label: int, i: int, side: int = 48) -> np.ndarray:
    rng = np.random.default_rng(100 * label + i)
    base = np.zeros((side, side, 3), np.uint8)
    base[..., label] = 150
    return base + rng.integers(0, 90, (side, side, 3), dtype=np.uint8)


def write_images(folder: Path, per_scene: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label, scene in enumerate(SCENES):
        for i in range(start, start + per_scene):
            path = folder / f"{scene}_{i}.png"
            Image.fromarray(scene_pixels(label, i)).save(path)
            written.append(path)
    return written


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """<root>/data/train/best.pt and <root>/data/fetch/tokenizer, as the pipeline lays them out."""
    root = tmp_path_factory.mktemp("search_project")
    train_wordpiece(CAPTIONS, 80, root / "data" / "fetch" / "tokenizer")
    vocab = len(load_tokenizer(root / "data" / "fetch" / "tokenizer"))
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab_size=vocab, image_size=32, filter_size=2)
    save_checkpoint(root / "data" / "train" / "best.pt", create_model(cfg), cfg, epoch=1, model_key="search-tests")
    return root


@pytest.fixture(scope="session")
def checkpoint(tiny_project) -> Path:
    return tiny_project / "data" / "train" / "best.pt"


@pytest.fixture(scope="session")
def encoder(checkpoint):
    from pir.search.encoder import load_encoder
    return load_encoder(checkpoint)
