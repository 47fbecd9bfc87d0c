"""embed_split: shapes, dtype, normalisation, split order, model mode restored."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tests.prepared_fixture import make_prepared

from pir.data.text import tokenize
from pir.data.transforms import normalize_images
from pir.evaluation.embed import embed_split
from pir.device import precision_context
from pir.models import create_model
from pir.config import model_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    prepared, tokenizer = make_prepared(tmp_path_factory.mktemp("prepared"), images=20, image_size=56, classes=3,
                                        captions_per_image=2, split=(0.5, 0.25, 0.25), vocab_size=200)
    cfg = model_config("tiny", image_size=56, swin_depths=(1, 1), swin_heads=(1, 2), text_layers=1, embed_dim=32,
                       heads=2, vocab_size=len(tokenizer), max_tokens=20)
    torch.manual_seed(0)
    return prepared, tokenizer, create_model(cfg), cfg


def test_embeddings_are_normalised_float32_cpu_in_split_order(setup):
    prepared, tokenizer, model, cfg = setup
    split = prepared.split("val")
    model.train()
    with torch.no_grad():
        image_emb, text_emb = embed_split(model, prepared, split, tokenizer, cfg.image_size, cfg.max_tokens,
                                          batch_size=3, device="cpu", precision="fp32", progress=False)
    assert model.training                                          # mode restored
    assert image_emb.shape == (split.n_images, cfg.embed_dim) and text_emb.shape == (split.n_texts, cfg.embed_dim)
    assert image_emb.dtype == text_emb.dtype == torch.float32 and image_emb.device.type == "cpu"
    assert torch.allclose(image_emb.norm(dim=1), torch.ones(split.n_images), atol=1e-5)
    assert torch.allclose(text_emb.norm(dim=1), torch.ones(split.n_texts), atol=1e-5)
    # row i is image i / caption i of the split (batching does not reorder or mix)
    model.eval()
    with torch.no_grad():
        last_row = int(split.image_rows[-1])
        pixels = torch.from_numpy(np.array(prepared.pixels[[last_row]])).permute(0, 3, 1, 2)
        assert torch.allclose(image_emb[-1], model.encode_image(normalize_images(pixels))[0], atol=1e-5)
        ids, mask = tokenize(tokenizer, split.captions[-1:], cfg.max_tokens)
        assert torch.allclose(text_emb[-1], model.encode_text(ids, mask)[0], atol=1e-5)


def test_precision_context_only_autocasts_where_asked():
    assert not isinstance(precision_context("cpu", "bf16"), torch.autocast)
    assert isinstance(precision_context("cpu", "bf16", cpu_bf16=True), torch.autocast)
    with warnings.catch_warnings():                                # "CUDA not available" on CPU machines
        warnings.simplefilter("ignore")
        assert isinstance(precision_context("cuda", "bf16"), torch.autocast)
    with pytest.raises(ValueError, match="precision"):
        precision_context("cpu", "fp16")


def test_max_words_reaches_the_text_embeddings(setup):
    prepared, tokenizer, model, cfg = setup
    split = prepared.split("val")
    options = dict(batch_size=4, device="cpu", precision="fp32", progress=False)
    _, full = embed_split(model, prepared, split, tokenizer, cfg.image_size, cfg.max_tokens, **options)
    _, cut = embed_split(model, prepared, split, tokenizer, cfg.image_size, cfg.max_tokens, max_words=1, **options)
    ids, mask = tokenize(tokenizer, split.captions[:1], cfg.max_tokens, max_words=1)
    with torch.no_grad():
        assert torch.allclose(cut[0], model.eval().encode_text(ids, mask)[0], atol=1e-5)
    assert not torch.allclose(full, cut, atol=1e-3)
