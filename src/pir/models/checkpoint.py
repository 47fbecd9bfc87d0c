"""Our checkpoint format: ``{"model": state_dict, "model_config": to_dict(cfg), **extra}``.

The model config travels with the weights (nanoGPT style) so a checkpoint
rebuilds its own architecture. ``load_model`` also accepts the authors'
official format (``{"model", "config"}``) through ``pir.models.official``, the folder
``pir export --hub`` writes (``pir.models.exported``), and Hub ids of either (``pir.hub``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import nn

from pir import hub
from pir.clip_known import with_resolved_activation
from pir.config import ModelConfig, from_mapping, to_dict
from pir.files import is_torchscript, load_torch, save_torch
from pir.models import create_model
from pir.models.exported import is_export_folder, read_export
from pir.models.official import model_from_official
from pir.models.heads import PIRHeads
from pir.models.weights import load_state


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under any nesting of DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while isinstance(model, nn.Module) and (hasattr(model, "_orig_mod") or
                                            isinstance(model, nn.parallel.DistributedDataParallel)):
        model = getattr(model, "_orig_mod", None) or model.module
    return model


def save_checkpoint(path: str | os.PathLike, model: nn.Module, cfg: ModelConfig, **extra: Any) -> None:
    """Atomically write the model's weights, its config and ``extra`` (plain values/tensors only).

    ``to_dict`` leaves loading permissions (``model.allow_torchscript``) out of ``model_config``: they
    are not architecture, and a file must never carry its own permission. An "auto" CLIP activation is
    stored as what it resolved to: the file must rebuild the same model without the weights' name."""
    model = unwrap(model)
    cfg = with_resolved_activation(cfg)
    save_torch(path, {"model": model.state_dict(), "model_config": to_dict(cfg), **extra})


def _architecture_only(cfg: ModelConfig) -> ModelConfig:
    """Same architecture without pretrained loading: the checkpoint supplies every weight."""
    return dataclasses.replace(cfg, vision_pretrained="", text_pretrained=False, clip_weights="")


def saved_model_values(values: Any) -> Any:
    """A checkpoint's ``model_config`` in today's keys. Before ``clip_activation`` checkpoints saved
    ``clip_quick_gelu`` (true: QuickGELU, false: GELU, what those models were built with)."""
    if not isinstance(values, dict) or not isinstance(values.get("clip_quick_gelu"), bool):
        return values   # anything else is left for from_mapping to name
    values = dict(values)
    quick = values.pop("clip_quick_gelu")
    values.setdefault("clip_activation", "quickgelu" if quick else "gelu")
    return values


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", checkpoint: Any = None
               ) -> tuple[PIRHeads, ModelConfig, dict[str, Any]]:
    """(model in eval mode on ``device``, its ModelConfig, the checkpoint's other entries).

    Official checkpoints return the config derived from them (text_mask=False)
    and ``extra = {"official_config": <their config dict>}``. ``checkpoint``: the file's
    contents when the caller has already loaded them. ``path`` may also be a folder ``pir export --hub``
    wrote (read from safetensors, pir.models.exported) or a Hub id of either (pir.hub).
    """
    where = str(path)
    if checkpoint is None:
        path = hub.local_path(path, "checkpoint")   # a Hub id: its file or snapshot folder in the cache
        if path.is_dir():
            checkpoint = read_export(path)
    if checkpoint is None and is_torchscript(path):   # torch.load(weights_only=True) refuses it too, less clearly
        raise ValueError(f"{where}: a TorchScript archive (OpenAI's CLIP layout), not a PIR checkpoint; score it "
                         "as evaluate.checkpoint with a clip-* preset (model.allow_torchscript: true), or make "
                         "a PIR checkpoint of it with `pir baselines --allow-torchscript`")
    checkpoint = load_torch(path) if checkpoint is None else checkpoint
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ValueError(f"{where}: not a PIR checkpoint (no 'model' entry)")
    if "model_config" not in checkpoint and "config" in checkpoint:
        model = model_from_official(checkpoint, where)
        return model.to(device).eval(), model.cfg, {"official_config": checkpoint["config"]}
    if "model_config" not in checkpoint:
        raise ValueError(f"{where}: checkpoint has no 'model_config' (nor an official 'config')")
    extra = {k: v for k, v in checkpoint.items() if k not in ("model", "model_config")}
    cfg = from_mapping(ModelConfig, saved_model_values(checkpoint["model_config"]), f"{where}: model_config")
    cfg = dataclasses.replace(cfg, allow_torchscript=False)   # a file never grants its own loading permission
    cfg = with_resolved_activation(cfg)   # "auto" (a library caller's config): settled while clip_weights names the file
    model = create_model(_architecture_only(cfg))
    load_state(model, checkpoint["model"], where)
    return model.to(device).eval(), cfg, extra


