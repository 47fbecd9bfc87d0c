"""The retrieval gallery figure."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pir.evaluation.gallery import DPI, FIGURE_WIDTH_IN, ROW_HEIGHT_IN, choose_queries, save_gallery, top_k


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_top_k_is_best_first():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_k(scores, 10).shape == (2, 3)


def test_choose_queries_is_seeded():
    assert (choose_queries(100, 4, 0) == choose_queries(100, 4, 0)).all()
    assert len(choose_queries(3, 4, 0)) == 3


def test_gallery_is_a_png_of_the_expected_size(tmp_path):
    rng = np.random.default_rng(0)
    txt2img = np.repeat(np.arange(8), 5)
    sims = rng.standard_normal((8, 40)).astype(np.float32)
    pixels = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    captions = [f"caption {i} of image {txt2img[i]}" for i in range(40)]
    save_gallery(tmp_path / "figures" / "gallery.png", sims, txt2img, pixels, captions, n_queries=3, seed=0,
                 scenes=["x"] * 8)
    width, height = png_size(tmp_path / "figures" / "gallery.png")
    assert (width, height) == (int(FIGURE_WIDTH_IN * DPI), int(ROW_HEIGHT_IN * 6 * DPI))


def test_gallery_without_queries_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        save_gallery(tmp_path / "g.png", np.zeros((2, 2)), np.arange(2), np.zeros((2, 4, 4, 3), np.uint8),
                     ["a", "b"], n_queries=0, seed=0)
