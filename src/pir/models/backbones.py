"""Backbones built by name from timm and transformers (no copied backbone code).

- vision: a timm Swin whose geometry comes from ModelConfig (``swin_*`` fields);
- text: a transformers BertModel without pooler;
- scene prior: a timm classifier (ResNet-50 in the paper) used as the frozen
  "instruction encoder".

Pretrained weights (``model.vision_pretrained``, ``scene_prior.pretrained``): ``pir.models.weights``.
"""

from __future__ import annotations

from typing import Any, Callable

import timm
import torch
from torch import nn
from transformers import BertConfig, BertModel

from pir import hub
from pir.config import ModelConfig
from pir.errors import first_line
from pir.models.weights import WeightsSource, load_backbone_weights, resolve_weights


def _create(source: WeightsSource, num_classes: int, **kwargs: Any) -> nn.Module:
    """timm model for ``source``; hub weights load strictly, then the head gets ``num_classes``.

    timm drops the classifier and loads with strict=False when ``num_classes`` differs from the
    weights' own, so missing backbone tensors would stay random in silence. Building with the
    weights' class count keeps timm strict; ``reset_classifier`` then sets the head we want.
    """
    if not source.hub:
        return timm.create_model(source.model_name, num_classes=num_classes, pretrained=False, **kwargs)
    pretrained_cfg = timm.models.get_pretrained_cfg(source.model_name)
    pretrained_classes = (pretrained_cfg.num_classes if pretrained_cfg else None) or num_classes
    model = timm.create_model(source.model_name, num_classes=pretrained_classes, pretrained=True, **kwargs)
    if pretrained_classes != num_classes:
        model.reset_classifier(num_classes)
    return model


# --------------------------------------------------------------------------- builders

def use_fused_attention(module: nn.Module, enabled: bool = True) -> int:
    """Switch every timm attention layer under ``module`` to F.scaled_dot_product_attention
    (``enabled=False``: back to timm's eager softmax(qk^T) v).

    timm marks Swin's fused window attention "experimental" and leaves it off unless the
    process-wide TIMM_FUSED_ATTN=2 is set; it computes the same softmax(qk^T + bias) v
    (to ~1e-6) and lets CUDA use its fused kernels. Returns the number of layers switched.
    """
    layers = [m for m in module.modules() if hasattr(m, "fused_attn")]
    for layer in layers:
        layer.fused_attn = enabled
    return len(layers)


def create_vision_encoder(cfg: ModelConfig, log: Callable[[str], None] = print) -> nn.Module:
    """Headless timm Swin with fused attention; ``forward_features`` gives NHWC [B, h, w, C] after the final norm."""
    source = resolve_weights(cfg.vision_model, cfg.vision_pretrained, "model.vision_pretrained")
    encoder = _create(
        source,
        num_classes=0,
        img_size=cfg.image_size,
        patch_size=cfg.swin_patch_size,
        window_size=cfg.swin_window_size,
        embed_dim=cfg.swin_embed_dim,
        depths=tuple(cfg.swin_depths),
        num_heads=tuple(cfg.swin_heads),
        drop_path_rate=cfg.swin_drop_path,
    )
    if source.file:
        load_backbone_weights(encoder, source.file, "model.vision_pretrained", log)
    use_fused_attention(encoder)
    return encoder


def bert_config(cfg: ModelConfig) -> BertConfig:
    """BERT architecture from the ``text_*`` fields (BERT-base for the paper preset)."""
    return BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.text_width,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        intermediate_size=cfg.text_ffn,
        max_position_embeddings=512,
    )


def _check_bert_matches(bert: BertModel, cfg: ModelConfig) -> None:
    """A pretrained BERT must agree with the text_* fields: checkpoints rebuild from them."""
    got = bert.config
    pairs = {"text_width": (got.hidden_size, cfg.text_width), "text_layers": (got.num_hidden_layers, cfg.text_layers),
             "text_heads": (got.num_attention_heads, cfg.text_heads), "text_ffn": (got.intermediate_size, cfg.text_ffn),
             "vocab_size": (got.vocab_size, cfg.vocab_size)}
    wrong = [f"{k}={want} but the model has {have}" for k, (have, want) in pairs.items() if have != want]
    if wrong:
        raise ValueError(f"{cfg.text_model}: pretrained BERT does not match the model config ({'; '.join(wrong)})")


def create_text_encoder(cfg: ModelConfig) -> BertModel:
    """BertModel without pooler: random from ``text_*`` fields, or ``from_pretrained(text_model)``.

    ``text_model`` may be a Hub id (pir.hub): the repository's snapshot folder (or a folder inside it,
    ``hf-hub:ORG/REPO/FOLDER``) from the cache, read by transformers as a local folder."""
    if not cfg.text_pretrained:
        return BertModel(bert_config(cfg), add_pooling_layer=False)
    source = cfg.text_model
    if hub.is_hub_id(source):
        source = str(hub.local_path(source, "model.text_model", folder=True))
    try:
        bert = BertModel.from_pretrained(source, add_pooling_layer=False)
    except OSError as exc:
        first = first_line(exc)
        raise FileNotFoundError(f"{cfg.text_model}: cannot load pretrained BERT ({first})") from None
    _check_bert_matches(bert, cfg)
    return bert


def create_scene_prior(cfg: ModelConfig, num_classes: int = 0, pretrained: str = "",
                       log: Callable[[str], None] = print) -> nn.Module:
    """timm classifier named ``cfg.prior_model``; with num_classes=0 its forward gives pooled features.

    ``forward_features`` + ``forward_head(pre_logits=True)`` yield ``cfg.prior_width``
    features (2048 for ResNet-50). ``prior_channels`` overrides timm ResNet stage widths.
    ``pretrained`` ("" | "timm" | timm tag | local file, see the module doc): with a file, the
    backbone comes from it and the head (``num_classes`` > 0) starts fresh.
    """
    extra: dict[str, Any] = {"channels": tuple(cfg.prior_channels)} if cfg.prior_channels else {}
    source = resolve_weights(cfg.prior_model, pretrained, "scene_prior.pretrained")
    prior = _create(source, num_classes, **extra)
    if prior.num_features != cfg.prior_width:
        raise ValueError(f"model.prior_width={cfg.prior_width} but {cfg.prior_model} "
                         f"(channels {cfg.prior_channels or 'default'}) pools {prior.num_features} features")
    if source.file:
        load_backbone_weights(prior, source.file, "scene_prior.pretrained", log)
    return prior


def swin_tokens(vision_encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[B, 1 + h*w, C]: the average of the final normed Swin tokens, then the tokens (X-VLM layout)."""
    grid = vision_encoder.forward_features(images)      # NHWC
    tokens = grid.flatten(1, 2)
    return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