def is_pir_checkpoint(checkpoint: Any) -> bool:
    """Ours ({"model", "model_config"}) or the authors' ({"model", "config"})."""
    return isinstance(checkpoint, dict) and "model" in checkpoint and ("model_config" in checkpoint or
                                                                      "config" in checkpoint)


def load_evaluated_model(path: str | os.PathLike, device: str | torch.device, model_cfg: ModelConfig,
                         allow_torchscript: bool = False, what: str = "checkpoint"
                         ) -> tuple[PIRHeads, ModelConfig, dict[str, Any]]:
    """``load_model``, and with a CLIP preset (``model_cfg.is_clip``) also released CLIP weights in any
    layout ``pir.models.clip.load_clip_checkpoint`` reads, as the preset's model (``extra["clip_layout"]``).
    A TorchScript archive (OpenAI's layout) loads only with ``allow_torchscript`` (its loading runs code).
    ``path`` may be a Hub id (pir.hub; ``what`` names the setting); an exported folder loads as itself."""
    path = hub.local_path(path, what)
    if is_export_folder(path):   # before the CLIP folder layout: a plain-CLIP export holds that one too
        return load_model(path, device)
    if model_cfg.is_clip:
        from pir.models.clip import load_clip_checkpoint
        file = path
        contents = None
        if file.is_file() and file.suffix != ".safetensors" and not is_torchscript(file):
            contents = load_torch(file)
            if is_pir_checkpoint(contents):
                return load_model(path, device, checkpoint=contents)
        del contents
        # released CLIP weights hold no PIR heads: they are evaluated as the plain CLIP model
        plain = dataclasses.replace(model_cfg, use_vir=False, use_lca=False, use_affiliation=False)
        model = load_clip_checkpoint(path, model_cfg.clip_model, cfg=plain, allow_torchscript=allow_torchscript)
        return model.to(device).eval(), model.cfg, {"format": "clip"}
    return load_model(path, device)


# The key of the placeholder the scene_prior stage writes at its prior path when the model takes no
# prior (model.use_vir false): {PRIOR_NOT_USED: why} (docs/design.md, "Overview": scene_prior).
PRIOR_NOT_USED = "not_used"


def load_scene_prior_weights(model: PIRHeads, path: str | os.PathLike) -> None:
    """Load a scene_prior-stage checkpoint's classifier into PIR's prior (classifier 'fc.*' dropped)."""
    where = str(path)
    if not hasattr(model, "scene_prior"):
        raise ValueError(f"{where}: the model has no scene prior (model.use_vir is off)")
    checkpoint = load_torch(path)
    if isinstance(checkpoint, dict) and PRIOR_NOT_USED in checkpoint:
        raise ValueError(f"{where}: a placeholder, no prior ({checkpoint[PRIOR_NOT_USED]}); "
                         "run the scene_prior stage with model.use_vir true")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise ValueError(f"{where}: not a scene-prior checkpoint (no 'model' state_dict)")
    state_dict = {k: v for k, v in checkpoint["model"].items() if not k.startswith("fc.")}
    load_state(model.scene_prior, state_dict, where)
