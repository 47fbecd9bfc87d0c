"""Backbones built by name: Swin runs timm's fused (SDPA) window attention, equal to the eager path."""

from __future__ import annotations

import torch

from pir.models import backbones
from pir.config import model_config


def test_swin_uses_fused_attention_with_the_eager_result():
    torch.manual_seed(0)
    cfg = model_config("tiny")
    encoder = backbones.create_vision_encoder(cfg).eval()
    layers = [m for m in encoder.modules() if hasattr(m, "fused_attn")]
    assert len(layers) == sum(cfg.swin_depths) and all(layer.fused_attn for layer in layers)
    images = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        fused = backbones.swin_tokens(encoder, images)
        backbones.use_fused_attention(encoder, enabled=False)
        eager = backbones.swin_tokens(encoder, images)
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)
