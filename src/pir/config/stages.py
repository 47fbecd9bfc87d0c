"""The configurations of the other stages: ``scene_prior``, ``evaluate``, ``audit`` and ``analyze``."""

from __future__ import annotations

from dataclasses import dataclass

from pir.config.data import DATASETS
from pir.config.runtime import DEVICES, PRECISIONS
from pir.config.values import check, check_choice, recipe


@dataclass(frozen=True)
class ScenePriorConfig:
    """The ``scene_prior`` stage. Architecture comes from ModelConfig.prior_* so PIR loads it as is."""
    pretrained: str = recipe("")    # "" random, "timm" hub weights, a timm tag, or a local classifier file
                                    # (torchvision keys; model/state_dict wrapper, module. prefix; head dropped),
                                    # or a Hub id of one (pir.hub)
    external: str = ""              # class-folder dataset (AID/UCM/NWPU style); "" = use train split labels
    epochs: int = recipe(4)
    batch_size: int = recipe(64)
    lr: float = recipe(5e-3)
    weight_decay: float = recipe(1e-4)
    patience: int = recipe(2)       # early stopping on val top-1

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
    batch_size: int = recipe(128)
    gallery_queries: int = 4        # captions and images shown in the retrieval gallery (each)
    device: str = "auto"            # auto | cpu | cuda
    precision: str = recipe("bf16")  # bf16 autocast on CUDA (fp32 on CPU) | fp32
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
                                    # measured on the built-in data (docs/evaluation.md, "Leakage audit")
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
class AnalyzeConfig:
    """The ``analyze`` stage."""
    max_points: int = 1000          # cap on embeddings fed to t-SNE (per modality)
    perplexity: float = 30.0
    knn: int = 10

    def __post_init__(self) -> None:
        check(self.max_points >= 10, "max_points", self.max_points, "must be >= 10")
        check(self.perplexity > 0, "perplexity", self.perplexity, "must be > 0")
        check(self.knn >= 1, "knn", self.knn, "must be >= 1")
