"""scene_prior.epochs=0: the released prior is used as it is (no training), scored by a
nearest-centroid probe, and written in the format the train stage loads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision

from pir.config import ScenePriorConfig
from pir.files import load_torch
from pir.models import create_model
from pir.models.checkpoint import load_scene_prior_weights
from pir.training.scene_prior import (AS_RELEASED_NEEDS_FILE, PROBE, build_scene_prior, centroid_predict,
                                      check_prior_config, class_centroids, predict, prepared_scene_sets,
                                      prior_report, scene_prior_model, top1, train_scene_prior,
                                      write_prior_outputs)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """An AID-like released prior: a torchvision ResNet-18 with a 30-class head, under {"model": ...}."""
    torch.manual_seed(5)
    source = torchvision.models.resnet18(num_classes=30)
    for module in source.modules():                # statistics a training pass would move
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("released") / "aid_28-rsp-resnet-18-ckpt.pth"
    torch.save({"model": source.state_dict(), "epoch": 100}, path)
    return path, {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}


@pytest.fixture
def resnet18_cfg(tiny_model_cfg):
    return dataclasses.replace(tiny_model_cfg, prior_model="resnet18", prior_channels=(), prior_width=512)


def test_epochs_zero_uses_the_file_as_it_is_and_writes_every_output(tiny_data, resnet18_cfg, released, tmp_path):
    prepared, _ = tiny_data
    path, backbone = released
    cfg = ScenePriorConfig(pretrained=str(path), epochs=0, batch_size=8)
    sets, excluded = prepared_scene_sets(prepared)
    logs: list[str] = []
    model = scene_prior_model(cfg, resnet18_cfg, len(prepared.classes), log=logs.append)
    run = build_scene_prior(model, sets, len(prepared.classes), cfg, resnet18_cfg, seed=0, device=CPU, log=logs.append)
    report = prior_report(run, prepared.classes, sets, excluded, "train split scene labels", cfg.pretrained)
    outputs = tmp_path / "prior.pt", tmp_path / "scene_prior.json", tmp_path / "confusion.png"
    write_prior_outputs(run, report, prepared.classes, resnet18_cfg, *outputs)

    assert "loaded 120 resnet18 backbone tensors" in logs[0] and "[30 classes]" in logs[0]
    saved = load_torch(outputs[0])
    assert saved["epoch"] == 0 and saved["classes"] == list(prepared.classes)
    assert saved["model"].keys() == backbone.keys()                 # headless: no fc.* at all
    assert all(torch.equal(saved["model"][k], v) for k, v in backbone.items())   # untrained, BN stats too
    assert report["evaluation"] == PROBE and report["pretrained"] == str(path)
    assert report["best_epoch"] == 0 and report["epochs_run"] == 0 and run.history == []
    for split in ("val", "test"):
        assert 0.0 <= report[f"{split}_top1"] <= 100.0
    assert sum(run.test_confusion.ravel()) == len(sets["test"])
    assert outputs[2].read_bytes()[:4] == b"\x89PNG"

    # the train stage's contract: PIR's prior takes these weights, strictly
    pir = create_model(resnet18_cfg)
    load_scene_prior_weights(pir, outputs[0])
    assert all(torch.equal(pir.scene_prior.state_dict()[k], v) for k, v in backbone.items())


def test_epochs_zero_without_a_file_is_a_one_line_error_before_any_work(resnet18_cfg):
    cfg = ScenePriorConfig(epochs=0)
    for call in (lambda: check_prior_config(cfg), lambda: scene_prior_model(cfg, resnet18_cfg, 4),
                 lambda: build_scene_prior(None, {}, 4, cfg, resnet18_cfg, 0, CPU)):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == AS_RELEASED_NEEDS_FILE
        assert AS_RELEASED_NEEDS_FILE == ("scene_prior.epochs=0 uses the prior as it is and needs "
                                          "scene_prior.pretrained=<file>")


def test_nearest_centroid_probe_by_cosine():
    features = torch.tensor([[1.0, 0.1, 0.0], [3.0, 0.0, 0.2], [0.0, 2.0, 0.0], [0.1, 1.0, 0.0]])
    centroids = class_centroids(features, np.array([0, 0, 1, 1]), n_classes=3)
    assert centroids.shape == (3, 3) and torch.equal(centroids[2], torch.zeros(3))     # class 2: no train image
    torch.testing.assert_close(centroids.norm(dim=1)[:2], torch.ones(2))
    queries = torch.tensor([[10.0, 1.0, 0.0], [0.2, 0.3, 0.0], [0.0, 0.0, 5.0]])      # scale does not matter
    assert centroid_predict(centroids, queries).tolist() == [0, 1, 0]                   # never the absent class


def test_trained_path_is_the_plain_training_loop(tiny_data, tiny_model_cfg):
    """epochs > 0 through build_scene_prior: the same weights and scores as train_scene_prior + predict,
    and the report keeps its former keys."""
    prepared, _ = tiny_data
    sets, excluded = prepared_scene_sets(prepared)
    cfg = ScenePriorConfig(epochs=1, batch_size=8, lr=3e-3, patience=1)
    n = len(prepared.classes)
    torch.manual_seed(0)
    run = build_scene_prior(scene_prior_model(cfg, tiny_model_cfg, n), sets, n, cfg, tiny_model_cfg, seed=0,
                            device=CPU, log=lambda _: None)
    torch.manual_seed(0)
    model = scene_prior_model(cfg, tiny_model_cfg, n)
    result = train_scene_prior(model, sets, cfg, tiny_model_cfg, seed=0, device=CPU, log=lambda _: None)
    assert run.state_dict.keys() == result.state_dict.keys() and run.best_epoch == result.best_epoch == 1
    assert all(torch.equal(run.state_dict[k], v) for k, v in result.state_dict.items())
    assert run.val_top1 == top1(predict(model, sets["val"], tiny_model_cfg.image_size, 8, CPU), sets["val"].labels)
    report = prior_report(run, prepared.classes, sets, excluded, "train split scene labels")
    assert list(report) == ["classes", "source", "best_epoch", "epochs_run", "val_top1", "test_top1",
                            "per_class_test_accuracy", "images", "excluded_unknown_scene"]
