"""Joint t-SNE and its figures."""

from __future__ import annotations

import numpy as np

from pir import files
from pir.analysis.tsne import class_similarity_figure, joint_tsne, subsample, tsne_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_subsample_is_seeded_and_capped():
    assert subsample(10, 20, 0).tolist() == list(range(10))
    picked = subsample(1000, 50, 3)
    assert len(picked) == 50 and len(set(picked)) == 50 and (np.diff(picked) > 0).all()
    assert (picked == subsample(1000, 50, 3)).all()


def test_joint_tsne_is_deterministic_and_separates_clusters(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 15)
    centres = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])
    images = centres[labels] + 0.1 * rng.standard_normal((30, 4))
    texts = centres[labels] + 0.1 * rng.standard_normal((30, 4))
    coords = joint_tsne(images, texts, perplexity=30.0, seed=0, max_iter=250)  # perplexity capped below 60 points
    assert coords.shape == (60, 2)
    np.testing.assert_array_equal(coords, joint_tsne(images, texts, perplexity=30.0, seed=0, max_iter=250))
    both = np.concatenate([labels, labels])
    gap = np.linalg.norm(coords[both == 0].mean(0) - coords[both == 1].mean(0))
    spread = max(coords[both == c].std(0).max() for c in (0, 1))
    assert gap > 2 * spread
    files.save_figure(tsne_figure(coords, ["image"] * 30 + ["text"] * 30, both, ["a", "b"]), tmp_path / "t.png")
    files.save_figure(class_similarity_figure(np.eye(2), ["a", "b"]), tmp_path / "c.png")
    for name in ("t.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
