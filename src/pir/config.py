"""Typed configuration of every part of the pipeline.

Stage scripts build these dataclasses once from ``params.yaml`` (see
``stages/common.py``); the library only ever receives the dataclasses, never a
raw dict. Field comments say what each option does and which value the paper
(or its released code) used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by name.

    ``None`` values are dropped so that params.yaml can leave a field at its
    (preset) default with ``key: null``. Lists become tuples for hashable,
    frozen configs.
    """
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where or cls.__name__}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if v is not None}
    return cls(**clean)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view of a config (tuples as lists) for checkpoints, JSON and MLflow."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


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
    tokenizer: str = ""             # "" = train a WordPiece vocab on train captions; else HF name or local dir
    vocab_size: int = 2000          # size of the trained WordPiece vocabulary


# --------------------------------------------------------------------------- model

@dataclass(frozen=True)
class ModelConfig:
    """PIR architecture. ``pir.models.presets`` holds the ``paper`` and ``tiny`` defaults."""
    # vision backbone: timm Swin, built by name with these geometry overrides
    vision_model: str = "swin_tiny_patch4_window7_224"
    vision_pretrained: str = ""     # "" random init, "timm" hub weights, or a local weights file
    image_size: int = 224
    swin_patch_size: int = 4
    swin_window_size: int = 7
    swin_embed_dim: int = 96
    swin_depths: tuple[int, ...] = (2, 2, 6, 2)
    swin_heads: tuple[int, ...] = (3, 6, 12, 24)
    swin_drop_path: float = 0.1
    # text backbone: BERT from transformers; "bert-base-uncased" name or local dir when pretrained
    text_model: str = "bert-base-uncased"
    text_pretrained: bool = False   # load text_model weights (name or dir) with from_pretrained
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_ffn: int = 3072
    vocab_size: int = 30522         # set from the tokenizer by the stage
    max_tokens: int = 47
    text_mask: bool = True          # False reproduces the official code: no attention mask anywhere on text
    fold_text: bool = True          # with text_mask, BERT runs on real tokens only, two captions a row (CPU; same outputs)
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


# --------------------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` stage: released recipe (AdamW, warm-up + linear decay, augmentations) and runtime."""
    # optimisation (released configs)
    lr: float = 6e-5
    weight_decay: float = 0.01      # not applied to biases and norm weights
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_fraction: float = 0.1    # of all steps, then linear decay to 0
    epochs: int = 50
    batch_size: int = 128           # pairs per process (per GPU)
    pairs_per_image: int = 0        # captions per image per epoch (0 = every caption, the released recipe;
                                    # k > 0 cycles through each image's captions, k per epoch: CPU budget runs)
    grad_clip: float = 0.0          # 0 = off
    # train-time augmentation (GUIDE §4)
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
    num_workers: int = -1           # DataLoader worker processes; -1 = auto (0 on CPU, up to 8 beside a GPU)
    compile: bool = False           # torch.compile the model
    log_interval: int = 20          # steps between host syncs for logging


@dataclass(frozen=True)
class ScenePriorConfig:
    """The ``scene_prior`` stage. Architecture comes from ModelConfig.prior_* so PIR loads it as is."""
    pretrained: str = ""            # "" random, "timm" hub weights, or a local weights file
    external: str = ""              # class-folder dataset (AID/UCM/NWPU style); "" = use train split labels
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5               # early stopping on val top-1


@dataclass(frozen=True)
class EvalConfig:
    """The ``evaluate`` stage."""
    checkpoint: str = ""            # "" = the train stage's best checkpoint; else a path (ours or official)
    batch_size: int = 128
    gallery_queries: int = 4        # captions and images shown in the retrieval gallery (each)
    device: str = "auto"            # auto | cpu | cuda
    precision: str = "bf16"         # bf16 autocast on CUDA (fp32 on CPU) | fp32


@dataclass(frozen=True)
class AnalyzeConfig:
    """The ``analyze`` stage."""
    max_points: int = 1000          # cap on embeddings fed to t-SNE (per modality)
    perplexity: float = 30.0
    knn: int = 10
