"""Scene classifier training: the frozen "instruction encoder" PIR's VIR module relies on.

Labels come from the retrieval dataset's train split (images of unknown scene are
excluded and counted) or from an external class-folder dataset (AID/UCM/NWPU style).
Selection and early stopping use val top-1; test top-1 is reported once at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pir.config import ModelConfig, ScenePriorConfig
from pir.data.loader import LabelledImages, eval_transform, make_loader, normalize_images, set_epoch, train_transform
from pir.data.prepared import PreparedDataset
from pir.training.optim import param_groups

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


@dataclass
class SceneSet:
    """Labelled images for classification: uint8 pixels [N,R,R,3] (or a memmap) and rows/labels into them."""
    pixels: np.ndarray
    rows: np.ndarray       # int64 [n]
    labels: np.ndarray     # int64 [n], 0..classes-1 (no unknowns)

    def __len__(self) -> int:
        return len(self.rows)


def prepared_scene_sets(prepared: PreparedDataset) -> tuple[dict[str, SceneSet], dict[str, int]]:
    """Per split, the images with a known scene; and per split how many unknown-scene images were excluded."""
    sets, excluded = {}, {}
    for name in ("train", "val", "test"):
        view = prepared.split(name)
        known = view.labels >= 0
        sets[name] = SceneSet(prepared.pixels, view.image_rows[known], view.labels[known])
        excluded[name] = int((~known).sum())
    return sets, excluded


def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{path}: cannot decode image ({exc})") from None


def load_class_folders(root: str | Path, size: int, seed: int, holdout: float = 0.1,
                       progress: bool = True) -> tuple[dict[str, SceneSet], list[str]]:
    """``root/<class>/<image>`` decoded once (PIL) into uint8 [N,size,size,3]; val and test carved by image.

    ``holdout`` of the images (seeded permutation) go to val and as many to test.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: external scene dataset folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((root / name).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or len(files) < 10:
        raise ValueError(f"{root}: expected class folders with images (found {len(classes)} classes, {len(files)} images)")
    pixels = np.stack([_decode(path, size) for path, _ in tqdm(files, desc="decode scenes", disable=not progress)])
    labels = np.array([label for _, label in files], dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(files))
    n_hold = max(1, round(len(files) * holdout))
    parts = {"val": order[:n_hold], "test": order[n_hold:2 * n_hold], "train": order[2 * n_hold:]}
    return {name: SceneSet(pixels, np.sort(rows), labels[np.sort(rows)]) for name, rows in parts.items()}, classes


# --------------------------------------------------------------------------- training

@dataclass
class PriorResult:
    state_dict: dict[str, torch.Tensor]   # weights of the best (val top-1) epoch
    best_epoch: int
    history: list[dict[str, float]]       # per epoch: loss, val_top1, seconds


def _images_dataset(subset: SceneSet, transform: nn.Module, seed: int) -> LabelledImages:
    return LabelledImages(subset.pixels, subset.rows, subset.labels, transform, seed)


@torch.inference_mode()
def predict(model: nn.Module, subset: SceneSet, image_size: int, batch_size: int,
            device: torch.device) -> np.ndarray:
    """Predicted class per image (argmax of the logits), in subset order."""
    model.eval()
    loader = make_loader(_images_dataset(subset, eval_transform(image_size), 0), batch_size, shuffle=False,
                         seed=0, device=device)
    predictions = [model(normalize_images(images, device).contiguous(memory_format=torch.channels_last))
                   .argmax(dim=1).cpu() for images, _ in loader]
    return torch.cat(predictions).numpy() if predictions else np.zeros(0, dtype=np.int64)


def top1(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float((predictions == labels).mean() * 100) if len(labels) else float("nan")


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """[true, predicted] counts, by one bincount."""
    return np.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall per true class in percent (NaN for classes absent from the split)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals * 100, np.nan)


def train_scene_prior(model: nn.Module, sets: dict[str, SceneSet], cfg: ScenePriorConfig, model_cfg: ModelConfig,
                      seed: int, device: torch.device, num_workers: int = 0,
                      log: Callable[[str], None] = print) -> PriorResult:
    """Train with AdamW + cosine decay; keep the best val top-1 epoch; stop after ``patience`` epochs without gain.

    Augmentation: the train-stage crop and flip without RandAugment (a lighter recipe for a classifier).
    """
    if len(sets["train"]) < cfg.batch_size:
        raise ValueError(f"scene_prior: {len(sets['train'])} labelled train images, fewer than one batch of "
                         f"{cfg.batch_size}: lower scene_prior.batch_size")
    model.to(device).to(memory_format=torch.channels_last)
    transform = train_transform(model_cfg.image_size, randaug_ops=0)
    loader = make_loader(_images_dataset(sets["train"], transform, seed), cfg.batch_size, shuffle=True, seed=seed,
                         num_workers=num_workers, device=device, drop_last=True)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * len(loader))
    criterion = nn.CrossEntropyLoss()
    best = PriorResult({}, 0, [])
    best_top1 = -1.0
    for epoch in range(cfg.epochs):
        model.train()
        set_epoch(loader, epoch)
        start, total = time.perf_counter(), torch.zeros(())
        for images, labels in tqdm(loader, desc=f"scene prior epoch {epoch + 1}/{cfg.epochs}", leave=False):
            logits = model(normalize_images(images, device).contiguous(memory_format=torch.channels_last))
            loss = criterion(logits, labels.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total = total + loss.detach().cpu()
        val_top1 = top1(predict(model, sets["val"], model_cfg.image_size, cfg.batch_size, device), sets["val"].labels)
        row = {"epoch": epoch + 1, "loss": float(total) / len(loader), "val_top1": val_top1,
               "epoch_seconds": time.perf_counter() - start}
        best.history.append(row)
        if val_top1 > best_top1:
            best_top1 = val_top1
            best.best_epoch = epoch + 1
            best.state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        log(f"scene prior epoch {epoch + 1}: loss {row['loss']:.4f} val top-1 {val_top1:.2f} "
            f"({row['epoch_seconds']:.1f}s; best epoch {best.best_epoch})")
        if epoch + 1 - best.best_epoch >= cfg.patience:
            log(f"early stop: no val gain for {cfg.patience} epochs")
            break
    model.load_state_dict(best.state_dict)
    return best


def plot_confusion(confusion: np.ndarray, classes: list[str], path: str | Path, title: str) -> None:
    """Row-normalised confusion matrix as a PNG (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pir import io

    with np.errstate(invalid="ignore", divide="ignore"):
        rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    shown = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
