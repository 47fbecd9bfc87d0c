"""Scene classifier: the frozen "instruction encoder" PIR's VIR module relies on.

Labels come from the retrieval dataset's train split (images of unknown scene are
excluded and counted) or from an external class-folder dataset (AID/UCM/NWPU style).

Two ways to get the prior (``build_scene_prior``):
- ``scene_prior.epochs > 0``: train a classifier; selection and early stopping use val
  top-1; test top-1 is reported once at the end;
- ``scene_prior.epochs == 0``: the released recipe, a pretrained classifier file (the AID
  RSP ResNet-50) used as it is. Its head knows other classes than the dataset's, so its
  accuracy on the dataset's scenes is measured by a nearest-class-centroid probe on the
  frozen pooled features (centroids from the labelled train images, cosine similarity).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pir import files
from pir.config import ModelConfig, ScenePriorConfig, to_dict
from pir.data.loader import LabelledImages, make_loader, set_epoch
from pir.data.class_folders import class_folder_images
from pir.data.images import decode_all
from pir.data.prepared import PreparedDataset
from pir.data.transforms import eval_transform, normalize_images, train_transform
# the classification scores live with evaluation (zero-shot classification shares them)
from pir.evaluation.classification import confusion_matrix, per_class_accuracy, plot_confusion
from pir.models.backbones import create_scene_prior
from pir.models.checkpoint import PRIOR_NOT_USED
from pir.training.optim import param_groups



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


def load_class_folders(root: str | Path, size: int, seed: int, holdout: float = 0.1,
                       progress: bool = True) -> tuple[dict[str, SceneSet], list[str]]:
    """``root/<class>/<image>`` decoded once (PIL) into uint8 [N,size,size,3]; val and test carved by image.

    ``holdout`` of the images (seeded permutation) go to val and as many to test.
    """
    classes, paths, labels = class_folder_images(root, min_images=10)
    pixels, problems = decode_all(paths, [str(p) for p in paths], size, progress)
    if problems:
        raise ValueError(f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    order = np.random.default_rng(seed).permutation(len(paths))
    n_hold = max(1, round(len(paths) * holdout))
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
def _outputs(model: nn.Module, subset: SceneSet, image_size: int, batch_size: int, device: torch.device,
             reduce: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """``reduce(model(batch))`` on CPU for each eval-resized batch, in subset order."""
    model.eval()
    loader = make_loader(_images_dataset(subset, eval_transform(image_size), 0), batch_size, shuffle=False,
                         seed=0, device=device)
    return [reduce(model(normalize_images(images, device).contiguous(memory_format=torch.channels_last))).cpu()
            for images, _ in loader]


def predict(model: nn.Module, subset: SceneSet, image_size: int, batch_size: int,
            device: torch.device) -> np.ndarray:
    """Predicted class per image (argmax of the logits), in subset order."""
    predictions = _outputs(model, subset, image_size, batch_size, device, lambda logits: logits.argmax(dim=1))
    return torch.cat(predictions).numpy() if predictions else np.zeros(0, dtype=np.int64)


def pooled_features(model: nn.Module, subset: SceneSet, image_size: int, batch_size: int,
                    device: torch.device) -> torch.Tensor:
    """[n, C] float32 features of a headless prior (num_classes=0: its forward pools), in subset order."""
    features = _outputs(model, subset, image_size, batch_size, device, lambda pooled: pooled.float())
    return torch.cat(features) if features else torch.zeros(0, 0)


def class_centroids(features: torch.Tensor, labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """[n_classes, C] unit mean of the unit features per class (one index_add); zero rows for absent classes."""
    unit = F.normalize(features, dim=1)
    sums = torch.zeros(n_classes, unit.shape[1]).index_add_(0, torch.as_tensor(labels, dtype=torch.long), unit)
    return F.normalize(sums, dim=1)


def centroid_predict(centroids: torch.Tensor, features: torch.Tensor) -> np.ndarray:
    """Class of the most cosine-similar centroid per feature row; classes without a centroid never win."""
    sims = F.normalize(features, dim=1) @ centroids.T
    sims[:, centroids.norm(dim=1) == 0] = float("-inf")
    return sims.argmax(dim=1).numpy()


def top1(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float((predictions == labels).mean() * 100) if len(labels) else float("nan")


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


# --------------------------------------------------------------------------- the stage's work

AS_RELEASED_NEEDS_FILE = "scene_prior.epochs=0 uses the prior as it is and needs scene_prior.pretrained=<file>"
PROBE = "nearest-centroid probe on frozen features"


def check_prior_config(cfg: ScenePriorConfig) -> None:
    """Refuse, before any work, a prior that would be neither trained nor loaded."""
    if cfg.epochs == 0 and not cfg.pretrained:
        raise ValueError(AS_RELEASED_NEEDS_FILE)


def scene_prior_model(cfg: ScenePriorConfig, model_cfg: ModelConfig, n_classes: int,
                      log: Callable[[str], None] = print) -> nn.Module:
    """The classifier to train (a head for the ``n_classes`` dataset classes; backbone from
    ``cfg.pretrained`` if set) or, with ``epochs == 0``, the pretrained prior as it is, headless:
    the file's head knows other classes and PIR only reads pooled features."""
    check_prior_config(cfg)
    classes = 0 if cfg.epochs == 0 else n_classes
    return create_scene_prior(model_cfg, num_classes=classes, pretrained=cfg.pretrained, log=log)


