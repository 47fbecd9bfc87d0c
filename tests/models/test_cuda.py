"""CUDA paths (run by scripts/gpu_check.sh on a GPU machine; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from tests.models.model_helpers import build_tiny, random_batch

from pir.device import precision_context
from pir.models.folding import can_fold

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_train_step_on_cuda_is_finite_and_moves_the_weights():
    model = build_tiny().cuda().train()
    batch = [t.cuda() for t in random_batch(model.cfg)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with precision_context("cuda", "bf16"):
        out = model(*batch)
    out["loss"].backward()
    optimizer.step()
    assert torch.isfinite(out["loss"]).item()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fp32_embeddings_agree_between_cpu_and_cuda():
    model = build_tiny().eval()
    images, input_ids, mask, _, _ = random_batch(model.cfg)
    with torch.no_grad():
        cpu = model.encode_image(images), model.encode_text(input_ids, mask)
        model.cuda()
        gpu = model.encode_image(images.cuda()), model.encode_text(input_ids.cuda(), mask.cuda())
    for a, b in zip(cpu, gpu):
        assert torch.allclose(a, b.cpu(), atol=1e-3)


def test_text_folding_stays_off_on_cuda():
    # planning folded rows needs the lengths on the host: a sync per step on CUDA (docs/design.md)
    model = build_tiny().cuda()
    _, _, mask, _, _ = random_batch(model.cfg)
    assert can_fold(model.text_encoder, mask) and not can_fold(model.text_encoder, mask.cuda())


def test_pir_on_clip_bf16_train_step_on_cuda_is_finite():
    from pir.config import model_config
    from pir.models import create_model
    torch.manual_seed(0)
    model = create_model(model_config("clip-tiny", filter_size=20)).cuda().train()
    images, _, mask, image_ids, labels = [t.cuda() for t in random_batch(model.cfg)]
    input_ids = torch.randint(1, 49406, mask.shape, device="cuda") * mask
    input_ids[:, -1] = 49407                      # an end-of-text token per caption
    with precision_context("cuda", "bf16"):
        out = model(images, input_ids, mask, image_ids, labels)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]).item()
    assert model.clip.visual.proj.grad is not None and torch.isfinite(model.clip.visual.proj.grad).all()
