"""The Hub-ready folder ``pir export --hub`` writes (pir_tools.export), and reading it back as a checkpoint
(docs/clip-family.md, "Weights from the Hugging Face Hub").

    config.json                   format and version, the model config as checkpoints store it, the
                                  preprocessing, which weights file holds which tensors, and the
                                  checkpoint's other entries (epoch, params, model_key, ...)
    model.safetensors             the model's tensors (plain CLIP: all but the CLIP tower's, see below)
    open_clip_config.json         plain CLIP only (no VIR, no LCA): open_clip's own layout, so that
    open_clip_model.safetensors   ``open_clip.create_model("hf-hub:ORG/REPO")`` loads the tower too;
                                  the tower's tensors are stored here once, under open_clip's names
    tokenizer files, README.md    written by pir_tools.export (PIR presets: the WordPiece/BERT tokenizer)

Reading loads safetensors only (no pickle), from the file names this module writes and no others: a
folder from the Hub is untrusted input, and its config.json cannot point the loader anywhere else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from pir.config import ModelConfig, to_dict
from pir.errors import first_line

FORMAT = "pir-export"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
OPEN_CLIP_CONFIG = "open_clip_config.json"       # pir.models.clip.HF_CONFIG: open_clip's hub layout
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
CLIP_PREFIX = "clip."                            # ClipPIR keeps the open_clip model as ``.clip``
# The files config.json may name as weights, and the key prefix each one's tensors get back.
WEIGHT_FILES = {WEIGHTS: "", OPEN_CLIP_WEIGHTS: CLIP_PREFIX}


def is_plain_clip(cfg: ModelConfig) -> bool:
    """CLIP towers with no PIR head on top: open_clip alone computes its embeddings."""
    return cfg.is_clip and not cfg.use_vir and not cfg.use_lca


def preprocessing(cfg: ModelConfig) -> dict[str, Any]:
    """What a user must do to inputs before the model sees them (the evaluate stage's test-time path)."""
    return {"image_size": cfg.image_size,
            "resize": "bicubic (antialiased) to image_size x image_size, no crop",
            "image_mean": list(cfg.image_mean), "image_std": list(cfg.image_std),
            "normalize": "(pixels / 255 - image_mean) / image_std, RGB",
            "tokenizer": "open_clip BPE (open_clip.get_tokenizer)" if cfg.is_clip else "WordPiece/BERT (this folder)",
            "max_tokens": cfg.max_tokens, "max_words": cfg.max_words,
            "text": "pir.data.text.tokenize (captions cut to max_words words, then max_tokens tokens)"}


def _json_plain(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def export_config(cfg: ModelConfig, extra: Mapping[str, Any], weights: Mapping[str, str]) -> dict[str, Any]:
    """config.json: the checkpoint's plain entries ride along (tensors and the like stay behind)."""
    kept = {k: v for k, v in extra.items() if k not in ("model", "model_config") and _json_plain(v)}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "library": "pir", "model_config": to_dict(cfg),
            "preprocessing": preprocessing(cfg), "weights": dict(weights), "checkpoint": kept}


def _open_clip_config(clip: nn.Module, cfg: ModelConfig) -> dict[str, Any]:
    """open_clip_config.json for the tower: its architecture config, and the activation it was built with."""
    import open_clip

    model_cfg = dict(open_clip.get_model_config(cfg.clip_model) or {})
    if any(isinstance(m, open_clip.transformer.QuickGELU) for m in clip.modules()):
        model_cfg["quick_gelu"] = True
    else:
        model_cfg.pop("quick_gelu", None)
    return {"model_cfg": model_cfg,
            "preprocess_cfg": {"size": cfg.image_size, "mean": list(cfg.image_mean), "std": list(cfg.image_std),
                               "interpolation": "bicubic", "resize_mode": "squash"}}


def _save(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file
    # safetensors refuses non-contiguous tensors and tensors that share memory (tied weights): those
    # are copied, the rest saved as they are (no second copy of a large model in memory)
    plain, storages = {}, set()
    for key, value in tensors.items():
        value = value.detach().to("cpu").contiguous()
        storage = value.untyped_storage().data_ptr()
        plain[key] = value.clone() if storage in storages else value
        storages.add(storage)
    save_file(plain, str(path), metadata={"format": "pt"})


def write_export(folder: str | os.PathLike, model: nn.Module, cfg: ModelConfig, extra: Mapping[str, Any]) -> list[str]:
    """Write the weights and config.json of ``model`` into ``folder`` (an existing, empty folder: the
    caller makes it atomic); returns the names written."""
    folder = Path(folder)
    state = model.state_dict()
    weights = {WEIGHTS: ""}
    written = []
    if is_plain_clip(cfg):
        tower = {k[len(CLIP_PREFIX):]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}
        state = {k: v for k, v in state.items() if not k.startswith(CLIP_PREFIX)}
        _save(tower, folder / OPEN_CLIP_WEIGHTS)
        (folder / OPEN_CLIP_CONFIG).write_text(json.dumps(_open_clip_config(model.clip, cfg), indent=2) + "\n")
        weights[OPEN_CLIP_WEIGHTS] = CLIP_PREFIX
        written += [OPEN_CLIP_WEIGHTS, OPEN_CLIP_CONFIG]
    _save(state, folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(export_config(cfg, extra, weights), indent=2) + "\n")
    return [CONFIG, WEIGHTS, *written]


# --------------------------------------------------------------------------- reading

def _read_config(folder: Path) -> dict[str, Any] | None:
    """config.json when it is an export's (any other folder: None)."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return config if isinstance(config, dict) and config.get("format") == FORMAT else None


def is_export_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder ``pir export --hub`` wrote (its config.json says so)."""
    path = Path(path)
    return path.is_dir() and _read_config(path) is not None


def _read_weights(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    try:
        return {prefix + k: v for k, v in load_file(str(path)).items()}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing from the exported folder") from None
    except Exception as exc:  # header/format errors
        raise ValueError(f"{path}: not a loadable safetensors file ({first_line(exc, 200)})") from None


def read_export(folder: str | os.PathLike) -> dict[str, Any]:
    """The folder as a checkpoint dict, ``{"model": state_dict, "model_config": ..., **its other entries}``,
    for pir.models.checkpoint.load_model. One-line errors name the folder or file."""
    folder = Path(folder)
    config = _read_config(folder)
    if config is None:
        raise ValueError(f"{folder}: not a folder `pir export --hub` wrote (no {CONFIG} of format {FORMAT})")
    version = config.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{folder / CONFIG}: format_version {version!r} is not one this pir reads "
                         f"(1 to {FORMAT_VERSION}); a newer export needs a newer pir")
    weights = config.get("weights")
    if not isinstance(weights, dict) or WEIGHTS not in weights or set(weights) - set(WEIGHT_FILES):
        raise ValueError(f"{folder / CONFIG}: 'weights' must name {WEIGHTS} and at most "
                         f"{', '.join(WEIGHT_FILES)}, got {weights!r:.200}")
    if not isinstance(config.get("model_config"), dict):
        raise ValueError(f"{folder / CONFIG}: no 'model_config' mapping")
    state: dict[str, torch.Tensor] = {}
    for name in weights:   # the prefix is ours, never the file's: a name can only map to its own
        state.update(_read_weights(folder / name, WEIGHT_FILES[name]))
    extra = config.get("checkpoint") if isinstance(config.get("checkpoint"), dict) else {}
    extra = {k: v for k, v in extra.items() if k not in ("model", "model_config")}
    return {"model": state, "model_config": config.get("model_config"), **extra}
