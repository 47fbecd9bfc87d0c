"""Named model presets. Every field stays overridable; a preset is only a set of defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

from pir.config import ModelConfig, from_mapping

# The paper / released configs: Swin-T 224, BERT-base uncased, ResNet-50 prior, D=512.
PAPER = ModelConfig()

# Same architecture with small widths and a 112 px input so that CPU runs finish in minutes.
# Three Swin stages at 112 px with patch 4 end on a 7x7 grid: 49 tokens + global = 50, like the paper.
TINY = dataclasses.replace(
    PAPER,
    image_size=112,
    swin_embed_dim=32,
    swin_depths=(1, 1, 2),
    swin_heads=(1, 2, 4),
    swin_drop_path=0.0,
    text_model="",
    text_width=128,
    text_layers=2,
    text_heads=2,
    text_ffn=256,
    vocab_size=2000,
    prior_model="resnet18",
    prior_channels=(16, 32, 64, 128),
    prior_width=128,
    embed_dim=128,
    heads=4,
    dropout=0.1,
)

PRESETS: dict[str, ModelConfig] = {"paper": PAPER, "tiny": TINY}


def model_config(preset: str = "tiny", **overrides: Any) -> ModelConfig:
    """The preset's config with ``overrides`` applied (unknown keys rejected by name)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose from {', '.join(PRESETS)}")
    base = dataclasses.asdict(PRESETS[preset])
    base.update(overrides)
    return from_mapping(ModelConfig, base, f"model (preset {preset})")
