"""`pir export CKPT --hub DIR` (pir_tools.export, pir.models.exported): the folder loads back as the same
model (path, and Hub id through a cache built from it), carries the tokenizer and a model card with the
run's metrics, loads from safetensors only, and never replaces a folder that is not an earlier export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pir.config import model_config
from pir.data.text import load_tokenizer, tokenize, train_wordpiece
from pir.evaluation.metrics import METRIC_KEYS
from pir.models import create_model
from pir.models.checkpoint import load_evaluated_model, load_model, save_checkpoint
from pir.models.exported import CONFIG, OPEN_CLIP_WEIGHTS, WEIGHTS
from pir_tools.export import main as export
from tests.hub_cache import add_folder, hub_cache  # noqa: F401  (fixture)

CAPTIONS = ["a forest with many green trees", "a beach beside blue water", "an airport with two planes"]
MODEL_KEY = "export-tests"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A PIR project as the pipeline leaves it: data/train/best.pt (tiny, untrained), the fetch stage's
    tokenizer and reports/metrics.json of the evaluate stage for that checkpoint."""
    root = tmp_path_factory.mktemp("export_project")
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text("seed: 0\n")
    train_wordpiece(CAPTIONS, 90, root / "data" / "fetch" / "tokenizer")
    vocab = len(load_tokenizer(root / "data" / "fetch" / "tokenizer"))
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab_size=vocab, image_size=32, filter_size=2)
    params = {"seed": 0, "recipe": "cpu", "model_preset": "tiny", "train": {"epochs": 3, "lr": 5e-4}}
    save_checkpoint(root / "data" / "train" / "best.pt", create_model(cfg), cfg, epoch=3, model_key=MODEL_KEY,
                    params=params, val_metrics={"r_mean": 12.5})
    metrics = {**{key: 10.0 + i for i, key in enumerate(METRIC_KEYS)}, "n_images": 12, "n_texts": 60,
               "ci95": {key: [1.0 + i, 2.5 + i] for i, key in enumerate(METRIC_KEYS)}, "dataset": "rsitmd",
               "checkpoint": {"path": "data/train/best.pt", "format": "pir", "epoch": 3, "model_key": MODEL_KEY}}
    (root / "reports").mkdir()
    (root / "reports" / "metrics.json").write_text(json.dumps(metrics))
    return root


@pytest.fixture(scope="module")
def exported(project) -> Path:
    out = project / "hub-export"
    assert export([str(project / "data" / "train" / "best.pt"), "--hub", str(out)]) == 0
    return out


