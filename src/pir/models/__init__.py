"""PIR models: ``create_model(cfg)`` builds PIR (or its baseline) from a ModelConfig.

Submodules: ``backbones`` (timm/transformers by name), ``blocks`` (PAE
attention units), ``heads`` (VIR, LCA, prior, losses), ``pir`` (the model), ``clip`` (open_clip
towers under the same heads), ``losses``, ``checkpoint`` (ours),
``official`` (the authors' released checkpoints). Presets live in ``pir.config``.
"""

from __future__ import annotations

from pir.config import ModelConfig
from pir.models.heads import PIRHeads
from pir.models.pir import PIR


def create_model(cfg: ModelConfig) -> PIRHeads:
    """Build the model named by ``cfg`` (timm-style create-by-config); weights per cfg's pretrained fields.

    CLIP presets (``cfg.is_clip``) give ``pir.models.clip.ClipPIR``, the others ``PIR``.
    """
    if cfg.is_clip:
        from pir.models.clip import ClipPIR
        return ClipPIR(cfg)
    return PIR(cfg)


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["PIR", "PIRHeads", "create_model", "count_parameters"]
