"""Checkpoints (ours), scene-prior weights, and pretrained backbones from local files (no downloads)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from transformers import BertModel

from tests.models.model_helpers import build_tiny, random_batch, tiny_config
from pir.config import to_dict
from pir.files import save_torch
from pir.models import backbones
from pir.models.checkpoint import load_model, load_scene_prior_weights, save_checkpoint


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _embeddings(model, batch):
    images, input_ids, mask, *_ = batch
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(input_ids, mask)


def test_checkpoint_round_trip(tmp_path):
    model = build_tiny(seed=3, use_triplet=True).eval()
    path = tmp_path / "best.pt"
    save_checkpoint(path, model, model.cfg, epoch=4, mlflow_run_id="abc")
    loaded, cfg, extra = load_model(path)
    assert cfg == model.cfg and extra == {"epoch": 4, "mlflow_run_id": "abc"}
    assert not loaded.training and _same_state(model, loaded)
    batch = random_batch(cfg)
    for ours, theirs in zip(_embeddings(model, batch), _embeddings(loaded, batch)):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


def test_checkpoint_does_not_reload_pretrained_weights(tmp_path):
    """A checkpoint naming a pretrained file rebuilds without it: the weights come from the checkpoint."""
    cfg = dataclasses.replace(tiny_config(), vision_pretrained=str(tmp_path / "gone.pth"))
    model = build_tiny(seed=1)
    save_torch(tmp_path / "ckpt.pt", {"model": model.state_dict(), "model_config": to_dict(cfg)})
    loaded, loaded_cfg, _ = load_model(tmp_path / "ckpt.pt")
    assert loaded_cfg.vision_pretrained.endswith("gone.pth") and _same_state(model, loaded)


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt: checkpoint not found"):
        load_model(tmp_path / "missing.pt")
    model = build_tiny()
    state = model.state_dict()
    state.pop("head_img.weight")
    save_torch(tmp_path / "broken.pt", {"model": state, "model_config": to_dict(model.cfg)})
    with pytest.raises(ValueError, match=r"broken.pt: weights do not fit the model .*head_img.weight") as err:
        load_model(tmp_path / "broken.pt")
    assert "\n" not in str(err.value)
    save_torch(tmp_path / "other.pt", {"weights": 1})
    with pytest.raises(ValueError, match="other.pt: not a PIR checkpoint"):
        load_model(tmp_path / "other.pt")


def test_scene_prior_weights_load_without_classifier(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(7)
    classifier = backbones.create_scene_prior(cfg, num_classes=5)
    save_torch(tmp_path / "prior.pt", {"model": classifier.state_dict(), "model_config": to_dict(cfg),
                                       "classes": list("abcde")})
    model = build_tiny()
    load_scene_prior_weights(model, tmp_path / "prior.pt")
    expected = {k: v for k, v in classifier.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(model.scene_prior.state_dict()[k], v) for k, v in expected.items())
    assert not model.scene_prior.conv1.weight.requires_grad

    other = backbones.create_scene_prior(dataclasses.replace(cfg, prior_channels=(8, 16, 32, 128)), 5)
    save_torch(tmp_path / "wrong.pt", {"model": other.state_dict()})
    with pytest.raises(ValueError, match=r"wrong.pt: weights do not fit the model \(.*size mismatch"):
        load_scene_prior_weights(model, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="no scene prior"):
        load_scene_prior_weights(build_tiny(use_vir=False), tmp_path / "prior.pt")


def _original_swin_layout(state_dict):
    """timm Swin keys -> the original Microsoft layout (downsample at the end of the previous stage)."""
    return {re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k): v
            for k, v in state_dict.items()}


@pytest.mark.parametrize("layout", ["timm", "original"])
def test_swin_from_local_file(tmp_path, layout):
    cfg = tiny_config()
    torch.manual_seed(11)
    source = backbones.create_vision_encoder(cfg)
    state = source.state_dict() if layout == "timm" else _original_swin_layout(source.state_dict())
    torch.save({"model": state}, tmp_path / "swin.pth")
    loaded = backbones.create_vision_encoder(dataclasses.replace(cfg, vision_pretrained=str(tmp_path / "swin.pth")))
    assert _same_state(source, loaded)


def test_bert_from_local_directory(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(12)
    BertModel(backbones.bert_config(cfg), add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    pretrained = dataclasses.replace(cfg, text_pretrained=True, text_model=str(tmp_path / "bert"))
    source = BertModel.from_pretrained(tmp_path / "bert", add_pooling_layer=False)
    assert _same_state(source, backbones.create_text_encoder(pretrained))
    with pytest.raises(ValueError, match="text_width=64 but the model has 128"):
        backbones.create_text_encoder(dataclasses.replace(pretrained, text_width=64))


def test_scene_prior_from_local_file(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(13)
    source = backbones.create_scene_prior(cfg, num_classes=7)
    torch.save(source.state_dict(), tmp_path / "prior.pth")
    loaded = backbones.create_scene_prior(cfg, num_classes=0, pretrained=str(tmp_path / "prior.pth"))
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())


def test_missing_pretrained_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth: model.vision_pretrained weights file not found"):
        backbones.create_vision_encoder(dataclasses.replace(tiny_config(), vision_pretrained=str(tmp_path / "nope.pth")))
    with pytest.raises(FileNotFoundError, match="cannot load pretrained BERT"):
        backbones.create_text_encoder(dataclasses.replace(tiny_config(), text_pretrained=True,
                                                          text_model=str(tmp_path / "nobert")))