@dataclass
class PriorRun:
    """What the scene_prior stage writes: weights, and their accuracy on the dataset's scene labels."""
    state_dict: dict[str, torch.Tensor]
    best_epoch: int                       # 0: used as released, no training
    history: list[dict[str, float]]       # per trained epoch (empty when used as released)
    val_top1: float | None                # None: no labelled train images to probe with
    test_top1: float | None
    test_confusion: np.ndarray            # [true, predicted] counts on the test split
    evaluation: str                       # how val/test top-1 were measured
    as_released: bool = False             # the pretrained file's weights, untrained here


def build_scene_prior(model: nn.Module, sets: dict[str, SceneSet], n_classes: int, cfg: ScenePriorConfig,
                      model_cfg: ModelConfig, seed: int, device: torch.device, num_workers: int = 0,
                      log: Callable[[str], None] = print) -> PriorRun:
    """Train ``model`` (``cfg.epochs`` > 0) or probe it as it is (``cfg.epochs`` == 0); scores on val and test."""
    check_prior_config(cfg)
    if cfg.epochs == 0:
        return _probe_as_released(model, sets, n_classes, cfg.batch_size, model_cfg.image_size, device, log)
    result = train_scene_prior(model, sets, cfg, model_cfg, seed, device, num_workers=num_workers, log=log)
    scores = {}
    for split in ("val", "test"):
        predictions = predict(model, sets[split], model_cfg.image_size, cfg.batch_size, device)
        scores[split] = (top1(predictions, sets[split].labels),
                         confusion_matrix(predictions, sets[split].labels, n_classes))
    return PriorRun(result.state_dict, result.best_epoch, result.history, scores["val"][0], scores["test"][0],
                    scores["test"][1], "trained classifier head")


def _probe_as_released(model: nn.Module, sets: dict[str, SceneSet], n_classes: int, batch_size: int,
                       image_size: int, device: torch.device, log: Callable[[str], None]) -> PriorRun:
    """No training: the weights are the file's; top-1 of a nearest-centroid probe on pooled features."""
    model.to(device).to(memory_format=torch.channels_last)
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    empty = np.zeros((n_classes, n_classes), dtype=np.int64)
    if len(sets["train"]) == 0 or n_classes == 0:
        log("scene prior: no labelled train images, so no probe accuracy to report")
        return PriorRun(state_dict, 0, [], None, None, empty, "none: no labelled train images", as_released=True)
    train = sets["train"]
    centroids = class_centroids(pooled_features(model, train, image_size, batch_size, device), train.labels, n_classes)
    scores = {}
    for split in ("val", "test"):
        subset = sets[split]
        if len(subset) == 0:
            scores[split] = (top1(np.zeros(0, dtype=np.int64), subset.labels), empty)
            continue
        predictions = centroid_predict(centroids, pooled_features(model, subset, image_size, batch_size, device))
        scores[split] = (top1(predictions, subset.labels), confusion_matrix(predictions, subset.labels, n_classes))
    log(f"scene prior used as released: {PROBE}, val top-1 {scores['val'][0]:.2f}, test top-1 {scores['test'][0]:.2f}")
    return PriorRun(state_dict, 0, [], scores["val"][0], scores["test"][0], scores["test"][1], PROBE,
                    as_released=True)


def prior_report(run: PriorRun, classes: list[str], sets: dict[str, SceneSet], excluded: dict[str, int],
                 source: str, pretrained: str = "") -> dict[str, Any]:
    """reports/scene_prior.json. A prior used as released also says which file and how it was scored
    (val_top1/test_top1 keep their names so DVC compares them across both ways)."""
    released = {"pretrained": pretrained, "evaluation": run.evaluation} if run.as_released else {}
    return {
        "classes": len(classes),
        "source": source,
        **released,
        "best_epoch": run.best_epoch,
        "epochs_run": len(run.history),
        "val_top1": run.val_top1,
        "test_top1": run.test_top1,
        "per_class_test_accuracy": {c: (None if np.isnan(a) else round(float(a), 2))
                                    for c, a in zip(classes, per_class_accuracy(run.test_confusion))},
        "images": {k: len(v) for k, v in sets.items()},
        "excluded_unknown_scene": excluded,
    }


def write_prior_outputs(run: PriorRun, report: dict[str, Any], classes: list[str], model_cfg: ModelConfig,
                        prior_path: str | Path, report_path: str | Path, confusion_path: str | Path) -> None:
    """The stage's files: the prior checkpoint (the format ``load_scene_prior_weights`` reads), the report,
    and the test confusion figure."""
    files.save_torch(prior_path, {"model": run.state_dict, "model_config": to_dict(model_cfg),
                               "classes": list(classes), "epoch": run.best_epoch})
    files.write_json(report_path, report)
    score = "no labelled images" if run.test_top1 is None else f"top-1 {run.test_top1:.1f}%"
    title = (f"scene prior as released, test split ({score}, nearest-centroid probe)" if run.as_released
             else f"scene prior, test split ({score})")
    plot_confusion(run.test_confusion, classes, confusion_path, title)


def write_unused_prior_outputs(reason: str, prior_path: str | Path, report_path: str | Path,
                               confusion_path: str | Path) -> dict[str, Any]:
    """Placeholders at the stage's outputs when the model takes no prior (model.use_vir false), so DVC
    has its outputs and nothing is trained or read: ``{PRIOR_NOT_USED: reason}`` at the prior path (which
    ``load_scene_prior_weights`` refuses by name), a report saying so and a figure saying so. Returns the report."""
    files.save_torch(prior_path, {PRIOR_NOT_USED: reason})
    report = {"used": False, "reason": reason}
    files.write_json(report_path, report)
    plt = files.pyplot()
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, f"scene prior: {reason}", ha="center", va="center", fontsize=7, wrap=True)
    files.save_figure(fig, confusion_path, dpi=80)
    return report
