"""Scene-prior training: learns an easy labelling, reports per class, reads class folders, skips unknowns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pir.config import ScenePriorConfig
from pir.models.backbones import create_scene_prior
from pir.evaluation.classification import confusion_matrix, per_class_accuracy, plot_confusion
from pir.training.scene_prior import (SceneSet, load_class_folders, predict, prepared_scene_sets, top1,
                                      train_scene_prior)

CLASSES = 4
COLOURS = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [230, 230, 60]], dtype=np.int16)


def colour_scenes(per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An easy fixture: each class is a noisy flat colour."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), per_class)
    noise = rng.integers(-30, 30, (len(labels), size, size, 3))
    return np.clip(COLOURS[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8), labels


def test_scene_prior_beats_chance_on_easy_fixture(tiny_model_cfg):
    pixels, labels = colour_scenes(per_class=12, size=64, seed=0)
    rows = np.arange(len(labels))
    sets = {"train": SceneSet(pixels, rows[::2], labels[::2]), "val": SceneSet(pixels, rows[1::2], labels[1::2])}
    torch.manual_seed(0)
    model = create_scene_prior(tiny_model_cfg, num_classes=CLASSES)
    cfg = ScenePriorConfig(epochs=4, batch_size=8, lr=3e-3, patience=2)
    result = train_scene_prior(model, sets, cfg, tiny_model_cfg, seed=0, device=torch.device("cpu"), log=lambda _: None)
    accuracy = top1(predict(model, sets["val"], tiny_model_cfg.image_size, 8, torch.device("cpu")), sets["val"].labels)
    assert accuracy >= 75.0                                          # chance is 25 %
    assert result.history[result.best_epoch - 1]["val_top1"] == pytest.approx(accuracy)
    assert set(result.state_dict) == set(model.state_dict())


def test_confusion_and_per_class_accuracy(tmp_path):
    labels = np.array([0, 0, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 0])
    confusion = confusion_matrix(predictions, labels, 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    accuracy = per_class_accuracy(confusion)
    assert accuracy[:3].tolist() == [50.0, 100.0, 0.0] and np.isnan(accuracy[3])
    assert top1(predictions, labels) == 60.0
    plot_confusion(confusion, ["a", "b", "c", "d"], tmp_path / "confusion.png", "test")
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_prepared_sets_exclude_and_count_unknown_scenes(tiny_data):
    prepared, _ = tiny_data
    first_train = int(prepared.split("train").image_rows[0])
    record = prepared.records[first_train]
    prepared.records[first_train] = type(record)(record.file, record.split, "unknown", -1, record.captions)
    try:
        sets, excluded = prepared_scene_sets(prepared)
    finally:
        prepared.records[first_train] = record
    assert excluded == {"train": 1, "val": 0, "test": 0}
    assert len(sets["train"]) == prepared.split("train").n_images - 1 and (sets["train"].labels >= 0).all()
    assert first_train not in sets["train"].rows


def test_class_folders_decode_once_and_carve_val_test(tmp_path):
    pixels, labels = colour_scenes(per_class=5, size=20, seed=1)
    for i, (image, label) in enumerate(zip(pixels, labels)):
        folder = tmp_path / "scenes" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"img_{i}.png")
    (tmp_path / "scenes" / "class0" / "notes.txt").write_text("not an image")
    sets, classes = load_class_folders(tmp_path / "scenes", size=16, seed=0, progress=False)
    assert classes == [f"class{i}" for i in range(CLASSES)]
    assert {k: len(v) for k, v in sets.items()} == {"train": 16, "val": 2, "test": 2}
    all_rows = np.concatenate([s.rows for s in sets.values()])
    assert sorted(all_rows.tolist()) == list(range(20))            # disjoint and complete
    assert sets["train"].pixels.shape == (20, 16, 16, 3) and sets["train"].pixels.dtype == np.uint8
    with pytest.raises(FileNotFoundError, match="missing"):
        load_class_folders(tmp_path / "missing", size=16, seed=0)
