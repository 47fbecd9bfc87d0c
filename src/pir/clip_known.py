"""What the project knows about released CLIP-family weights, read from their names alone.

Two facts per known file, in one table (``KNOWN_WEIGHTS``), because both decide how a baseline may be
read (docs/clip-family.md, "CLIP towers"):

- its activation: OpenAI's CLIP and everything fine-tuned from it (RemoteCLIP, GeoRSCLIP ViT-B-32)
  compute with QuickGELU; LAION-initialised weights and anything open_clip trains by default use
  nn.GELU. The wrong one still loads (same tensors) but embeds differently;
- whether the weights have already seen RSICD/RSITMD training images (yes / no / unknown):
  leakage is not skill.

Matching reads the name only (a path's file name, or the last part of a Hub id such as
``hf-hub:chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt@main``) and never opens anything. The weights'
name is tried first, then the open_clip architecture name (``ViT-B-32-quickgelu``). No heavy imports:
``pir.pipeline.params`` resolves ``model.clip_activation: auto`` with it for every stage.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import PurePath

from pir import hub
from pir.config import ModelConfig

ACTIVATIONS = ("quickgelu", "gelu")
DEFAULT_ACTIVATION = "gelu"          # open_clip's own default (CLIP(quick_gelu=False))
NOT_KNOWN = "not in the known-weights table"


@dataclass(frozen=True)
class KnownWeights:
    """One row: released files whose name matches ``pattern`` (case-insensitive ``re.search``)."""
    pattern: str
    activation: str       # quickgelu | gelu
    activation_why: str
    seen: str             # yes | no | unknown: have the weights seen RSICD/RSITMD training images?
    seen_why: str


_OPENAI_INIT = "initialised from OpenAI's CLIP, which computes with QuickGELU"
# First match wins: the fine-tunes before the files they are fine-tuned from.
KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    KnownWeights(r"RS5M[-_]ViT-?B-?32[-_]RET-?[23]\b", "quickgelu", f"GeoRSCLIP ViT-B-32, {_OPENAI_INIT}",
                 "yes", "GeoRSCLIP fine-tuned on RET-2 (RSICD + RSITMD train) / RET-3 (+ UCM)"),
    KnownWeights(r"RemoteCLIP[-_]?(RN50|ViT-?B-?32|ViT-?L-?14)\b", "quickgelu", f"RemoteCLIP, {_OPENAI_INIT}",
                 "yes", "RemoteCLIP's training data include the RSICD and RSITMD training captions"),
    KnownWeights(r"RS5M[-_]ViT-?H-?14\b", "gelu", "GeoRSCLIP ViT-H-14, initialised from LAION's (GELU)",
                 "unknown", "GeoRSCLIP pre-trained on RS5M (not the retrieval sets' captions)"),
    KnownWeights(r"RS5M[-_]ViT-?B-?32\b", "quickgelu", f"GeoRSCLIP ViT-B-32, {_OPENAI_INIT}",
                 "unknown", "GeoRSCLIP pre-trained on RS5M (not the retrieval sets' captions)"),
    KnownWeights(r"SkyCLIP|SkyScript", "gelu", "SkyCLIP's initialisation not checked here: open_clip's default",
                 "unknown", "SkyCLIP, trained on SkyScript"),
    KnownWeights(r"^(RN50|RN101|RN50x(4|16|64)|ViT-B-32|ViT-B-16|ViT-L-14(-336px)?)\.pt$", "quickgelu",
                 "OpenAI's own CLIP file (QuickGELU)", "no", "OpenAI CLIP (web image-text pairs)"),
    # an architecture name, not a file: open_clip's QuickGELU variants of its configs
    KnownWeights(r"-quickgelu$", "quickgelu", "open_clip's -quickgelu architecture",
                 "unknown", "an architecture name says nothing about training data"),
)


def weights_name(weights: str) -> str:
    """The name the table reads: a path's last part, or a Hub id's file (``hf-hub:owner/repo/file@rev``)."""
    text = str(weights).strip()
    if hub.is_hub_id(text):
        text = text[len(hub.PREFIX):].rstrip("/").split("@", 1)[0]
        return text.rsplit("/", 1)[-1]
    return PurePath(text).name


def known_weights(name: str) -> KnownWeights | None:
    """The first row matching ``name`` (already cut to its last part), or None."""
    for row in KNOWN_WEIGHTS:
        if name and re.search(row.pattern, name, flags=re.IGNORECASE):
            return row
    return None


def resolve_activation(clip_model: str, clip_weights: str) -> tuple[str, str]:
    """(quickgelu | gelu, why) for weights ``clip_weights`` in open_clip architecture ``clip_model``:
    the weights' row, else the architecture's (``ViT-B-32-quickgelu``), else open_clip's default."""
    for name in (weights_name(clip_weights) if clip_weights else "", clip_model or ""):
        row = known_weights(name)
        if row:
            return row.activation, f"{name}: {row.activation_why}"
    if not clip_weights:
        return DEFAULT_ACTIVATION, "no starting weights (random init): open_clip's default"
    return DEFAULT_ACTIVATION, f"{weights_name(clip_weights)}: {NOT_KNOWN} (open_clip's default)"


def with_resolved_activation(cfg: ModelConfig, weights: str | None = None) -> ModelConfig:
    """``cfg`` with ``clip_activation: auto`` made concrete from the names of ``weights`` (default: its
    ``clip_weights``) and its ``clip_model``; explicit values and non-CLIP configs as they are."""
    if not cfg.is_clip or cfg.clip_activation != "auto":
        return cfg
    activation, _ = resolve_activation(cfg.clip_model, cfg.clip_weights if weights is None else weights)
    return dataclasses.replace(cfg, clip_activation=activation)


def seen_by_name(weights: str) -> tuple[str, str]:
    """(yes | no | unknown, why): have weights named ``weights`` seen RSICD/RSITMD training images?"""
    row = known_weights(weights_name(weights))
    return (row.seen, row.seen_why) if row else ("unknown", NOT_KNOWN)


def is_resnet_arch(clip_model: str) -> bool:
    """open_clip's ResNet image towers (RN50, RN101, RN50x4, RN50-quickgelu): no patch tokens for VIR."""
    return re.match(r"RN\d", clip_model or "") is not None
