"""Our vectorised/fused PIR against a literal re-statement of the official equations (eval mode)."""

from __future__ import annotations

import pytest
import torch

from tests.models.model_helpers import build_tiny, random_batch
from pir.models import backbones
from tests.models.pir_official_reference import (RefHead, ref_affil_loss, ref_contr_loss, ref_triplet_loss)

ATOL = 1e-5


def reference_head(model):
    """RefHead filled from our model's state_dict by the official names (strict: names must match)."""
    cfg = model.cfg
    ref = RefHead(cfg, model.vision_encoder.num_features, model.text_encoder.config.hidden_size, cfg.prior_width)
    ours = model.state_dict()
    ref.load_state_dict({k: ours[k] for k in ref.state_dict()}, strict=True)
    return ref.eval()


@pytest.fixture(scope="module")
def official_like():
    model = build_tiny(text_mask=False, use_triplet=True).eval()
    return model, reference_head(model)


def test_image_embedding_matches_official_math(official_like):
    model, ref = official_like
    images, *_ = random_batch(model.cfg)
    with torch.no_grad():
        expected = ref.vision_fusion(backbones.swin_tokens(model.vision_encoder, images), model.scene_prior(images))
        got = model.encode_image(images)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_unmasked_text_embedding_matches_official_math(official_like):
    """text_mask=False: BERT and the PAE blocks see padding, exactly like the official code."""
    model, ref = official_like
    _, input_ids, mask, *_ = random_batch(model.cfg)
    with torch.no_grad():
        bert_out = model.text_encoder(input_ids=input_ids).last_hidden_state
        expected = ref.text_fusion(bert_out)
        got = model.encode_text(input_ids, mask)        # mask is ignored when text_mask is off
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_masked_text_embedding_matches_masked_reference():
    """text_mask=True = the official blocks with its own masked_fill(-1e9) convention on padding."""
    model = build_tiny().eval()
    ref = reference_head(model)
    _, input_ids, mask, *_ = random_batch(model.cfg)
    with torch.no_grad():
        bert_out = model.text_encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        expected = ref.text_fusion(bert_out, pad_mask=(mask == 0)[:, None, None, :])
        got = model.encode_text(input_ids, mask)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_losses_match_official_math(official_like):
    model, _ = official_like
    images, input_ids, mask, image_ids, labels = random_batch(model.cfg)
    with torch.no_grad():
        out = model(images, input_ids, mask, image_ids, labels)
        img, txt = model.encode_image(images), model.encode_text(input_ids, mask)
        contr = ref_contr_loss(img, txt, image_ids, model.temp)
        affil = ref_affil_loss(img, txt, labels, model.temp2)
    torch.testing.assert_close(out["loss_contrastive"], contr, atol=1e-6, rtol=0)
    torch.testing.assert_close(out["loss_affiliation"], affil, atol=1e-6, rtol=0)
    # distinct ids: our id-aware triplet negatives equal the official diagonal-only ones
    distinct = torch.arange(len(image_ids))
    triplet = model.loss(img, txt, distinct, labels)["loss_triplet"]
    torch.testing.assert_close(triplet, ref_triplet_loss(img, txt), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["loss"], contr + affil + out["loss_triplet"], atol=1e-6, rtol=0)


def test_affiliation_transpose_is_reproduced():
    """The official t2i term differs from the 'natural' one; ours must follow the official."""
    from pir.models.losses import affiliation_loss
    gen = torch.Generator().manual_seed(3)
    img = torch.nn.functional.normalize(torch.randn(8, 16, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(8, 16, generator=gen), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    temp2 = torch.tensor(0.07)
    ours = affiliation_loss(img, txt, labels, temp2)
    torch.testing.assert_close(ours, ref_affil_loss(img, txt, labels, temp2), atol=1e-6, rtol=0)
    same = torch.eq(labels[:, None], labels[None]).float()
    img_centres, txt_centres = same @ img / same.sum(1, keepdim=True), same @ txt / same.sum(1, keepdim=True)
    target = torch.arange(8)
    natural_i2t = torch.nn.functional.cross_entropy(img @ txt_centres.t() / temp2, target)
    natural_t2i = torch.nn.functional.cross_entropy(txt @ img_centres.t() / temp2, target)   # no transpose
    assert abs(float(ours) - float((natural_i2t + natural_t2i) / 2)) > 1e-3


def test_unknown_scenes_are_left_out_of_the_affiliation_loss():
    """Samples labelled -1 count neither as rows nor as columns: equal to dropping them."""
    from pir.models.losses import affiliation_loss
    gen = torch.Generator().manual_seed(4)
    img = torch.nn.functional.normalize(torch.randn(7, 16, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(7, 16, generator=gen), dim=-1)
    labels = torch.tensor([0, -1, 0, 1, -1, 1, 2])
    keep = labels >= 0
    temp2 = torch.tensor(0.1)
    torch.testing.assert_close(affiliation_loss(img, txt, labels, temp2),
                               ref_affil_loss(img[keep], txt[keep], labels[keep], temp2), atol=1e-6, rtol=0)
    all_unknown = affiliation_loss(img, txt, torch.full((7,), -1), temp2)
    assert float(all_unknown) == 0.0
