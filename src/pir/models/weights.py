"""Pretrained weights for the backbones: where they come from, and loading a local file so that
every backbone tensor provably comes from it.

- ``""``: random init; ``"timm"``: timm hub weights of the model's default tag;
- a timm tag of the same architecture (``swin_tiny_patch4_window7_224.ms_in22k``): hub weights of that tag;
- a local file: loaded here (``load_backbone_weights``), never through timm's lenient pretrained
  path, because timm loads with ``strict=False`` whenever the classifier size differs and would
  leave unmatched backbone tensors at their random init without a word. Every backbone tensor
  must come from the file; the file's classifier head (any number of classes) is dropped;
- a Hugging Face Hub id (``hf-hub:ORG/REPO/FILE[@REVISION]``, pir.hub): the file it resolves to in
  the cache, loaded as a local file; without FILE, the repository's ``model.safetensors`` (or
  ``pytorch_model.bin``), as timm's own Hub repositories hold them.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import timm
import torch
from torch import nn

from pir import hub
from pir.errors import first_line
from pir.files import load_torch

# Top-level names a classifier head goes by in checkpoints (timm/torchvision ResNet "fc", Swin "head",
# others "classifier"). PIR uses pooled features only, so a head is dropped, whatever its size.
HEAD_NAMES = ("fc", "head", "classifier")
# torchvision ResNet children in order: nn.Sequential(*resnet.children()) names them 0..9. The
# authors' PIR code keeps its prior in such a Sequential; a file saved from it has keys "0.weight",
# "4.0.conv1.weight", ... which match no torchvision/timm name unless mapped back.
RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".safetensors")
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")   # a Hub repository's weights when the id names no file
SHOWN_KEYS = 3                      # keys quoted in a one-line error


# --------------------------------------------------------------------------- where weights come from

@dataclass(frozen=True)
class WeightsSource:
    """What to build and where its weights come from."""
    model_name: str     # timm name to create (with the hub tag when the weights are a tag's)
    hub: bool           # timm fetches the weights of ``model_name`` (online, or its cache)
    file: str = ""      # local file loaded by ``load_backbone_weights`` ("" = none)


def resolve_weights(model_name: str, pretrained: str, what: str) -> WeightsSource:
    """``pretrained`` ("" | "timm" | timm tag | local file | Hub id) for timm model ``model_name``.

    ``what`` names the setting in errors (e.g. "model.vision_pretrained"). An existing file wins
    over a tag of the same spelling; a tag must belong to ``model_name``'s architecture.
    """
    if not pretrained:
        return WeightsSource(model_name, hub=False)
    if pretrained == "timm":
        return WeightsSource(model_name, hub=True)
    if hub.is_hub_id(pretrained):
        return WeightsSource(model_name, hub=False, file=str(_hub_weights_file(pretrained, what)))
    if Path(pretrained).expanduser().is_file():
        return WeightsSource(model_name, hub=False, file=str(Path(pretrained).expanduser()))
    if _looks_like_tag(pretrained):
        return WeightsSource(_checked_tag(model_name, pretrained, what), hub=True)
    raise FileNotFoundError(f"{pretrained}: {what} weights file not found")


def _hub_weights_file(hub_id: str, what: str) -> Path:
    """The weights file a Hub id names, or its repository's ``HUB_WEIGHTS`` file."""
    path = hub.local_path(hub_id, what, folder_files=HUB_WEIGHTS)
    if path.is_file():
        return path
    found = next((path / name for name in HUB_WEIGHTS if (path / name).is_file()), None)
    if found is None:
        raise FileNotFoundError(f"{what} = {hub_id}: the repository has no {' or '.join(HUB_WEIGHTS)}; "
                                "name the weights file (hf-hub:ORG/REPO/FILE)")
    return found


def _looks_like_tag(value: str) -> bool:
    """``arch.tag`` as timm spells pretrained tags, not a path or a file name."""
    return ("." in value and "/" not in value and os.sep not in value
            and not value.lower().endswith(WEIGHT_SUFFIXES))


