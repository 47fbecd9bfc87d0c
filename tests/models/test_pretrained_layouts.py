"""Released pretrained weights load exactly, in every layout they come in, or are refused in one line.

- scene prior: a torchvision ResNet classifier file (plain, wrapped, DDP-prefixed, any head size,
  or the authors' nn.Sequential child indices) -> the timm prior, pooled features equal torchvision's;
- vision: a Swin in the original Microsoft layout (22k head, index/mask buffers, downsample at the
  end of a stage) -> timm's layout, features equal the source model's; timm tags resolve without download.
No weights are downloaded: every file is a random-init model saved here.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import timm
import torch
import torchvision
from torch import nn

from tests.models.model_helpers import tiny_config
from pir.config import model_config
from pir.models import backbones, weights

RESNET18 = dict(prior_model="resnet18", prior_channels=(), prior_width=512)


def _torchvision(arch: str, classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(num_classes=classes).eval()
    # BatchNorm statistics away from their init, so that a prior left at its init cannot pass
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


def _torchvision_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    fc, model.fc = model.fc, nn.Identity()
    try:
        with torch.no_grad():
            return model(images)            # = torch.flatten(avgpool(features), 1)
    finally:
        model.fc = fc


def _prior_features(prior: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return prior.eval().forward_head(prior.forward_features(images), pre_logits=True)


LAYOUTS = {
    "plain": lambda sd: sd,
    "model": lambda sd: {"model": sd, "epoch": 30, "max_accuracy": 99.0},
    "state_dict": lambda sd: {"state_dict": sd, "optimizer": {"lr": torch.tensor(0.1)}},
    "module": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    # the authors' prior: nn.Sequential(*resnet.children())[:-1] (no fc), saved as such
    "sequential": lambda sd: {re.sub(r"^(\w+)", lambda m: str(weights.RESNET_CHILDREN.index(m.group(1))), k): v
                              for k, v in sd.items() if not k.startswith("fc.")},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("classes", [30, 45])
def test_resnet18_prior_in_every_layout_gives_torchvision_features(tmp_path, layout, classes):
    source = _torchvision("resnet18", classes, seed=classes)
    path = tmp_path / "prior.pth"
    torch.save(LAYOUTS[layout](source.state_dict()), path)
    logs: list[str] = []
    prior = backbones.create_scene_prior(tiny_config(**RESNET18), num_classes=0, pretrained=str(path), log=logs.append)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_prior_features(prior, images), _torchvision_features(source, images),
                               atol=1e-5, rtol=1e-5)
    assert len(logs) == 1 and f"loaded 120 resnet18 backbone tensors from {path}" in logs[0]
    if layout == "sequential":
        assert "mapped nn.Sequential child indices" in logs[0] and "dropped head" not in logs[0]
    else:
        assert f"dropped head fc.* [{classes} classes]" in logs[0]


def test_safetensors_files_load_too(tmp_path):
    from safetensors.torch import save_file
    source = _torchvision("resnet18", 30, seed=3)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "prior.safetensors")
    prior = backbones.create_scene_prior(tiny_config(**RESNET18), pretrained=str(tmp_path / "prior.safetensors"),
                                         log=lambda _: None)
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_prior_features(prior, images), _torchvision_features(source, images),
                               atol=1e-5, rtol=1e-5)


def test_pretrained_backbone_with_a_fresh_head_for_the_dataset_classes(tmp_path):
    source = _torchvision("resnet18", 30, seed=1)
    torch.save({"model": source.state_dict()}, tmp_path / "aid.pth")
    classifier = backbones.create_scene_prior(tiny_config(**RESNET18), num_classes=7,
                                              pretrained=str(tmp_path / "aid.pth"), log=lambda _: None)
    assert classifier.fc.out_features == 7
    assert torch.equal(classifier.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(classifier.bn1.running_var, source.bn1.running_var)


def test_released_resnet50_layout_loads_exactly(tmp_path):
    """The released prior's shape: an AID (30 classes) ResNet-50 under {"model": ...}."""
    source = _torchvision("resnet50", 30, seed=2)
    torch.save({"model": source.state_dict()}, tmp_path / "aid_28-rsp-resnet-50-ckpt.pth")
    logs: list[str] = []
    prior = backbones.create_scene_prior(tiny_config(prior_model="resnet50", prior_channels=(), prior_width=2048),
                                         pretrained=str(tmp_path / "aid_28-rsp-resnet-50-ckpt.pth"), log=logs.append)
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_prior_features(prior, images), _torchvision_features(source, images),
                               atol=1e-5, rtol=1e-5)
    assert "loaded 318 resnet50 backbone tensors" in logs[0] and "[30 classes]" in logs[0]


