"""Named model presets (create-by-name, as litgpt's named configs) and ``model_config``."""

from __future__ import annotations

import dataclasses
from typing import Any

from pir.config.model import ModelConfig
from pir.config.values import from_mapping


# Named model presets (create-by-name, as litgpt's named configs): a preset is only a set of
# defaults, every field stays overridable.
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

# CLIP towers (pir.models.clip): open_clip architectures by name, the PIR heads in the CLIP embedding
# width (embed_dim must equal the architecture's), OpenAI's 49,408-token BPE vocabulary.
CLIP_B32 = dataclasses.replace(PAPER, clip_model="ViT-B-32", vocab_size=49408, embed_dim=512)
CLIP_B16 = dataclasses.replace(CLIP_B32, clip_model="ViT-B-16")
CLIP_L14 = dataclasses.replace(CLIP_B32, clip_model="ViT-L-14", embed_dim=768)
# ViT-H-14: GeoRSCLIP's large model (about 1B parameters). RN50: RemoteCLIP's smallest; its image tower is a
# ResNet (open_clip ModifiedResNet) with no patch tokens for VIR, so the preset leaves VIR off (CLIP-CL, zero-shot).
CLIP_H14 = dataclasses.replace(CLIP_B32, clip_model="ViT-H-14", embed_dim=1024)
CLIP_RN50 = dataclasses.replace(CLIP_B32, clip_model="RN50", embed_dim=1024, use_vir=False)
# A CLIP-architecture model small enough for the CPU default and the tests (open_clip config
# src/pir/models/clip_configs/PIR-CLIP-tiny.json: ViT patch 16 at 112 px = 49 patches + [CLS],
# 2-layer towers of width 64), with the tiny preset's narrow ResNet-18 prior.
CLIP_TINY = dataclasses.replace(TINY, clip_model="PIR-CLIP-tiny", vocab_size=49408, embed_dim=64, heads=4)

PRESETS: dict[str, ModelConfig] = {"paper": PAPER, "tiny": TINY, "clip-b32": CLIP_B32, "clip-b16": CLIP_B16,
                                   "clip-l14": CLIP_L14, "clip-h14": CLIP_H14, "clip-rn50": CLIP_RN50,
                                   "clip-tiny": CLIP_TINY}
CLIP_PRESETS = tuple(name for name, preset in PRESETS.items() if preset.is_clip)


def model_config(preset: str = "tiny", where: str = "", **overrides: Any) -> ModelConfig:
    """The preset's config with ``overrides`` applied (unknown keys, bad types and ranges rejected by name)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose from {', '.join(PRESETS)}")
    base = dataclasses.asdict(PRESETS[preset])
    base.update(overrides)
    return from_mapping(ModelConfig, base, where or f"model (preset {preset})")
