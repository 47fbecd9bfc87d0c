"""pir.clip_known: what released CLIP files' names say (activation, seen RSICD/RSITMD training images), and
``model.clip_activation: auto`` resolved where the pipeline builds its configs, so runs record the value."""

from __future__ import annotations

import pytest
import yaml

from pir.clip_known import NOT_KNOWN, resolve_activation, seen_by_name, weights_name
from pir.pipeline.params import PipelineConfig

HUB_ID = "hf-hub:chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt@main"


@pytest.mark.parametrize("weights,activation,seen", [
    ("/w/RemoteCLIP-RN50.pt", "quickgelu", "yes"), ("RemoteCLIP-ViT-B-32.pt", "quickgelu", "yes"),
    ("RemoteCLIP-ViT-L-14.pt", "quickgelu", "yes"), (HUB_ID, "quickgelu", "yes"),
    ("RS5M_ViT-B-32.pt", "quickgelu", "unknown"), ("RS5M_ViT-B-32_RET-2.pt", "quickgelu", "yes"),
    ("/w/RS5M_ViT-B-32_RET-3.pt", "quickgelu", "yes"), ("hf-hub:Zilun/GeoRSCLIP/RS5M_ViT-H-14.pt", "gelu", "unknown"),
    ("ViT-B-32.pt", "quickgelu", "no"), ("RN50.pt", "quickgelu", "no"), ("ViT-L-14-336px.pt", "quickgelu", "no"),
    ("my_clip.pt", "gelu", "unknown"), ("/w/best.pt", "gelu", "unknown"),
])
def test_names_say_activation_and_seen(weights, activation, seen):
    assert resolve_activation("ViT-B-32", weights)[0] == activation
    assert seen_by_name(weights)[0] == seen


def test_reasons_name_the_file_and_unknown_names_fall_back_to_gelu():
    assert weights_name(HUB_ID) == "RemoteCLIP-ViT-B-32.pt" and weights_name("/w/folder/") == "folder"
    activation, why = resolve_activation("ViT-B-32", "/w/my_clip.pt")
    assert activation == "gelu" and why.startswith("my_clip.pt: ") and NOT_KNOWN in why
    assert seen_by_name("/w/my_clip.pt") == ("unknown", NOT_KNOWN)
    assert resolve_activation("ViT-B-32-quickgelu", "")[0] == "quickgelu"      # the architecture's own name
    assert resolve_activation("ViT-B-32", "")[0] == "gelu"                     # random init
    assert resolve_activation("ViT-B-32-quickgelu", "/w/RS5M_ViT-H-14.pt")[0] == "gelu"   # the weights first


def test_the_pipeline_resolves_auto_and_records_the_value():
    remote = PipelineConfig.from_recipe("clip", model={"clip_weights": "/w/RemoteCLIP-ViT-B-32.pt"})
    assert remote.model.clip_activation == "quickgelu"
    assert yaml.safe_load(remote.to_yaml())["model"]["clip_activation"] == "quickgelu"   # pir recipe show
    explicit = PipelineConfig.from_recipe("clip", model={"clip_weights": "/w/RemoteCLIP-ViT-B-32.pt",
                                                         "clip_activation": "gelu"})
    assert explicit.model.clip_activation == "gelu"
    # no starting weights: the released file evaluate scores decides
    scored = PipelineConfig.from_recipe("clip", evaluate={"checkpoint": "/w/RS5M_ViT-B-32.pt"})
    assert scored.model.clip_activation == "quickgelu"
    assert PipelineConfig.from_recipe("clip").model.clip_activation == "gelu"
    with pytest.raises(ValueError, match="model.clip_activation = 'fast': choose from auto, quickgelu, gelu"):
        PipelineConfig.from_recipe("clip", model={"clip_activation": "fast"})


def test_rn50_with_vir_is_a_problem_before_any_stage_runs():
    cfgs = PipelineConfig.from_recipe("clip", model={"preset": "clip-rn50", "use_vir": True})
    assert any("model.use_vir needs image patch tokens" in p and "RN50" in p for p in cfgs.problems())
    assert not PipelineConfig.from_recipe("clip", model={"preset": "clip-rn50"}).problems()