def _one_line_error(call, path, match: str):
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and str(path) in message and re.search(match, message), message
    return message


def test_prior_files_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    cfg = tiny_config(**RESNET18)

    def create(path):
        return lambda: backbones.create_scene_prior(cfg, pretrained=str(path), log=lambda _: None)

    swin = backbones.create_vision_encoder(tiny_config(), log=lambda _: None).state_dict()
    cases = {
        "swin.pth": ({"model": swin}, "matches no resnet18 backbone key"),
        "random.pth": ({"a": torch.zeros(3), "b.weight": torch.ones(2, 2)}, "matches no resnet18 backbone key"),
        "resnet34.pth": (_torchvision("resnet34", 30, 0).state_dict(), r"does not fit resnet18 \(unexpected"),
        "narrow.pth": (backbones.create_scene_prior(tiny_config(), 5).state_dict(), "shape mismatches"),
        "nothing.pth": ({"epoch": 3}, "no tensors found"),
    }
    partial = _torchvision("resnet18", 30, 0).state_dict()
    cases["partial.pth"] = ({k: v for k, v in partial.items() if not k.startswith("layer4.")},
                            r"missing \d+: layer4\.0\.conv1\.weight")
    for name, (content, match) in cases.items():
        torch.save(content, tmp_path / name)
        _one_line_error(create(tmp_path / name), tmp_path / name, match)


def test_pickled_objects_are_refused_with_the_way_out(tmp_path):
    """weights_only loading: a training checkpoint that pickles its config is refused, saying why."""
    import argparse
    path = tmp_path / "train.pth"
    torch.save({"model": _torchvision("resnet18", 30, 0).state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    _one_line_error(lambda: backbones.create_scene_prior(tiny_config(**RESNET18), pretrained=str(path)), path,
                    "refuses the pickled argparse.Namespace.*re-save just its state_dict")


# --------------------------------------------------------------------------- Swin, original Microsoft layout

def _original_microsoft_layout(encoder: nn.Module, classes: int = 21841) -> dict[str, torch.Tensor]:
    """timm Swin -> the layout of Microsoft's released .pth (the inverse of timm's checkpoint_filter_fn).

    Downsample at the end of stage i (timm: start of stage i+1), a ``head`` of ``classes``, and the
    buffers timm recomputes: ``relative_position_index`` per block, ``attn_mask`` per shifted block.
    """
    state = {re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k): v
             for k, v in encoder.state_dict().items()}
    for name, module in encoder.named_modules():
        if hasattr(module, "relative_position_index"):
            state[f"{name}.relative_position_index"] = module.relative_position_index.clone()
        if getattr(module, "attn_mask", None) is not None:
            state[f"{name}.attn_mask"] = module.attn_mask.clone()
    width = encoder.num_features
    state["head.weight"] = torch.randn(classes, width) * 0.02
    state["head.bias"] = torch.zeros(classes)
    return state


def test_swin_22k_in_the_original_layout_loads_every_tensor(tmp_path):
    # the real Swin-T geometry (about 2 s): four stages, shifted windows with attn_mask buffers
    cfg = model_config("paper")
    torch.manual_seed(21)
    source = backbones.create_vision_encoder(cfg).eval()
    original = _original_microsoft_layout(source)
    assert "layers.2.downsample.reduction.weight" in original and "layers.3.downsample.reduction.weight" not in original
    assert sum(k.endswith("attn_mask") for k in original) == 5 and original["head.weight"].shape == (21841, 768)
    torch.save({"model": original}, tmp_path / "swin_tiny_patch4_window7_224_22k.pth")
    logs: list[str] = []
    torch.manual_seed(99)   # a different random init: only the file can make the two agree
    loaded = backbones.create_vision_encoder(
        dataclasses.replace(cfg, vision_pretrained=str(tmp_path / "swin_tiny_patch4_window7_224_22k.pth")),
        log=logs.append).eval()
    assert loaded.state_dict().keys() == source.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())
    images = torch.randn(1, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(images), source.forward_features(images),
                                   atol=1e-5, rtol=1e-5)
    buffers = sum(k.endswith(("relative_position_index", "attn_mask")) for k in original)
    assert len(logs) == 1 and f"loaded {len(source.state_dict())} swin_tiny_patch4_window7_224 backbone" in logs[0]
    assert "dropped head head.fc.* [21841 classes]" in logs[0] and f"ignored {buffers} other keys" in logs[0]
    assert "checkpoint filter" in logs[0]


