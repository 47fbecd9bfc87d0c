"""The PIR model on the tiny preset: embeddings, masking, ablation switches, frozen prior, counts."""

from __future__ import annotations

import pytest
import torch

from tests.models.model_helpers import build_tiny, random_batch
from pir.models import count_parameters

TINY_PARAMETERS = 3_303_973          # measured; the prior (timm resnet18, widths 16-128) has 717,216


def test_tiny_parameter_count():
    model = build_tiny()
    assert count_parameters(model) == TINY_PARAMETERS
    assert count_parameters(model.scene_prior) == 717_216
    assert count_parameters(model, trainable_only=True) == TINY_PARAMETERS - 717_216


def test_embeddings_are_normalised(tiny_model):
    images, input_ids, mask, *_ = random_batch(tiny_model.cfg)
    with torch.no_grad():
        img, txt = tiny_model.encode_image(images), tiny_model.encode_text(input_ids, mask)
    assert img.shape == txt.shape == (6, tiny_model.cfg.embed_dim)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(6))


def test_same_seed_same_model():
    a, b = build_tiny(seed=5).state_dict(), build_tiny(seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _pad_more(input_ids, mask, extra=5):
    """The same captions padded to a longer length."""
    zeros = torch.zeros(input_ids.shape[0], extra, dtype=input_ids.dtype)
    return torch.cat([input_ids, zeros], 1), torch.cat([mask, zeros], 1)


@pytest.mark.parametrize("text_mask", [True, False])
def test_padding_changes_text_only_without_mask(text_mask):
    model = build_tiny(text_mask=text_mask).eval()
    _, input_ids, mask, *_ = random_batch(model.cfg)
    with torch.no_grad():
        short = model.encode_text(input_ids, mask)
        long = model.encode_text(*_pad_more(input_ids, mask))
    if text_mask:
        torch.testing.assert_close(short, long, atol=1e-5, rtol=0)
    else:
        assert (short - long).abs().max() > 1e-3


@pytest.mark.parametrize("use_vir,use_lca", [(False, False), (False, True), (True, False)])
def test_ablation_switches(use_vir, use_lca):
    model = build_tiny(use_vir=use_vir, use_lca=use_lca).eval()
    assert hasattr(model, "scene_prior") == use_vir and hasattr(model, "img_sa") == use_vir
    assert hasattr(model, "txt_sa") == use_lca and hasattr(model, "head_txt") == use_lca
    images, input_ids, mask, image_ids, labels = random_batch(model.cfg)
    with torch.no_grad():
        img, txt = model.encode_image(images), model.encode_text(input_ids, mask)
        if not use_vir:   # baseline image side: normalize(vision_proj(global token))
            tokens = model.image_tokens(images)
            torch.testing.assert_close(img, torch.nn.functional.normalize(tokens[:, 0], dim=-1))
        if not use_lca:
            tokens = model.text_tokens(input_ids, mask)
            torch.testing.assert_close(txt, torch.nn.functional.normalize(tokens[:, 0], dim=-1))
        assert torch.isfinite(model(images, input_ids, mask, image_ids, labels)["loss"])


def test_loss_terms_follow_switches():
    model = build_tiny(use_affiliation=False, use_triplet=True, triplet_hardest=True)
    assert not hasattr(model, "temp2")
    out = model(*random_batch(model.cfg))
    assert set(out) == {"loss", "loss_contrastive", "loss_triplet"}
    torch.testing.assert_close(out["loss"], out["loss_contrastive"] + out["loss_triplet"])


def _train_step(model, batch):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    model(*batch)["loss"].backward()
    optimizer.step()
    return optimizer


def test_frozen_prior_stays_frozen_through_train_and_a_step():
    model = build_tiny()
    before = {k: v.clone() for k, v in model.scene_prior.state_dict().items()}  # incl. BN running stats
    batch = random_batch(model.cfg)
    head_before = model.head_img.weight.clone()
    _train_step(model, batch)
    assert model.training and not model.scene_prior.training
    assert not any(p.requires_grad or p.grad is not None for p in model.scene_prior.parameters())
    after = model.scene_prior.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head_before, model.head_img.weight)        # the rest did train
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert trainable == []                                             # every trainable tensor got a gradient


def test_finetuned_prior_trains():
    model = build_tiny(finetune_prior=True)
    before = model.scene_prior.conv1.weight.clone()
    _train_step(model, random_batch(model.cfg))
    assert model.scene_prior.training
    assert not torch.equal(before, model.scene_prior.conv1.weight)
