"""Import (and export) the authors' released checkpoints (``checkpoint_best.pth``).

Official format: ``{"model": state_dict, "config": dict}`` with
- ``vision_encoder.*``: original Microsoft Swin layout (downsample at the END of
  a stage) -> timm layout through timm's own ``checkpoint_filter_fn``;
- ``text_encoder.*`` (optionally ``text_encoder.bert.*``): BERT, same names as
  transformers' BertModel;
- ``conv_encoder.<i>.*``: ResNet children by index (0 conv1, 1 bn1, 4..7
  layer1..4; 2 relu, 3 maxpool, 8 avgpool hold no tensors) -> our ``scene_prior``;
- the PIR head, already under our names (see ``pir.models.pir``).

Tolerated differences (everything else is a one-line error):
- dropped from the file: Swin ``relative_position_index`` / ``attn_mask`` and BERT
  ``position_ids`` / ``token_type_ids`` buffers (recomputed by the backbones),
  and a BERT ``pooler.*`` head if present (the official forward never uses it);
- missing from the file: BatchNorm ``num_batches_tracked`` counters (unused in
  eval and with a fixed momentum).
The architecture is read from the tensors' shapes (Swin geometry, BERT size,
ResNet depth/widths) plus the file's config (heads, dropout, filter size, losses);
``text_mask`` is False because the official code never masks text.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

import torch
from timm.models.swin_transformer import checkpoint_filter_fn

from pir.config import ModelConfig
from pir.files import load_torch
from pir.models.pir import PIR
from pir.models.weights import load_state
from pir.config import PAPER

PRIOR_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_PRIOR_INDEX = {name: index for index, name in PRIOR_CHILDREN.items()}
_DROPPED_BUFFERS = ("relative_position_index", "attn_mask", "embeddings.position_ids", "embeddings.token_type_ids")
# (block has conv3, blocks per stage) -> timm ResNet name
_RESNETS = {(False, (2, 2, 2, 2)): "resnet18", (False, (3, 4, 6, 3)): "resnet34",
            (True, (3, 4, 6, 3)): "resnet50", (True, (3, 4, 23, 3)): "resnet101"}


def _section(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _count(keys, pattern: str) -> int:
    """Number of distinct integers captured by ``pattern`` among ``keys``."""
    return len({m.group(1) for k in keys if (m := re.match(pattern, k))})


# --------------------------------------------------------------------------- architecture

def _swin_geometry(vision: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    keys = list(vision)
    # count blocks by a parameter (buffers such as attn_mask are not reliable witnesses)
    stages = _count(keys, r"layers\.(\d+)\.blocks\.\d+\.norm1\.weight")
    depths = tuple(_count(keys, rf"layers\.{i}\.blocks\.(\d+)\.norm1\.weight") for i in range(stages))
    heads = tuple(int(vision[f"layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1]) for i in range(stages))
    table = vision["layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    patch = vision["patch_embed.proj.weight"]
    return {"swin_embed_dim": int(patch.shape[0]), "swin_patch_size": int(patch.shape[-1]),
            "swin_depths": depths, "swin_heads": heads, "swin_window_size": (math.isqrt(table) + 1) // 2}


def _bert_geometry(text: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    words = text["embeddings.word_embeddings.weight"]
    width = int(words.shape[1])
    return {"vocab_size": int(words.shape[0]), "text_width": width,
            "text_layers": _count(text, r"encoder\.layer\.(\d+)\."),
            "text_heads": max(1, width // 64),  # not stored in weights; BERT uses 64-wide heads
            "text_ffn": int(text["encoder.layer.0.intermediate.dense.weight"].shape[0])}


def _prior_architecture(prior: Mapping[str, torch.Tensor], where: str) -> dict[str, Any]:
    bottleneck = any(".conv3." in k for k in prior)
    depths = tuple(_count(prior, rf"{i}\.(\d+)\.") for i in ("4", "5", "6", "7"))
    name = _RESNETS.get((bottleneck, depths))
    if name is None:
        raise ValueError(f"{where}: conv_encoder is no known ResNet (blocks per stage {depths})")
    channels = tuple(int(prior[f"{i}.0.conv1.weight"].shape[0]) for i in ("4", "5", "6", "7"))
    width = channels[-1] * (4 if bottleneck else 1)
    return {"prior_model": name, "prior_channels": () if channels == (64, 128, 256, 512) else channels,
            "prior_width": width}


def official_model_config(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
                          where: str = "official checkpoint") -> ModelConfig:
    """The ModelConfig of an official checkpoint: paper preset + shapes + the file's config."""
    use_vir = "conv_proj.weight" in state_dict
    fields: dict[str, Any] = {
        **_swin_geometry(_section(state_dict, "vision_encoder.")),
        **_bert_geometry(_text_section(state_dict)),
        "embed_dim": int(state_dict["vision_proj.weight"].shape[0]),
        "use_vir": use_vir, "use_lca": "head_txt.weight" in state_dict,
        "use_affiliation": "temp2" in state_dict,
        "use_triplet": bool(config.get("use_triplet_loss", False)),
        "image_size": int(config.get("image_res", PAPER.image_size)),
        "heads": int(config.get("head", PAPER.heads)),
        "dropout": float(config.get("dropout_r", PAPER.dropout)),
        "filter_size": int(config.get("filter_size", PAPER.filter_size)),
        "instru_num": _count(state_dict, r"mapping_img\.(\d+)\.") or int(config.get("instru_num", PAPER.instru_num)),
        "cycle_num": _count(state_dict, r"mapping_txt\.(\d+)\.") or int(config.get("cycle_num", PAPER.cycle_num)),
        "temp": float(config.get("temp1", PAPER.temp)), "temp2": float(config.get("temp2", PAPER.temp2)),
        "center_factor": float(config.get("center_factor", PAPER.center_factor)),
        "max_tokens": int(config.get("max_tokens", PAPER.max_tokens)),
        "vision_pretrained": "", "text_pretrained": False, "text_mask": False,
    }
    if use_vir:
        fields.update(_prior_architecture(_section(state_dict, "conv_encoder."), where))
    return dataclasses.replace(PAPER, **fields)


