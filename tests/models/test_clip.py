"""CLIP towers (pir.models.clip): every released weights layout loads and embeds exactly as open_clip
does, mismatched files are refused in one line, PIR on CLIP trains, and a zero-shot CLIP checkpoint
goes through the train (epochs 0), evaluate and analyze stages unchanged.

Every checkpoint is written here from a randomly initialised open_clip model (nothing is downloaded);
the tiny architecture (PIR-CLIP-tiny, src/pir/models/clip_configs) keeps each file under 15 MB.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from pir.config import model_config
from pir.data.text import ClipTokenizer, model_tokenizer, tokenize
from pir.models import create_model
from pir.models.clip import ClipPIR, load_clip_checkpoint
from tests.evaluation.test_stages import PROJECT, run_stage

ARCH = "PIR-CLIP-tiny"
CAPTIONS = ["Many planes are parked next to a long runway.", "two bridges",
            "a dense residential area with green trees on both sides of the road"]


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH).eval()
    with torch.no_grad():   # random-init logit scale and projections are fine; make the text tower non-trivial
        model.logit_scale.fill_(3.0)
    return model


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(1)
    images = torch.randn(2, 3, 112, 112)
    ids, mask = tokenize(ClipTokenizer(), CAPTIONS, 77)
    return images, ids, mask


def assert_embeds_like(model, reference, inputs):
    images, ids, mask = inputs
    with torch.no_grad():
        ours_image, ours_text = model.encode_image(images), model.encode_text(ids, mask)
        theirs_image = reference.encode_image(images, normalize=True)
        # open_clip's own tokenizer on the raw captions and 77-token padding
        theirs_text = reference.encode_text(open_clip.tokenize(CAPTIONS), normalize=True)
    torch.testing.assert_close(ours_image, theirs_image, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_text, theirs_text, atol=1e-5, rtol=0)


def write_layout(layout: str, reference, folder):
    """Write the reference weights in ``layout`` under ``folder``; return the path to load."""
    state = reference.state_dict()
    if layout == "state_dict":              # RemoteCLIP / GeoRSCLIP releases
        torch.save(state, folder / "plain.pt")
        return folder / "plain.pt"
    if layout == "training":                # an open_clip run's epoch_N.pt (DDP prefix)
        torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in state.items()},
                    "optimizer": {"state": {}, "param_groups": []}}, folder / "epoch_3.pt")
        return folder / "epoch_3.pt"
    if layout == "openai":                  # TorchScript archive, as OpenAI's ViT-B-32.pt
        example = (torch.zeros(1, 3, 112, 112), open_clip.tokenize(["a"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(reference, example, check_trace=False).save(str(folder / "openai.pt"))
        return folder / "openai.pt"
    if layout in ("hf_safetensors", "hf_bin"):   # Hugging Face-style folder (open_clip push_to_hf_hub)
        hub = folder / layout
        hub.mkdir()
        (hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config(ARCH)}))
        if layout == "hf_safetensors":
            save_file({k: v.contiguous() for k, v in state.items()}, str(hub / "open_clip_model.safetensors"))
        else:
            torch.save(state, hub / "open_clip_pytorch_model.bin")
        return hub
    raise AssertionError(layout)


@pytest.mark.parametrize("layout", ["state_dict", "training", "openai", "hf_safetensors", "hf_bin"])
def test_every_layout_loads_and_embeds_as_open_clip(layout, reference, inputs, tmp_path, capsys):
    path = write_layout(layout, reference, tmp_path)
    # OpenAI's TorchScript archive runs code as it loads: only on request (tests/models/test_torchscript_optin.py)
    model = load_clip_checkpoint(path, ARCH, allow_torchscript=layout == "openai")
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and ARCH in printed[0] and f"{len(reference.state_dict())} tensors" in printed[0]
    assert isinstance(model, ClipPIR) and not model.training
    assert_embeds_like(model, reference, inputs)


def test_mismatched_files_are_refused_in_one_line(reference, tmp_path):
    state = reference.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("visual.proj")}, tmp_path / "cut.pt")
    with pytest.raises(ValueError) as caught:
        load_clip_checkpoint(tmp_path / "cut.pt", ARCH)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "cut.pt") in message and "missing 1: visual.proj" in message
    with pytest.raises(ValueError, match="wrong shape") as caught:   # a ViT-B-32 file given as the tiny arch
        torch.save({**state, "token_embedding.weight": torch.zeros(49408, 512)}, tmp_path / "wide.pt")
        load_clip_checkpoint(tmp_path / "wide.pt", ARCH)
    assert "\n" not in str(caught.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="open_clip_config.json"):
        load_clip_checkpoint(tmp_path / "empty", ARCH)


def test_pir_checkpoints_are_not_mistaken_for_clip_weights(tmp_path):
    from pir.models.checkpoint import save_checkpoint
    cfg = model_config("clip-tiny", use_vir=False, use_lca=False)
    save_checkpoint(tmp_path / "best.pt", create_model(cfg), cfg)
    with pytest.raises(ValueError, match="a PIR checkpoint, not CLIP weights"):
        load_clip_checkpoint(tmp_path / "best.pt", ARCH)


def test_vit_b32_towers_are_open_clips():
    torch.manual_seed(0)
    model = create_model(model_config("clip-b32", use_vir=False, use_lca=False)).eval()
    images = torch.randn(1, 3, 224, 224)
    ids, mask = tokenize(model_tokenizer(model.cfg, ""), CAPTIONS[:1], 77)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), model.clip.encode_image(images, normalize=True),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(ids, mask),
                                   model.clip.encode_text(F.pad(ids, (0, 77 - ids.shape[1])), normalize=True),
                                   atol=1e-5, rtol=0)


def test_pir_on_clip_starts_at_clip_and_trains(reference, inputs):
    """Zero-initialised VIR/LCA residuals: PIR on loaded CLIP weights embeds as CLIP until it trains."""
    cfg = model_config("clip-tiny", filter_size=20)
    torch.manual_seed(0)
    model = ClipPIR(cfg)
    model.clip.load_state_dict(reference.state_dict())
    model.eval()
    assert_embeds_like(model, reference, inputs)
    images, ids, mask = inputs
    images, ids, mask = images.repeat(2, 1, 1, 1)[:4], ids[[0, 1, 2, 0]], mask[[0, 1, 2, 0]]
    image_ids, labels = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 1])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for _ in range(6):
        out = model(images, ids, mask, image_ids, labels)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert set(out) == {"loss", "loss_contrastive", "loss_affiliation"}
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert model.head_img.weight.abs().sum() > 0 and model.head_txt.weight.abs().sum() > 0
    assert not any(p.requires_grad for p in model.scene_prior.parameters())


def test_clip_tokenizer_matches_open_clip():
    tokenizer = ClipTokenizer()
    ids, mask = tokenize(tokenizer, CAPTIONS, 77)
    theirs = open_clip.tokenize(CAPTIONS)                 # raw captions: open_clip cleans them itself
    assert len(tokenizer) == 49408 and torch.equal(theirs[:, :ids.shape[1]], ids)
    assert torch.equal(mask, (ids > 0).long())
    short, _ = tokenize(tokenizer, CAPTIONS, 6)          # cut short, still ends with <end> (CLIP's pooled token)
    assert short.shape == (3, 6) and short[2, -1] == tokenizer.eot


# --------------------------------------------------------------------------- stages

CLASSES = ["airport", "beach", "forest"]


@pytest.fixture(scope="module")
def clip_project(tmp_path_factory, reference):
    from pir.data.prepared import ImageRecord, write_prepared
    from pir.data.text import train_wordpiece
    root = tmp_path_factory.mktemp("clip_project")
    rng = np.random.default_rng(0)
    records, pixels = [], []
    for i in range(18):
        label = i % 3
        split = "train" if i < 6 else "val" if i < 10 else "test"
        captions = tuple(f"a {CLASSES[label]} with {w} things number {i % 4}" for w in ("many", "few"))
        records.append(ImageRecord(f"{CLASSES[label]}_{i}.jpg", split, CLASSES[label], label, captions))
        pixels.append(np.full((32, 32, 3), 60 * label, np.uint8) + rng.integers(0, 40, (32, 32, 3), dtype=np.uint8))
    write_prepared(root / "data" / "fetch", "synthetic", CLASSES, records, np.stack(pixels))
    train_wordpiece([c for r in records for c in r.captions], 120, root / "data" / "fetch" / "tokenizer")
    torch.save(reference.state_dict(), root / "RemoteCLIP-tiny.pt")
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["recipe"] = "clip"
    params["model"].update(preset="clip-tiny", clip_weights=str(root / "RemoteCLIP-tiny.pt"))
    params["data"]["cache_res"] = 128
    params["train"].update(epochs=0, device="cpu", global_batch_size=4)
    params["evaluate"].update(batch_size=8, gallery_queries=2, device="cpu", bootstrap_resamples=50)
    params["analyze"].update(max_points=10, perplexity=3.0, knn=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_zero_shot_runs_through_train_evaluate_and_analyze(clip_project, reference):
    root = clip_project
    assert run_stage(root, "train") is None                       # epochs 0: the loaded weights, selected
    assert json.loads((root / "reports/train.json").read_text())["best_epoch"] == 0
    assert run_stage(root, "evaluate") is None
    trained = json.loads((root / "reports/metrics.json").read_text())
    assert trained["checkpoint"]["format"] == "pir" and trained["checkpoint"]["epoch"] == 0
    sims = np.load(root / "data/evaluate/similarity.npz")["sims"]
    assert run_stage(root, "analyze") is None
    assert (root / "reports/figures/tsne.png").is_file()

    # the released file itself as evaluate.checkpoint: the same weights, the same matrix
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["checkpoint"] = str(root / "RemoteCLIP-tiny.pt")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(root, "evaluate") is None
    direct = json.loads((root / "reports/metrics.json").read_text())
    assert direct["checkpoint"]["format"] == "clip"
    np.testing.assert_allclose(np.load(root / "data/evaluate/similarity.npz")["sims"], sims, atol=1e-5)
    assert {k: direct[k] for k in ("r_mean", "txt_r1", "img_r1")} == {k: trained[k] for k in ("r_mean", "txt_r1", "img_r1")}

    # and as a Hugging Face-style folder (its run keyed by the folder's files)
    folder = write_layout("hf_safetensors", reference, root)
    params["evaluate"]["checkpoint"] = str(folder)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(root, "evaluate") is None
    np.testing.assert_allclose(np.load(root / "data/evaluate/similarity.npz")["sims"], sims, atol=1e-5)


def test_zero_shot_is_refused_for_pir_presets(clip_project, tmp_path):
    params = yaml.safe_load((clip_project / "params.yaml").read_text())
    params.update(recipe="cpu")
    params["model"].update(preset="tiny", clip_weights=None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    message = run_stage(tmp_path, "train")
    assert message and "train.epochs = 0 (zero-shot) needs a CLIP preset" in message and "\n" not in message