def _checked_tag(model_name: str, tag: str, what: str) -> str:
    arch = timm.models.split_model_name_tag(model_name)[0]
    tag_arch = timm.models.split_model_name_tag(tag)[0]
    if tag_arch != arch:
        raise ValueError(f"{what} = {tag!r}: a timm tag of {tag_arch}, but the model is {arch} "
                         f"(use a tag of {arch}, \"timm\", or a weights file)")
    known = timm.list_pretrained(f"{arch}.*")
    if tag not in known:
        raise ValueError(f"{what} = {tag!r}: no such timm pretrained tag (known: {', '.join(known) or 'none'}); "
                         "a weights file that does not exist reads as a tag: check the path")
    return tag


# --------------------------------------------------------------------------- local weight files

def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (``weights_only`` load): a plain state_dict, or one wrapped in
    ``{"model": ...}`` / ``{"state_dict": ...}`` (training checkpoints), with a DDP ``module.`` prefix removed.
    """
    where = str(path)
    checkpoint = _load_file(path)
    for _ in range(2):   # {"model": sd}, {"state_dict": sd}, or {"model": {"state_dict": sd}}
        if isinstance(checkpoint, Mapping):
            inner = next((checkpoint[k] for k in ("model", "state_dict")
                          if isinstance(checkpoint.get(k), Mapping)), None)
            if inner is not None and not _tensors(checkpoint):
                checkpoint = inner
    tensors = _tensors(checkpoint) if isinstance(checkpoint, Mapping) else {}
    if not tensors:
        raise ValueError(f"{where}: no tensors found for {what} "
                         "(expected a state_dict, or one under 'model'/'state_dict')")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _tensors(mapping: Mapping) -> dict[str, torch.Tensor]:
    return {k: v for k, v in mapping.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _load_file(path: str | os.PathLike) -> Any:
    """safetensors, or torch.load(weights_only=True): a weights file never runs pickled code."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as exc:  # header/format errors
            raise ValueError(f"{path}: not a loadable safetensors file ({str(exc).splitlines()[0][:200]})") from None
    try:
        return load_torch(path)
    except ValueError:
        names = _unsafe_globals(path)
        if not names:
            raise
        # e.g. a training checkpoint that pickles its argparse/yacs config beside the weights
        raise ValueError(f"{path}: weights_only loading refuses the pickled {', '.join(names[:SHOWN_KEYS])} in it; "
                         "re-save just its state_dict (torch.save(checkpoint['model'], ...)) from a trusted copy"
                         ) from None


def _unsafe_globals(path: str | os.PathLike) -> list[str]:
    """The pickled classes that stop a weights_only load (torch >= 2.5 can list them)."""
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    try:
        return list(lister(path)) if lister else []
    except Exception:   # not a zip checkpoint: load_torch's own message says what is wrong
        return []


def _from_sequential(state_dict: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], bool]:
    """Keys of ``nn.Sequential(*resnet.children())`` ("0.weight", "4.0.conv1.weight") -> ResNet names."""
    numbered = all(re.match(r"\d+\.", k) for k in state_dict)
    if not numbered or not all(hasattr(model, name) for name in ("conv1", "layer1", "fc")):
        return state_dict, False
    out = {}
    for key, value in state_dict.items():
        index, _, rest = key.partition(".")
        name = RESNET_CHILDREN[int(index)] if int(index) < len(RESNET_CHILDREN) else index
        out[f"{name}.{rest}"] = value
    return out, True


