"""Import of the authors' checkpoint layout, the paper preset's parameter counts and key coverage."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.models.model_helpers import build_tiny, random_batch
from pir.models import count_parameters, create_model
from pir.models.checkpoint import load_model
from pir.models.official import (convert_official_state_dict, export_official_config, export_official_state_dict,
                                 load_official_checkpoint, official_model_config)
from pir.config import model_config

PAPER_PARAMETERS = 184_642_492
PAPER_PRIOR_PARAMETERS = 23_508_032


def _same_architecture(loaded_cfg, source_cfg) -> bool:
    """Official files do not record drop-path (training only) nor the tokenizer name: paper values come back."""
    unrecorded = ["swin_drop_path", "text_model"]
    if not source_cfg.use_vir:   # a baseline file holds no scene prior to read its architecture from
        unrecorded += ["prior_model", "prior_channels", "prior_width"]
    return dataclasses.replace(loaded_cfg, **{k: getattr(source_cfg, k) for k in unrecorded}) == source_cfg


def _official_file(model, path, bert_prefix):
    """Save ``model`` as the authors' code would: their key layout, persistent Swin/BERT buffers, a BERT pooler."""
    state = {k: v for k, v in export_official_state_dict(model, bert_prefix).items()
             if not k.endswith("num_batches_tracked")}
    text = "text_encoder.bert." if bert_prefix else "text_encoder."
    state["vision_encoder.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    state["vision_encoder.layers.2.blocks.1.attn.attn_mask"] = torch.zeros(1, 49, 49)
    state[text + "embeddings.position_ids"] = torch.arange(512)[None]
    width = model.text_encoder.config.hidden_size
    state[text + "pooler.dense.weight"] = torch.zeros(width, width)
    torch.save({"model": state, "config": export_official_config(model.cfg)}, path)


@pytest.mark.parametrize("bert_prefix", [False, True])
def test_official_layout_round_trip(tmp_path, bert_prefix):
    source = build_tiny(seed=9, text_mask=False).eval()
    _official_file(source, tmp_path / "checkpoint_best.pth", bert_prefix)
    loaded = load_official_checkpoint(tmp_path / "checkpoint_best.pth")
    assert _same_architecture(loaded.cfg, source.cfg) and not loaded.training
    batch = random_batch(source.cfg)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(batch[0]), source.encode_image(batch[0]), atol=0, rtol=0)
        torch.testing.assert_close(loaded.encode_text(*batch[1:3]), source.encode_text(*batch[1:3]), atol=0, rtol=0)
        torch.testing.assert_close(loaded(*batch)["loss"], source(*batch)["loss"], atol=0, rtol=0)
    via_load_model, cfg, extra = load_model(tmp_path / "checkpoint_best.pth")
    assert _same_architecture(cfg, source.cfg) and extra["official_config"]["use_affil_loss"] is True


def test_official_baseline_round_trip(tmp_path):
    source = build_tiny(seed=2, text_mask=False, use_vir=False, use_lca=False, use_affiliation=False).eval()
    _official_file(source, tmp_path / "baseline.pth", bert_prefix=False)
    loaded = load_official_checkpoint(tmp_path / "baseline.pth")
    assert _same_architecture(loaded.cfg, source.cfg) and not hasattr(loaded, "temp2")


def test_official_mismatch_is_one_line_error(tmp_path):
    model = build_tiny(text_mask=False)
    state = export_official_state_dict(model)
    state["head_img.extra"] = torch.zeros(1)
    del state["txt_ca.0.norm1.weight"]
    torch.save({"model": state, "config": {}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad.pth: weights do not fit the model \(missing 1: "
                                         r"\['txt_ca.0.norm1.weight'\]; unexpected 1: \['head_img.extra'\]\)"):
        load_official_checkpoint(tmp_path / "bad.pth")
    torch.save({"model": {"x": torch.zeros(1)}}, tmp_path / "notpir.pth")
    with pytest.raises(ValueError, match="notpir.pth: official checkpoint lacks tensor"):
        load_official_checkpoint(tmp_path / "notpir.pth")


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return create_model(model_config("paper"))


def test_paper_parameter_counts(paper_model):
    assert count_parameters(paper_model) == PAPER_PARAMETERS
    assert count_parameters(paper_model.scene_prior) == PAPER_PRIOR_PARAMETERS
    assert count_parameters(paper_model, trainable_only=True) == PAPER_PARAMETERS - PAPER_PRIOR_PARAMETERS


def test_paper_official_keys_map_onto_every_tensor(paper_model):
    """The official layout of the paper model maps back to exactly our keys, and its config to our config."""
    official = export_official_state_dict(paper_model)
    for key in ("vision_encoder.layers.0.downsample.reduction.weight", "vision_encoder.norm.weight",
                "conv_encoder.0.weight", "conv_encoder.7.2.bn3.running_var", "text_encoder.encoder.layer.11.output.dense.weight",
                "img_ca.1.mhatt_cross.linear_merge.weight", "txt_sa.2.ffn.3.weight", "mapping_txt.2.bias", "temp2"):
        assert key in official, key
    assert "vision_encoder.layers.3.downsample.reduction.weight" not in official
    converted = convert_official_state_dict(official, paper_model)
    ours = paper_model.state_dict()
    assert converted.keys() == ours.keys()
    assert all(converted[k] is ours[k] or torch.equal(converted[k], ours[k]) for k in ours)
    cfg = official_model_config(export_official_config(paper_model.cfg), official)
    assert cfg == dataclasses.replace(paper_model.cfg, text_mask=False)