# --------------------------------------------------------------------------- key mapping

def _text_section(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BERT tensors without the 'text_encoder.' and optional 'bert.' prefixes."""
    text = _section(state_dict, "text_encoder.")
    return {k.removeprefix("bert."): v for k, v in text.items()}


def _prior_key(key: str, where: str) -> str:
    index, _, rest = key.partition(".")
    if index not in PRIOR_CHILDREN:
        raise ValueError(f"{where}: unexpected conv_encoder child {index} in conv_encoder.{key}")
    return f"scene_prior.{PRIOR_CHILDREN[index]}.{rest}"


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor], model: PIR,
                                where: str = "official checkpoint") -> dict[str, torch.Tensor]:
    """Official names -> ours (buffers the backbones recompute and an unused BERT pooler dropped)."""
    out: dict[str, torch.Tensor] = {}
    vision = checkpoint_filter_fn(_section(state_dict, "vision_encoder."), model.vision_encoder)
    out.update({f"vision_encoder.{k}": v for k, v in vision.items()})
    out.update({f"text_encoder.{k}": v for k, v in _text_section(state_dict).items()
                if not k.startswith("pooler.") and not k.endswith(_DROPPED_BUFFERS)})
    out.update({_prior_key(k, where): v for k, v in _section(state_dict, "conv_encoder.").items()})
    backbone = ("vision_encoder.", "text_encoder.", "conv_encoder.")
    out.update({k: v for k, v in state_dict.items() if not k.startswith(backbone)})
    return out


def model_from_official(checkpoint: Mapping[str, Any], where: str = "official checkpoint") -> PIR:
    """Build and fill the model from an already-loaded official checkpoint dict (eval mode)."""
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        raise ValueError(f"{where}: not an official PIR checkpoint (expected a dict with a 'model' state_dict)")
    state_dict = checkpoint["model"]
    config = checkpoint.get("config") or {}
    try:
        cfg = official_model_config(config, state_dict, where)
    except KeyError as exc:
        raise ValueError(f"{where}: official checkpoint lacks tensor {exc.args[0]}") from None
    model = PIR(cfg)
    load_state(model, convert_official_state_dict(state_dict, model, where), where)
    return model.eval()


def load_official_checkpoint(path) -> PIR:
    """The authors' ``checkpoint_best.pth`` as our PIR (eval mode, text_mask=False), loaded weights_only."""
    return model_from_official(load_torch(path), str(path))


# --------------------------------------------------------------------------- export (inverse mapping)

def export_official_state_dict(model: PIR, bert_prefix: bool = False) -> dict[str, torch.Tensor]:
    """Our state_dict in the official key layout (original Swin, conv_encoder.<i>, text_encoder[.bert])."""
    out: dict[str, torch.Tensor] = {}
    text_prefix = "text_encoder.bert." if bert_prefix else "text_encoder."
    for key, value in model.state_dict().items():
        if key.startswith("vision_encoder."):
            # timm puts downsampling at the start of stage N, the original at the end of stage N-1
            key = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        elif key.startswith("text_encoder."):
            key = text_prefix + key.removeprefix("text_encoder.")
        elif key.startswith("scene_prior."):
            child, _, rest = key.removeprefix("scene_prior.").partition(".")
            key = f"conv_encoder.{_PRIOR_INDEX[child]}.{rest}"
        out[key] = value
    return out


def export_official_config(cfg: ModelConfig) -> dict[str, Any]:
    """The official config keys this import reads back."""
    return {"is_baseline": not (cfg.use_vir or cfg.use_lca), "use_affil_loss": cfg.use_affiliation,
            "use_triplet_loss": cfg.use_triplet, "embed_dim": cfg.embed_dim, "head": cfg.heads,
            "dropout_r": cfg.dropout, "filter_size": cfg.filter_size, "instru_num": cfg.instru_num,
            "cycle_num": cfg.cycle_num, "temp1": cfg.temp, "temp2": cfg.temp2,
            "center_factor": cfg.center_factor, "max_tokens": cfg.max_tokens, "image_res": cfg.image_size}