def test_swin_files_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    cfg = tiny_config()
    load = lambda path: (lambda: backbones.create_vision_encoder(  # noqa: E731
        dataclasses.replace(cfg, vision_pretrained=str(path)), log=lambda _: None))
    torch.save({"model": _torchvision("resnet18", 30, 0).state_dict()}, tmp_path / "resnet.pth")
    _one_line_error(load(tmp_path / "resnet.pth"), tmp_path / "resnet.pth", "matches no swin_tiny_patch4_window7_224")
    deeper = backbones.create_vision_encoder(tiny_config(swin_depths=(1, 1, 4), swin_heads=(1, 2, 4)))
    torch.save({"model": _original_microsoft_layout(deeper, 10)}, tmp_path / "deeper.pth")
    _one_line_error(load(tmp_path / "deeper.pth"), tmp_path / "deeper.pth", "does not fit swin_tiny_patch4_window7_224")


# --------------------------------------------------------------------------- timm tags (no download)

def test_timm_tags_resolve_to_that_tags_weights():
    arch = "swin_tiny_patch4_window7_224"
    source = weights.resolve_weights(arch, f"{arch}.ms_in22k", "model.vision_pretrained")
    assert source == weights.WeightsSource(f"{arch}.ms_in22k", hub=True)
    resolved = timm.create_model(source.model_name, pretrained=False, num_classes=0).pretrained_cfg
    assert resolved["tag"] == "ms_in22k" and resolved["num_classes"] == 21841
    assert weights.resolve_weights(arch, "timm", "x") == weights.WeightsSource(arch, hub=True)
    assert weights.resolve_weights(arch, "", "x") == weights.WeightsSource(arch, hub=False)
    with pytest.raises(ValueError, match=r"no such timm pretrained tag .*ms_in22k"):
        weights.resolve_weights(arch, f"{arch}.in21k_bogus", "model.vision_pretrained")
    with pytest.raises(ValueError, match="a timm tag of resnet50, but the model is swin_tiny"):
        weights.resolve_weights(arch, "resnet50.a1_in1k", "model.vision_pretrained")
    with pytest.raises(FileNotFoundError, match="gone/swin.pth: model.vision_pretrained weights file not found"):
        weights.resolve_weights(arch, "gone/swin.pth", "model.vision_pretrained")


def test_a_tag_asks_timm_for_its_weights_strictly_then_drops_the_head(monkeypatch):
    """create_vision_encoder with a tag: timm builds that tag with its own 21841-class head (so timm
    loads strictly), then the head goes. The download itself is stubbed out."""
    calls = []
    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        calls.append((name, pretrained, kwargs["num_classes"]))
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(backbones.timm, "create_model", offline)
    cfg = tiny_config(vision_pretrained="swin_tiny_patch4_window7_224.ms_in22k")
    encoder = backbones.create_vision_encoder(cfg)
    assert calls == [("swin_tiny_patch4_window7_224.ms_in22k", True, 21841)]
    assert encoder.num_classes == 0 and isinstance(encoder.head.fc, nn.Identity)
    assert encoder.pretrained_cfg["tag"] == "ms_in22k"