def embeddings(model, tokenizer, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(3, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(4))
    ids, mask = tokenize(tokenizer, CAPTIONS, cfg.max_tokens, cfg.max_words)
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(ids, mask)


def assert_same_model(loaded, original, tokenizer) -> None:
    (model, cfg, extra), (ref_model, ref_cfg, ref_extra) = loaded, original
    assert cfg == ref_cfg and {k: extra[k] for k in ("epoch", "model_key", "params")} == \
        {k: ref_extra[k] for k in ("epoch", "model_key", "params")}
    for ours, theirs in zip(embeddings(model, tokenizer, cfg), embeddings(ref_model, tokenizer, ref_cfg)):
        assert torch.equal(ours, theirs)


def test_the_folder_holds_weights_config_tokenizer_and_card(exported):
    names = {p.name for p in exported.iterdir()}
    assert {CONFIG, WEIGHTS, "README.md", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(name.endswith((".pt", ".bin", ".pth")) for name in names)   # no pickle in a Hub folder
    config = json.loads((exported / CONFIG).read_text())
    assert config["format"] == "pir-export" and config["format_version"] == 1
    assert config["model_config"]["image_size"] == 32 and config["weights"] == {WEIGHTS: ""}
    assert config["preprocessing"]["image_size"] == 32 and config["preprocessing"]["max_tokens"] == 47
    assert len(config["preprocessing"]["image_mean"]) == 3 and config["checkpoint"]["model_key"] == MODEL_KEY


def test_an_exported_folder_loads_as_the_same_model(project, exported):
    tokenizer = load_tokenizer(exported)   # the folder's own tokenizer: the training one
    assert tokenizer.get_vocab() == load_tokenizer(project / "data" / "fetch" / "tokenizer").get_vocab()
    original = load_model(project / "data" / "train" / "best.pt")
    assert_same_model(load_model(exported), original, tokenizer)
    assert_same_model(load_evaluated_model(exported, "cpu", model_config("tiny")), original, tokenizer)
    # an evaluate.checkpoint under a clip-* preset: the folder still loads as itself
    assert_same_model(load_evaluated_model(exported, "cpu", model_config("clip-tiny")), original, tokenizer)


def test_a_hub_id_of_the_uploaded_folder_loads_the_same_model(project, exported, hub_cache):
    from pir import hub
    from pir.search.encoder import load_encoder

    commit = add_folder(hub_cache, "someone/pir-tiny", exported)
    tokenizer = load_tokenizer(exported)
    original = load_model(project / "data" / "train" / "best.pt")
    with hub.recording() as resolved:
        assert_same_model(load_evaluated_model("hf-hub:someone/pir-tiny", "cpu", model_config("tiny"),
                                               what="evaluate.checkpoint"), original, tokenizer)
    assert hub.report(resolved) == {"hf-hub:someone/pir-tiny": commit}
    assert_same_model(load_model(f"hf-hub:someone/pir-tiny@{commit}"), original, tokenizer)
    # search: the encoder finds the tokenizer in the snapshot, and embeds as the original checkpoint's
    encoder = load_encoder(f"hf-hub:someone/pir-tiny@{commit}")
    reference = load_encoder(project / "data" / "train" / "best.pt")
    assert encoder.hub == {f"hf-hub:someone/pir-tiny@{commit}": commit}
    np.testing.assert_array_equal(encoder.encode_texts(CAPTIONS), reference.encode_texts(CAPTIONS))


def test_the_model_card_has_front_matter_metrics_and_params(exported):
    card = (exported / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "pir" and meta["datasets"] == ["rsitmd"]
    assert {"pir", "remote-sensing", "image-text-retrieval"} <= set(meta["tags"])
    for i, key in enumerate(METRIC_KEYS):
        assert f"| {key} | {10.0 + i:.2f} | {1.0 + i:.2f} - {2.5 + i:.2f} |" in body
    assert "12 images, 60 captions" in body and "## Training params" in body and "lr: 0.0005" in body
    assert 'load_model("hf-hub:ORG/REPO")' in body


def test_metrics_of_another_model_stay_out_of_the_card(project, tmp_path, capsys):
    other = tmp_path / "metrics.json"
    report = json.loads((project / "reports" / "metrics.json").read_text())
    report["checkpoint"]["model_key"] = "someone-else"
    other.write_text(json.dumps(report))
    out = tmp_path / "out"
    assert export([str(project / "data" / "train" / "best.pt"), "--hub", str(out), "--metrics", str(other)]) == 0
    card = (out / "README.md").read_text()
    assert "| txt_r1 |" not in card and "evaluation of another model" in card
    assert "datasets" not in yaml.safe_load(card.split("---\n", 2)[1])


def test_only_an_empty_folder_or_an_earlier_export_is_replaced(project, exported, tmp_path, capsys):
    checkpoint = str(project / "data" / "train" / "best.pt")
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    assert export([checkpoint, "--hub", str(occupied)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"pir export: {occupied}: a folder with other files") and "\n" not in error
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    again = tmp_path / "again"
    assert export([checkpoint, "--hub", str(again)]) == 0 and export([checkpoint, "--hub", str(again)]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp folder left beside it
    with pytest.raises(SystemExit) as usage:
        export([checkpoint])   # no target named
    assert usage.value.code == 2


def test_a_config_cannot_point_the_loader_at_other_files(exported, tmp_path):
    import shutil

    for weights, problem in (({"../best.pt": ""}, "'weights' must name"), ({WEIGHTS: "", "pytorch_model.bin": ""},
                                                                             "'weights' must name")):
        tampered = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        shutil.copytree(exported, tampered)
        config = json.loads((tampered / CONFIG).read_text())
        config["weights"] = weights
        (tampered / CONFIG).write_text(json.dumps(config))
        with pytest.raises(ValueError, match=problem) as caught:
            load_model(tampered)
        assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="not a folder `pir export --hub` wrote"):
        load_model(tmp_path)


def test_a_plain_clip_export_is_open_clips_layout_too(tmp_path):
    import open_clip

    cfg = model_config("clip-tiny", use_vir=False, use_lca=False)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "clip.pt", create_model(cfg), cfg, epoch=0, model_key="clip-export")
    assert export([str(tmp_path / "clip.pt"), "--hub", str(tmp_path / "hub"), "--metrics", str(tmp_path / "none")]) == 0
    names = {p.name for p in (tmp_path / "hub").iterdir()}
    assert {OPEN_CLIP_WEIGHTS, "open_clip_config.json", WEIGHTS, CONFIG} <= names and "tokenizer.json" not in names
    ours, _, _ = load_model(tmp_path / "hub")
    original, _, _ = load_model(tmp_path / "clip.pt")
    theirs = open_clip.create_model("local-dir:" + str(tmp_path / "hub")).eval()
    images = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ours.encode_image(images), original.encode_image(images))
        torch.testing.assert_close(theirs.encode_image(images, normalize=True), ours.encode_image(images),
                                   atol=1e-6, rtol=0)
    card = yaml.safe_load((tmp_path / "hub" / "README.md").read_text().split("---\n", 2)[1])
    assert card["library_name"] == "open_clip"
