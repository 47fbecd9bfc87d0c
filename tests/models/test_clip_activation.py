"""The activation a CLIP model computes with, resolved from names (pir.clip_known), really builds those
modules; the RN50 and ViT-H-14 presets; checkpoints from before model.clip_activation still load.

Weights are written here from randomly initialised open_clip models (nothing is downloaded); ViT-H-14
(1B parameters) is checked by its config only, never built.
"""

from __future__ import annotations

import dataclasses

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from torch import nn

from pir.config import PRESETS, model_config, to_dict
from pir.data.text import ClipTokenizer, tokenize
from pir.files import load_torch, save_torch
from pir.models.checkpoint import load_model, save_checkpoint
from pir.models.clip import ClipPIR, clip_config, load_clip_checkpoint

ARCH = "PIR-CLIP-tiny"
PLAIN = {"use_vir": False, "use_lca": False, "use_affiliation": False}


def activations(model: nn.Module) -> set[str]:
    """Which activations the model's transformer MLPs hold."""
    kinds = {type(m) for m in model.modules()}
    return {name for name, kind in (("quickgelu", QuickGELU), ("gelu", nn.GELU)) if kind in kinds}


@pytest.fixture(scope="module")
def quick_reference():
    """A QuickGELU model of the tiny architecture, as OpenAI-initialised weights are."""
    torch.manual_seed(0)
    return open_clip.create_model(ARCH, quick_gelu=True).eval()


@pytest.mark.parametrize("name,expected", [("RemoteCLIP-ViT-B-32.pt", "quickgelu"), ("RS5M_ViT-B-32.pt", "quickgelu"),
                                           ("RS5M_ViT-H-14.pt", "gelu"), ("my_clip.pt", "gelu")])
def test_the_name_of_the_weights_decides_the_modules(name, expected, quick_reference, tmp_path, capsys):
    torch.save(quick_reference.state_dict(), tmp_path / name)
    model = load_clip_checkpoint(tmp_path / name, ARCH)          # clip_activation "auto": resolved by ClipPIR
    assert model.cfg.clip_activation == expected and activations(model.clip) == {expected}
    assert f"({expected}: {name}: " in capsys.readouterr().out   # the one loading line says which and why


def test_quickgelu_embeds_as_open_clips_quickgelu_model(quick_reference, tmp_path):
    torch.save(quick_reference.state_dict(), tmp_path / "RemoteCLIP-ViT-B-32.pt")
    model = load_clip_checkpoint(tmp_path / "RemoteCLIP-ViT-B-32.pt", ARCH, log=lambda _: None)
    explicit = ClipPIR(dataclasses.replace(clip_config(ARCH), clip_activation="gelu",
                                           clip_weights=str(tmp_path / "RemoteCLIP-ViT-B-32.pt")), log=lambda _: None)
    assert activations(explicit.clip) == {"gelu"}                 # an explicit value overrides the name
    images = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        ours, theirs = model.encode_image(images), quick_reference.encode_image(images, normalize=True)
        wrong = explicit.eval().encode_image(images)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert (wrong - theirs).abs().max() > 1e-3                    # the other activation embeds differently


def test_checkpoints_saved_with_clip_quick_gelu_still_load(quick_reference, tmp_path):
    for quick, expected in ((True, "quickgelu"), (False, "gelu")):
        cfg = model_config("clip-tiny", clip_activation=expected, **PLAIN)
        save_checkpoint(tmp_path / "best.pt", ClipPIR(cfg), cfg, epoch=0)
        stored = load_torch(tmp_path / "best.pt")
        del stored["model_config"]["clip_activation"]             # as written before the key existed
        stored["model_config"]["clip_quick_gelu"] = quick
        save_torch(tmp_path / "old.pt", stored)
        model, loaded_cfg, _ = load_model(tmp_path / "old.pt")
        assert loaded_cfg.clip_activation == expected and activations(model.clip) == {expected}


def test_rn50_builds_and_embeds_as_open_clip_in_plain_clip_mode():
    torch.manual_seed(0)
    cfg = model_config("clip-rn50", use_lca=False)
    assert (cfg.clip_model, cfg.embed_dim, cfg.image_size, cfg.use_vir) == ("RN50", 1024, 224, False)
    model = ClipPIR(cfg).eval()
    assert model.cfg.clip_activation == "gelu"                   # random init: open_clip's default
    images = torch.randn(1, 3, 224, 224)
    ids, mask = tokenize(ClipTokenizer(), ["two bridges over a river"], 77)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), model.clip.encode_image(images, normalize=True),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(ids, mask),
                                   model.clip.encode_text(F.pad(ids, (0, 77 - ids.shape[1])), normalize=True),
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError) as caught:                     # VIR needs patch tokens: refused in one line
        ClipPIR(dataclasses.replace(cfg, use_vir=True))
    assert "model.use_vir needs image patch tokens" in str(caught.value) and "ModifiedResNet" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_vit_h14_preset_matches_open_clips_config_without_building_it():
    preset, arch = PRESETS["clip-h14"], open_clip.get_model_config("ViT-H-14")
    assert preset.clip_model == "ViT-H-14" and preset.embed_dim == arch["embed_dim"] == 1024
    assert preset.image_size == arch["vision_cfg"]["image_size"] == 224
    assert preset.vocab_size == arch["text_cfg"]["vocab_size"] and preset.embed_dim % preset.heads == 0
    assert clip_config("ViT-H-14") == dataclasses.replace(preset, **PLAIN, max_tokens=77)
    rn50 = open_clip.get_model_config("RN50")
    assert PRESETS["clip-rn50"].embed_dim == rn50["embed_dim"] and rn50["vision_cfg"]["image_size"] == 224
    assert to_dict(model_config("clip-h14"))["clip_activation"] == "auto"   # resolved where it is built
