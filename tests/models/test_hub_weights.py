"""Weights named by Hugging Face Hub ids load from huggingface_hub's cache exactly as local files do, by
the same safe loaders: CLIP weights (a file, or the folder layout when the id names no file), a Swin
file, a BERT folder and its tokenizer, a scene prior; a TorchScript archive stays refused.

The cache is built on disk (tests/hub_cache.py) from random-init models saved here; HF_HUB_OFFLINE=1."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from pir import hub
from pir.config import model_config
from pir.models import backbones, create_model
from pir.models.clip import ClipPIR
from tests.hub_cache import add_folder, add_snapshot, hub_cache  # noqa: F401  (fixture)
from tests.models.model_helpers import tiny_config
from tests.models.test_clip import (assert_embeds_like, clip_project, inputs, reference,  # noqa: F401 (fixtures)
                                   write_layout)

PLAIN_CLIP = dict(use_vir=False, use_lca=False, use_affiliation=False)


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_clip_weights_by_hub_id_embed_as_open_clip_and_record_the_commit(reference, inputs, hub_cache, capsys):
    # the RemoteCLIP layout: a plain state dict in a repository with other files beside it
    commit = add_snapshot(hub_cache, "chendelong/RemoteCLIP-tiny",
                          {"RemoteCLIP-tiny.pt": torch_bytes(reference.state_dict()), "README.md": b"# tiny"})
    spec = "hf-hub:chendelong/RemoteCLIP-tiny/RemoteCLIP-tiny.pt"
    with hub.recording() as resolved:
        model = create_model(model_config("clip-tiny", clip_weights=spec, **PLAIN_CLIP)).eval()
    assert isinstance(model, ClipPIR) and model.clip.visual.conv1.weight.shape[0] == 64
    assert_embeds_like(model, reference, inputs)
    assert hub.report(resolved) == {spec: commit}
    assert spec in capsys.readouterr().out   # the load line names the id, not a cache path


def test_a_repository_without_a_file_is_the_open_clip_folder_layout(reference, inputs, hub_cache, tmp_path):
    folder = write_layout("hf_safetensors", reference, tmp_path)
    add_folder(hub_cache, "org/clip-folder", folder)
    model = create_model(model_config("clip-tiny", clip_weights="hf-hub:org/clip-folder", **PLAIN_CLIP)).eval()
    assert_embeds_like(model, reference, inputs)


def test_a_torchscript_archive_from_the_hub_is_still_refused(reference, hub_cache, tmp_path):
    archive = write_layout("openai", reference, tmp_path)
    add_snapshot(hub_cache, "openai/clip-tiny", {"ViT-tiny.pt": archive.read_bytes()})
    cfg = model_config("clip-tiny", clip_weights="hf-hub:openai/clip-tiny/ViT-tiny.pt", **PLAIN_CLIP)
    with pytest.raises(ValueError, match="a TorchScript archive, refused: loading it runs code") as caught:
        create_model(cfg)
    assert "\n" not in str(caught.value)


def test_a_missing_clip_file_is_one_line_naming_the_setting(hub_cache):
    cfg = model_config("clip-tiny", clip_weights="hf-hub:org/none/w.pt", **PLAIN_CLIP)
    with pytest.raises(FileNotFoundError, match=r"^model.clip_weights = hf-hub:org/none/w.pt: not in the Hugging Face"):
        create_model(cfg)


def test_swin_weights_by_hub_id_file_or_timm_style_repository(hub_cache):
    cfg = tiny_config(image_size=32)
    torch.manual_seed(5)
    source = backbones.create_vision_encoder(cfg, log=lambda _: None)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    add_snapshot(hub_cache, "org/swin", {"weights/swin.pth": torch_bytes({"model": state})})
    add_snapshot(hub_cache, "timm/swin-tiny", {"model.safetensors": safetensors_bytes(state), "config.json": b"{}"})
    for spec in ("hf-hub:org/swin/weights/swin.pth", "hf-hub:timm/swin-tiny"):
        lines = []
        encoder = backbones.create_vision_encoder(dataclasses.replace(cfg, vision_pretrained=spec), log=lines.append)
        assert all(torch.equal(encoder.state_dict()[k], v) for k, v in state.items()), spec
        assert "model.vision_pretrained: loaded" in lines[0]


def test_a_repository_with_no_known_weights_file_asks_for_the_file(hub_cache):
    add_snapshot(hub_cache, "org/odd", {"weights.ckpt": b"x"})
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin; name the weights file"):
        backbones.create_scene_prior(tiny_config(), pretrained="hf-hub:org/odd")


def test_bert_and_its_tokenizer_by_hub_id(hub_cache, tmp_path):
    from pir.data.text import load_tokenizer, train_wordpiece

    train_wordpiece(["a forest with many trees", "a beach"], 120, tmp_path / "bert")
    vocab = len(load_tokenizer(tmp_path / "bert"))
    cfg = tiny_config(vocab_size=vocab, text_pretrained=False)
    torch.manual_seed(2)
    backbones.create_text_encoder(cfg).save_pretrained(tmp_path / "bert")
    commit = add_folder(hub_cache, "org/bert-rs", tmp_path / "bert")
    spec = "hf-hub:org/bert-rs"
    with hub.recording() as resolved:
        bert = backbones.create_text_encoder(dataclasses.replace(cfg, text_pretrained=True, text_model=spec))
        tokenizer = load_tokenizer(spec, "data.tokenizer")
    saved = backbones.create_text_encoder(dataclasses.replace(cfg, text_pretrained=True,
                                                              text_model=str(tmp_path / "bert")))
    assert all(torch.equal(bert.state_dict()[k], v) for k, v in saved.state_dict().items())
    assert len(tokenizer) == vocab and set(resolved) == {"model.text_model", "data.tokenizer"}
    assert hub.report(resolved) == {spec: commit}



def test_the_train_stage_records_the_commit_of_its_starting_weights(clip_project, hub_cache, tmp_path):  # noqa: F811
    import shutil

    import yaml
    from mlflow import MlflowClient

    from tests.evaluation.test_stages import run_stage

    root = tmp_path / "project"
    shutil.copytree(clip_project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "reports"))
    spec = "hf-hub:chendelong/RemoteCLIP-tiny/RemoteCLIP-tiny.pt"
    commit = add_snapshot(hub_cache, "chendelong/RemoteCLIP-tiny",
                          {"RemoteCLIP-tiny.pt": (root / "RemoteCLIP-tiny.pt").read_bytes()})
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["model"]["clip_weights"] = spec
    params["evaluate"]["checkpoint"] = spec   # the released file itself, evaluated as plain CLIP
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(root, "train") is None
    assert json.loads((root / "reports" / "train.json").read_text())["hub"] == {spec: commit}
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    train_run = client.search_runs([client.get_experiment_by_name("pir").experiment_id],
                                   filter_string="tags.dvc_stage = 'train'")[0]
    assert train_run.data.tags["hub.model.clip_weights.commit"] == commit
    assert train_run.data.params["model.clip_weights"] == spec   # the id as written; the tag pins it
    assert run_stage(root, "evaluate") is None
    record = json.loads((root / "reports" / "metrics.json").read_text())["checkpoint"]
    assert record["format"] == "clip" and record["path"] == spec and record["hub"] == {spec: commit}