def _top(key: str) -> str:
    return key.split(".", 1)[0]


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN_KEYS]) + (f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def _split_head(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone tensors, classifier head tensors: those under a HEAD_NAMES top-level module)."""
    heads = {k: v for k, v in state_dict.items() if _top(k) in HEAD_NAMES}
    return {k: v for k, v in state_dict.items() if k not in heads}, heads


def _head_summary(heads: dict[str, torch.Tensor]) -> str:
    if not heads:
        return ""
    prefixes = sorted({k.rsplit(".", 1)[0] for k in heads})
    weights = [v for k, v in sorted(heads.items()) if k.endswith("weight") and v.ndim == 2]
    classes = f" [{int(weights[-1].shape[0])} classes]" if weights else ""
    return f"dropped head {', '.join(p + '.*' for p in prefixes)}{classes}"


def _check_fit(file_state: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor], where: str,
               what: str, arch: str) -> list[str]:
    """Backbone keys both have; ValueError (one line) unless the file holds every backbone tensor, shaped right."""
    required = [k for k in model_state if _top(k) not in HEAD_NAMES]
    matched = [k for k in required if k in file_state]
    if not matched:
        raise ValueError(f"{where}: {what} matches no {arch} backbone key (file has {_shown(sorted(file_state))}; "
                         f"expected {_shown(required)})")
    # BatchNorm step counters are unused with a fixed momentum: a file may leave them out
    missing = [k for k in required if k not in file_state and not k.endswith("num_batches_tracked")]
    modules = {_top(k) for k in required}
    unexpected = sorted(k for k in file_state if k not in model_state and _top(k) in modules)
    wrong = [f"{k} {list(file_state[k].shape)} != {list(model_state[k].shape)}" for k in matched
             if file_state[k].shape != model_state[k].shape]
    problems = [f"{label} {len(keys)}: {_shown(keys)}" for label, keys in
                (("shape mismatches", wrong), ("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:
        raise ValueError(f"{where}: {what} does not fit {arch} ({'; '.join(problems)})")
    return matched


def load_backbone_weights(model: nn.Module, path: str | os.PathLike, what: str,
                          log: Callable[[str], None] = print) -> str:
    """Load every backbone tensor of timm ``model`` from a weights file; returns (and logs) a one-line summary.

    Accepted: the layouts ``read_state_dict`` unwraps; a classifier head of any size (dropped: the
    model keeps its own, fresh or Identity); ResNet keys of an ``nn.Sequential(*resnet.children())``
    (mapped); for Swin, the original Microsoft layout (timm's own checkpoint filter converts it).
    Keys outside the backbone's modules are ignored and counted. Refused with a one-line
    ValueError naming the file: no backbone key matched, a backbone tensor missing or misshapen.
    """
    where = str(path)
    arch = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
    raw = read_state_dict(path, what)
    state, mapped = _from_sequential(raw, model)
    state = _filtered(state, model, where, what, arch)
    converted = not mapped and bool(set(state) - set(raw))
    backbone, heads = _split_head(state)
    model_state = model.state_dict()
    matched = _check_fit(backbone, model_state, where, what, arch)
    model.load_state_dict({k: backbone[k] for k in matched}, strict=False)
    _verify_loaded(model, backbone, matched, where)
    ignored = len(raw) - len(matched) - len(heads)
    notes = [n for n in ("mapped nn.Sequential child indices to ResNet names" if mapped else "",
                         f"converted by timm's {type(model).__name__} checkpoint filter" if converted else "",
                         _head_summary(heads), f"ignored {ignored} other keys" if ignored else "") if n]
    summary = f"{what}: loaded {len(matched)} {arch} backbone tensors from {where}"
    summary += f" ({'; '.join(notes)})" if notes else ""
    log(summary)
    return summary


def _filtered(state: dict[str, torch.Tensor], model: nn.Module, where: str, what: str,
              arch: str) -> dict[str, torch.Tensor]:
    """``state`` through the model family's own timm ``checkpoint_filter_fn``: the conversion from the
    authors' layout that timm applies to hub weights (Swin: downsample moved from the end of stage i
    to the start of stage i+1, ``head.*`` -> ``head.fc.*``, recomputed index/mask buffers dropped).
    Families without one (ResNet) pass through unchanged."""
    family = importlib.import_module(type(model).__module__)
    convert = getattr(family, "checkpoint_filter_fn", None)
    if convert is None:
        return state
    try:
        return convert(state, model)
    except (AttributeError, KeyError, RuntimeError, ValueError) as exc:  # e.g. a block the model lacks
        first = first_line(exc, 200)
        raise ValueError(f"{where}: {what} does not fit {arch} (timm's checkpoint filter failed: {first})") from None


def _verify_loaded(model: nn.Module, state: dict[str, torch.Tensor], keys: list[str], where: str) -> None:
    """Every loaded tensor now equals the file's: nothing was left at its random init."""
    now = model.state_dict()
    differ = [k for k in keys if not torch.equal(now[k], state[k].to(now[k].dtype))]
    if differ:
        raise ValueError(f"{where}: tensors did not load ({_shown(differ)})")


def load_state(module: nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """Strict load_state_dict (only BatchNorm step counters may be missing); one-line ValueError otherwise."""
    try:
        result = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # size mismatches
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"{where}: weights do not fit the model ({detail})") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(f"{where}: weights do not fit the model (missing {len(missing)}: {missing[:4]}; "
                         f"unexpected {len(result.unexpected_keys)}: {result.unexpected_keys[:4]})")
