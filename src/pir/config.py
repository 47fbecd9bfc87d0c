"""Typed configuration of every part of the pipeline.

The pipeline builds these dataclasses once from ``params.yaml`` (``pir.params``,
``pir.pipeline.load_configs``); the library only ever receives the dataclasses, never a
raw dict. Field comments say what each option does and which value the paper
(or its released code) used.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, fields
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

DATASETS = ("synthetic", "rsitmd", "rsicd")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("bf16", "fp32")
SCHEDULES = ("linear", "cosine")   # learning-rate decay after the warm-up (docs/design.md, "Recipes and params")
# model.clip_activation: "auto" reads it off the weights' name (pir.clip_known; docs/design.md, "CLIP towers").
CLIP_ACTIVATIONS = ("auto", "quickgelu", "gelu")
# CLIP's normalisation constants: every preset normalises with them unless model.image_mean/std say otherwise.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Every integer param reaches torch or NumPy as a 64-bit integer: larger ones end in one line, not in
# an OverflowError deep inside them. Sizes that are memory have lower, raisable ceilings (RuntimeConfig).
MAX_INT = 2 ** 63 - 1
OUT_OF_RANGE = "outside the integers a param can hold (at most 2**63 - 1 in size)"
# torch.set_num_threads and OpenMP take any count; no machine has more hardware threads than this.
MAX_THREADS = 4096


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping: unknown keys, wrong types and out-of-range values
    end in one ValueError that names the key, the value and what is allowed.

    ``None`` values are dropped so that params.yaml can leave a field at its (recipe or
    preset) default with ``key: null``. Values are coerced to the field's type in the forms
    that YAML and DVC write: ``dvc exp run -S train.lr=6e-5`` stores ``lr: 6e-05``, which
    PyYAML reads as a string, so numeric strings are numbers here. Booleans are strict:
    a quoted ``"flase"`` is an error, not a truthy string. Lists become tuples for
    hashable, frozen configs. Range checks live in each class's ``__post_init__``.
    """
    where = where or cls.__name__
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    clean = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items() if v is not None}
    try:
        return cls(**clean)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` as type ``kind`` (bool, int, float, str, tuple[...]) or a one-line ValueError naming ``key``."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(kind), key)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{key} = {value!r}: expected true or false")
    if kind in (int, float):
        return _coerce_number(value, kind, key)
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{key} = {value!r}: expected a string")
    return value


def shown(value: Any) -> str:
    """``repr(value)`` for an error line, a number too long to read cut to its first digits and length."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        if value.bit_length() > 14000:           # str() refuses integers beyond 4300 digits
            return f"<an integer of {value.bit_length()} bits>"
        text = str(value)
        return f"{text[:12]}... ({len(text.lstrip('-'))} digits)"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _coerce_number(value: Any, kind: type, key: str) -> int | float:
    # Integers are parsed as integers, never through float(): 2**53 + 1 stays itself (docs/design.md,
    # "Recipes and params").
    what = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{key} = {shown(value)}: expected {what}")
    if kind is int:
        return _coerce_int(value, key)
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or "_" in text:    # float() would read "1_0" and non-ASCII digits
            raise ValueError(f"{key} = {shown(value)}: expected a number")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{key} = {shown(value)}: expected a number") from None
    elif isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"{key} = {shown(value)}: too large for a number (at most about 1.8e308)") from None
    else:
        number = value
    if not math.isfinite(number):
        raise ValueError(f"{key} = {shown(value)}: expected a finite number")
    return number


def _coerce_int(value: int | float | str, key: str) -> int:
    """An exact integer: an int, a float with no fraction (YAML's ``2.0``) or a string of digits (DVC's
    ``'3'``; ``"1e3"`` and ``"2.0"`` are refused as strings); at most ``MAX_INT`` either way."""
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ValueError(f"{key} = {shown(value)}: expected an integer")
        if len(text.lstrip("+-").lstrip("0")) > len(str(MAX_INT)):   # before int(): no 4300-digit parse
            raise ValueError(f"{key} = {shown(value)}: {OUT_OF_RANGE}")
        number = int(text)
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"{key} = {shown(value)}: expected an integer")
        number = int(value)
    else:
        number = value
    if not -MAX_INT <= number <= MAX_INT:
        raise ValueError(f"{key} = {shown(value)}: {OUT_OF_RANGE}")
    return number


def _coerce_tuple(value: Any, args: tuple, key: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key} = {value!r}: expected a list")
    if len(args) == 2 and args[1] is Ellipsis:
        kinds = [args[0]] * len(value)
    else:
        if len(value) != len(args):
            raise ValueError(f"{key} = {list(value)!r}: expected a list of {len(args)} values")
        kinds = list(args)
    return tuple(coerce(v, k, f"{key}[{i}]") for i, (v, k) in enumerate(zip(value, kinds)))


def effective_precision(precision: str, device_type: str, cpu_bf16: bool = False) -> str:
    """What a run computes in: bf16 autocast on CUDA, on CPU only when ``cpu_bf16`` asks; else fp32."""
    return "bf16" if precision == "bf16" and (device_type == "cuda" or cpu_bf16) else "fp32"


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    """Range/choice check for ``__post_init__``: one line naming the key, the value and what is allowed."""
    if not condition:
        raise ValueError(f"{key} = {value!r}: {allowed}")


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    check(value in choices, key, value, f"choose from {', '.join(choices)}")


def to_dict(config: Any, permissions: bool = False) -> dict[str, Any]:
    """Plain-dict view of a config (tuples as lists) for checkpoints, JSON and MLflow.

    Fields marked ``permission`` (``model.allow_torchscript``) say what a run may load, not what it
    computes: they stay out of checkpoints, run keys and MLflow params (so those hash as they did
    before the field existed) unless ``permissions`` asks for them (the resolved params YAML)."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    skipped = set() if permissions else {f.name for f in fields(config) if f.metadata.get("permission")}
    return {k: plain(v) for k, v in dataclasses.asdict(config).items() if k not in skipped}


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class SyntheticConfig:
    """The built-in generated remote-sensing dataset (``data.dataset: synthetic``)."""
    images: int = 2000              # total images over all splits
    image_size: int = 128           # side of each square RGB image, pixels
    classes: int = 16               # scene classes, taken in order from the RSITMD-like class list
    captions_per_image: int = 5     # RSITMD/RSICD have five
    distractor_rate: float = 0.5    # expected distractor objects from other classes per image ("semantic noise")
    generic_caption_rate: float = 0.2  # share of captions that mention only the scene, not the objects
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/val/test fractions, by image
    planted_duplicates: int = 0     # near-duplicates of train images planted into val/test for the leakage
                                    # audit to find (re-encoded, cropped or recoloured copies; params.yaml: 6)

    def __post_init__(self) -> None:
        check(self.images >= 3, "images", self.images, "must be >= 3 (one per split)")
        check(self.image_size >= 16, "image_size", self.image_size, "must be >= 16")
        check(self.classes >= 2, "classes", self.classes, "must be >= 2")
        check(1 <= self.captions_per_image <= 100, "captions_per_image", self.captions_per_image,
              "must be in [1, 100]")
        check(self.distractor_rate >= 0, "distractor_rate", self.distractor_rate, "must be >= 0")
        check(0 <= self.generic_caption_rate <= 1, "generic_caption_rate", self.generic_caption_rate,
              "must be in [0, 1]")
        check(min(self.split) >= 0 and abs(sum(self.split) - 1) < 1e-6 and self.split[0] > 0, "split",
              list(self.split), "three fractions >= 0 (train > 0) that sum to 1")
        check(self.planted_duplicates >= 0, "planted_duplicates", self.planted_duplicates, "must be >= 0")


# Safety caps: the library defaults (pir.data.images, pir.data.download) and DataConfig's.
# The most pixels (width x height) one image may decode to, checked from its header before decoding
# (docs/design.md, "Image size cap"). 2**27 = 134 M admits a whole Sentinel-2 10 m tile (10980 x 10980 =
# 121 M) and the usual aerial tiles (10000 x 10000 and below), and refuses a file declaring 40000 x 40000
# (1.6 G pixels, 4.5 GiB as 8-bit RGB). At the cap an 8-bit RGB image takes 384 MiB, its float stretch
# 1.5 GiB: what a laptop can afford. Raised per call (max_pixels), data.max_image_pixels, --max-pixels.
DEFAULT_MAX_PIXELS = 2 ** 27
# What one archive may expand to, from its members' declared sizes, checked before anything is written
# (docs/design.md, "Downloads and archives"). 64 GiB leaves room for big satellite archives (RSICD and
# RSITMD are 0.5-1 GB); 100x is far above what image archives compress (JPEG, PNG and compressed TIFF
# barely shrink, caption JSON ~10x) and far below a zip bomb (1000x and more). Raised per call
# (max_bytes, max_ratio), by data.max_archive_bytes / data.max_archive_ratio, and pir index's flags.
DEFAULT_MAX_ARCHIVE_BYTES = 64 * 2 ** 30
DEFAULT_MAX_ARCHIVE_RATIO = 100.0


@dataclass(frozen=True)
class DataConfig:
    """What ``fetch`` produces and how captions are turned into tokens."""
    dataset: str = "synthetic"      # synthetic | rsitmd | rsicd
    source: str = ""                # local folder/archive or http(s) URL of a real dataset; unused for synthetic
    sha256: str = ""                # expected sha256 of a downloaded archive ("" = do not verify)
    class_list: str = ""            # optional file "filename class" for images with no class in their name
    val_fraction: float = 0.1       # val carved from train (by image, seeded) when the source has no val split
    drop_empty_captions: bool = False  # False: an empty caption stops the import; True: drop it (and captionless images)
    cache_res: int = 128            # side of the uint8 pixel cache the loaders memory-map
    max_words: int = 30             # captions are cut to this many words (released configs)
    max_tokens: int = 47            # and to this many tokens, [CLS]/[SEP] included
    tokenizer: str = ""             # "" = the text model's own when model.text_pretrained, else train WordPiece
                                    # on the train captions; or a HF tokenizer name / local dir / Hub id (pir.hub)
    vocab_size: int = 2000          # size of the trained WordPiece vocabulary
    exclude_leaked: bool = False    # evaluate drops test images with a near-duplicate in train or val
                                    # (reports/audit.json) before scoring; the report says how many
    # sharded corpora (docs/scaling.md, "Sharded corpora"): source may also be a shard folder (shards.json)
    # or a brace pattern of tar shards, /data/rs5m/{00000..00127}.tar; train then streams from them
    eval_source: str = ""           # val/test of a sharded source: "" = its own val-/test- shards; else a dataset
                                    # folder/archive/URL (read as data.dataset) or a shard folder
    samples_per_epoch: int = 0      # streamed train pairs per epoch over all ranks (0 = the manifest's count;
                                    # required for a bare pattern)
    shuffle_buffer: int = 2000      # streamed pairs (encoded) each loader worker holds to shuffle them
    # safety caps (docs/design.md, "Image size cap", "Downloads and archives")
    max_image_pixels: int = DEFAULT_MAX_PIXELS   # width x height one image may decode to, checked from its header
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES   # total an archive source may extract to (declared sizes)
    max_archive_ratio: float = DEFAULT_MAX_ARCHIVE_RATIO  # and at most this many times the archive's own size

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check(self.sha256 == "" or re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256) is not None, "sha256",
              self.sha256, "a 64-hex-digit sha256 or empty")
        check(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "must be in [0, 1)")
        check(self.cache_res >= 16, "cache_res", self.cache_res, "must be >= 16")
        check(self.max_words >= 1, "max_words", self.max_words, "must be >= 1")
        check(self.max_tokens >= 3, "max_tokens", self.max_tokens, "must be >= 3 ([CLS], a word, [SEP])")
        check(self.vocab_size >= 100, "vocab_size", self.vocab_size, "must be >= 100")
        check(self.samples_per_epoch >= 0, "samples_per_epoch", self.samples_per_epoch, "must be >= 0")
        check(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, "must be >= 1")
        check(self.max_image_pixels >= 1, "max_image_pixels", self.max_image_pixels, "must be >= 1")
        check(self.max_archive_bytes >= 1, "max_archive_bytes", self.max_archive_bytes, "must be >= 1")
        check(self.max_archive_ratio >= 1, "max_archive_ratio", self.max_archive_ratio, "must be >= 1")


# --------------------------------------------------------------------------- model

@dataclass(frozen=True)
class ModelConfig:
    """PIR architecture. The presets below (``PRESETS``) hold its named defaults.

    With ``clip_model`` set (the ``clip-*`` presets) the towers are open_clip's (pir.models.clip)
    and the Swin/BERT fields are unused; the PIR heads, prior and losses are the same.
    """
    # vision backbone: timm Swin, built by name with these geometry overrides
    vision_model: str = "swin_tiny_patch4_window7_224"
    vision_pretrained: str = ""     # "" random init, "timm" hub weights, a timm tag (swin_tiny_patch4_window7_224
                                    # .ms_in22k), a local file (original Microsoft Swin layout accepted), or a
                                    # Hub id hf-hub:ORG/REPO[/FILE][@REVISION] of one (pir.hub)
    image_size: int = 224
    image_mean: tuple[float, float, float] = CLIP_MEAN  # per-channel normalisation of every input image
    image_std: tuple[float, float, float] = CLIP_STD    # (the released configs and CLIP checkpoints use CLIP's)
    swin_patch_size: int = 4
    swin_window_size: int = 7
    swin_embed_dim: int = 96
    swin_depths: tuple[int, ...] = (2, 2, 6, 2)
    swin_heads: tuple[int, ...] = (3, 6, 12, 24)
    swin_drop_path: float = 0.1
    # text backbone: BERT from transformers; "bert-base-uncased" name or local dir when pretrained
    text_model: str = "bert-base-uncased"
    text_pretrained: bool = False   # load text_model weights (name, dir or Hub id: pir.hub) with from_pretrained
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_ffn: int = 3072
    vocab_size: int = 30522         # set from the tokenizer by the stage
    max_tokens: int = 47            # captions cut to this many tokens, [CLS]/[SEP] included (set from data)
    max_words: int = 30             # and first to this many words (set from data.max_words by the stage)
    text_mask: bool = True          # False reproduces the official code: no attention mask anywhere on text
    fold_text: bool = True          # with text_mask, BERT runs on real tokens only, two captions a row (CPU; same outputs)
    # CLIP towers (pir.models.clip): an open_clip architecture name replaces Swin + BERT
    clip_model: str = ""            # "" = PIR's Swin + BERT; else open_clip name (ViT-B-32, ViT-B-16, ViT-L-14,
                                    # ViT-H-14, RN50, PIR-CLIP-tiny)
    clip_weights: str = ""          # starting weights: "" random init, or a local file / HF-style folder (any layout
                                    # pir.models.clip.load_clip_checkpoint reads: RemoteCLIP, GeoRSCLIP, OpenAI, ...),
                                    # or a Hub id of one: hf-hub:ORG/REPO[/FILE][@REVISION] (pir.hub)
    clip_activation: str = "auto"   # auto | quickgelu | gelu. auto: from the names of clip_weights and clip_model
                                    # (pir.clip_known: OpenAI-initialised RemoteCLIP/GeoRSCLIP-B32 QuickGELU, else GELU);
                                    # the pipeline records the resolved value
    # May clip_weights / evaluate.checkpoint be a TorchScript archive (OpenAI's .pt)? Loading one runs
    # code from the file, so only on request. A permission, not architecture: to_dict leaves it out of
    # checkpoints and run keys (docs/design.md, "CLIP towers").
    allow_torchscript: bool = dataclasses.field(default=False, metadata={"permission": True})
    # scene prior ("instruction encoder"): timm classifier, pooled features, frozen unless finetune_prior
    prior_model: str = "resnet50"
    prior_channels: tuple[int, ...] = ()  # timm ResNet stage widths; () = the model's own
    prior_width: int = 2048         # pooled feature width of prior_model
    finetune_prior: bool = False
    # PIR head
    embed_dim: int = 512
    heads: int = 8
    dropout: float = 0.2
    filter_size: int = 40           # tokens kept after belief sorting (of 1 + final Swin tokens)
    instru_num: int = 2             # Spatial-PAE repetitions (VIR)
    cycle_num: int = 3              # Temporal-PAE repetitions (LCA)
    use_vir: bool = True            # False: image = vision_proj(global token), no scene prior
    use_lca: bool = True            # False: text = text_proj([CLS])
    # losses
    temp: float = 0.07              # contrastive temperature tau1 (learnable)
    temp2: float = 0.07             # affiliation temperature tau2 (learnable)
    use_affiliation: bool = True
    center_factor: float = 1.0
    use_triplet: bool = False       # add VSE triplet loss
    triplet_margin: float = 0.2
    triplet_hardest: bool = False

    def __post_init__(self) -> None:
        for key in ("image_size", "swin_patch_size", "swin_window_size", "swin_embed_dim", "text_width",
                    "text_layers", "text_heads", "text_ffn", "vocab_size", "max_words", "prior_width",
                    "embed_dim", "heads", "filter_size", "instru_num", "cycle_num"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "must be >= 1")
        check(self.max_tokens >= 3, "max_tokens", self.max_tokens, "must be >= 3 ([CLS], a word, [SEP])")
        check(len(self.swin_depths) == len(self.swin_heads) and len(self.swin_depths) >= 1, "swin_depths",
              list(self.swin_depths), f"one depth per stage, as many as swin_heads {list(self.swin_heads)}")
        check(self.embed_dim % self.heads == 0, "embed_dim", self.embed_dim, f"must be a multiple of heads={self.heads}")
        check(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        check(0 <= self.swin_drop_path < 1, "swin_drop_path", self.swin_drop_path, "must be in [0, 1)")
        check(self.temp > 0, "temp", self.temp, "must be > 0")
        check(self.temp2 > 0, "temp2", self.temp2, "must be > 0")
        check(self.center_factor >= 0, "center_factor", self.center_factor, "must be >= 0")
        check(self.triplet_margin >= 0, "triplet_margin", self.triplet_margin, "must be >= 0")
        check(all(v > 0 for v in self.image_std), "image_std", list(self.image_std), "three values > 0")
        check_choice("clip_activation", self.clip_activation, CLIP_ACTIVATIONS)
        check(not self.clip_weights or bool(self.clip_model), "clip_weights", self.clip_weights,
              "needs model.clip_model (use a clip-* preset)")

    @property
    def is_clip(self) -> bool:
        """open_clip towers (a clip-* preset) rather than Swin + BERT."""
        return bool(self.clip_model)


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


# --------------------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` stage: released recipe (AdamW, warm-up + linear or cosine decay, augmentations) and runtime."""
    # optimisation (released configs)
    lr: float = 6e-5
    weight_decay: float = 0.01      # not applied to biases and norm weights
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_fraction: float = 0.1    # of all steps (used when warmup_steps is 0), then decay to 0
    warmup_steps: int = 0           # > 0: warm-up length in optimizer steps, wins over warmup_fraction
    schedule: str = "linear"        # decay to 0 after the warm-up: linear (released PIR) | cosine (open_clip's cosine_lr)
    epochs: int = 50                # 0 = zero-shot (CLIP presets only): the starting weights become the checkpoint
    global_batch_size: int = 256    # pairs per optimizer step over all processes; split evenly over the
                                    # GPUs in use, and the losses gather the whole of it (2 GPUs x 128 released)
    pairs_per_image: int = 0        # captions per image per epoch (0 = every caption, the released recipe;
                                    # k > 0 cycles through each image's captions, k per epoch: CPU budget runs)
    grad_clip: float = 0.0          # max global gradient L2 norm (after the DDP all-reduce); 0 = off
    local_loss: bool = False        # each rank scores only its own rows against the gathered batch (open_clip's
                                    # local_loss): O(local x global) loss memory, the same gradients
                                    # (docs/scaling.md, "Training on many GPUs and nodes")
    # train-time augmentation (docs/design.md, Data)
    crop_scale: tuple[float, float] = (0.5, 1.0)
    hflip: bool = True
    randaug_ops: int = 2
    randaug_magnitude: int = 7
    # runtime
    device: str = "auto"            # auto | cpu | cuda
    precision: str = "bf16"         # bf16 | fp32; bf16 autocast on CUDA, on CPU only with cpu_bf16
    cpu_bf16: bool = False
    max_gpus: int = 0               # 0 = every visible GPU
    eval_interval: int = 1          # validate (and maybe select) every N epochs
    track_test: bool = False        # also score test after each validation, for reporting only (never selects;
                                    # docs/design.md, "Comparing with published numbers")
    num_workers: int = -1           # DataLoader worker processes; -1 = auto (0 on CPU, up to 8 beside a GPU)
    compile: bool = False           # torch.compile the model
    log_interval: int = 20          # steps between host syncs for logging

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        check(all(0 <= b < 1 for b in self.betas), "betas", list(self.betas), "two values in [0, 1)")
        check(self.eps > 0, "eps", self.eps, "must be > 0")
        check(0 <= self.warmup_fraction <= 1, "warmup_fraction", self.warmup_fraction, "must be in [0, 1]")
        check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0 (0 = use warmup_fraction)")
        check_choice("schedule", self.schedule, SCHEDULES)
        check(self.epochs >= 0, "epochs", self.epochs, "must be >= 1, or 0 (CLIP presets) for zero-shot")
        check(self.global_batch_size >= 1, "global_batch_size", self.global_batch_size, "must be >= 1")
        check(0 <= self.pairs_per_image <= 100, "pairs_per_image", self.pairs_per_image,
              "must be in [0, 100] (0 = every caption each epoch; the datasets have 5 an image)")
        check(self.grad_clip >= 0, "grad_clip", self.grad_clip, "must be >= 0 (0 = off)")
        check(0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, "crop_scale", list(self.crop_scale),
              "two fractions with 0 < low <= high <= 1")
        check(self.randaug_ops >= 0, "randaug_ops", self.randaug_ops, "must be >= 0")
        check(0 <= self.randaug_magnitude <= 10, "randaug_magnitude", self.randaug_magnitude, "must be in [0, 10]")
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check(self.max_gpus >= 0, "max_gpus", self.max_gpus, "must be >= 0 (0 = every visible GPU)")
        check(self.eval_interval >= 1, "eval_interval", self.eval_interval, "must be >= 1")
        check(self.num_workers >= -1, "num_workers", self.num_workers, "must be >= 0, or -1 for auto")
        check(self.log_interval >= 1, "log_interval", self.log_interval, "must be >= 1")

    def per_process_batch(self, world_size: int) -> int:
        """Pairs each process steps on: the global batch split evenly over ``world_size`` processes."""
        if self.global_batch_size % world_size:
            raise ValueError(f"train.global_batch_size = {self.global_batch_size} does not split evenly over "
                             f"{world_size} processes (GPUs); use a multiple of {world_size} or set train.max_gpus")
        return self.global_batch_size // world_size


@dataclass(frozen=True)
class ScenePriorConfig:
    """The ``scene_prior`` stage. Architecture comes from ModelConfig.prior_* so PIR loads it as is."""
    pretrained: str = ""            # "" random, "timm" hub weights, a timm tag, or a local classifier file
                                    # (torchvision keys; model/state_dict wrapper, module. prefix; head dropped),
                                    # or a Hub id of one (pir.hub)
    external: str = ""              # class-folder dataset (AID/UCM/NWPU style); "" = use train split labels
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5               # early stopping on val top-1

    def __post_init__(self) -> None:
        check(self.epochs >= 0, "epochs", self.epochs, "must be >= 1, or 0 to use scene_prior.pretrained as it is")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        check(self.patience >= 1, "patience", self.patience, "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """The ``evaluate`` stage."""
    checkpoint: str = ""            # "" = the train stage's best checkpoint; else a path (ours, official, a
                                    # `pir export --hub` folder) or a Hub id of one (hf-hub:ORG/REPO..., pir.hub)
    batch_size: int = 128
    gallery_queries: int = 4        # captions and images shown in the retrieval gallery (each)
    device: str = "auto"            # auto | cpu | cuda
    precision: str = "bf16"         # bf16 autocast on CUDA (fp32 on CPU) | fp32
    bootstrap_resamples: int = 1000  # resamples of the test images behind the 95% interval (ci95)

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(2 <= self.bootstrap_resamples <= 1_000_000, "bootstrap_resamples", self.bootstrap_resamples,
              "must be in [2, 1000000] (seven floats are kept per resample)")
        check(self.gallery_queries >= 0, "gallery_queries", self.gallery_queries, "must be >= 0")
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class AuditConfig:
    """The ``audit`` stage: near-duplicate images (perceptual hash) and captions shared across splits."""
    hash_size: int = 16             # DCT pHash side: hash_size**2 bits (256) from a 4*hash_size px grayscale image
    threshold: int = 24             # pairs at Hamming distance <= this (of hash_size**2 bits) are near-duplicates;
                                    # measured on the built-in data (docs/design.md, "Leakage audit")
    against: str = ""               # a second dataset to compare with (folder, archive or URL; RSICD when training
                                    # on RSITMD), or a prepared folder (dataset.json + pixels.npy); "" = none
    against_dataset: str = "rsicd"  # whose annotation layout to read there: rsitmd | rsicd
    figure_pairs: int = 8           # closest cross-split pairs shown side by side in the figure

    def __post_init__(self) -> None:
        check(2 <= self.hash_size <= 64, "hash_size", self.hash_size, "must be in [2, 64]")
        check(0 <= self.threshold < self.hash_size ** 2, "threshold", self.threshold,
              f"must be in [0, {self.hash_size ** 2}) (bits of the hash)")
        check_choice("against_dataset", self.against_dataset, DATASETS[1:])
        check(self.figure_pairs >= 0, "figure_pairs", self.figure_pairs, "must be >= 0")


@dataclass(frozen=True)
class RuntimeConfig:
    """How many threads a stage process computes with: part of what a run computes (pir.threads); and
    ceilings on the params whose size is memory, checked across sections by ``PipelineConfig``."""
    threads: int = 2                # intra-op threads of torch, numpy's BLAS and scikit-learn's OpenMP; fixed,
                                    # whatever else runs (a different count gives different bytes)
    # Ceilings (docs/design.md, "Recipes and params"): a value past one, such as a batch with three zeros
    # too many, ends in one line instead of a machine out of memory. Far above every recipe (the paper's:
    # batch 256, 224 px images, a 256 px cache); raise one to go past it. They never change results.
    max_batch_size: int = 65536     # train.global_batch_size, evaluate.batch_size, scene_prior.batch_size
    max_image_side: int = 2048      # model.image_size, data.cache_res, synthetic.image_size (pixels)
    max_images: int = 100_000       # synthetic.images (RSICD has 10,921)

    def __post_init__(self) -> None:
        for key in ("threads", "max_batch_size", "max_image_side", "max_images"):
            # exact integers also when built directly (RuntimeConfig(threads="4")), as from params
            object.__setattr__(self, key, coerce(getattr(self, key), int, key))
        check(self.threads >= 1, "threads", self.threads,
              "a number >= 1 (fixed: the thread count changes the numbers, so it never follows the machine's load)")
        check(self.threads <= MAX_THREADS, "threads", self.threads, f"at most {MAX_THREADS}")
        for key in ("max_batch_size", "max_image_side", "max_images"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "must be >= 1")


@dataclass(frozen=True)
class AnalyzeConfig:
    """The ``analyze`` stage."""
    max_points: int = 1000          # cap on embeddings fed to t-SNE (per modality)
    perplexity: float = 30.0
    knn: int = 10

    def __post_init__(self) -> None:
        check(self.max_points >= 10, "max_points", self.max_points, "must be >= 10")
        check(self.perplexity > 0, "perplexity", self.perplexity, "must be > 0")
        check(self.knn >= 1, "knn", self.knn, "must be >= 1")
