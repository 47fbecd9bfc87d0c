"""DVC stage `scene_prior`: train the scene classifier PIR uses as its frozen instruction encoder.

Writes data/scene_prior/prior.pt, reports/scene_prior.json and
reports/figures/scene_prior_confusion.png (test split), and logs to MLflow.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import common
from common import FETCH_DIR, FIGURES, PRIOR_DIR, REPORTS

from pir import io, tracking
from pir.config import to_dict
from pir.data.prepared import load_prepared
from pir.models.backbones import create_scene_prior
from pir.training.distributed import resolve_device
from pir.training.scene_prior import (confusion_matrix, load_class_folders, per_class_accuracy, plot_confusion,
                                      predict, prepared_scene_sets, top1, train_scene_prior)

PRIOR_PATH = PRIOR_DIR / "prior.pt"
REPORT_PATH = REPORTS / "scene_prior.json"
CONFUSION_PATH = FIGURES / "scene_prior_confusion.png"


def scene_sets(cfgs: common.Configs):
    """(sets per split, class names, excluded unknown-scene counts) from the chosen label source."""
    if cfgs.scene_prior.external:
        sets, classes = load_class_folders(cfgs.scene_prior.external, cfgs.data.cache_res, cfgs.seed)
        return sets, classes, {name: 0 for name in sets}
    prepared = load_prepared(FETCH_DIR)
    sets, excluded = prepared_scene_sets(prepared)
    return sets, prepared.classes, excluded


def main() -> None:
    cfgs = common.configs()
    common.seed_everything(cfgs.seed)
    device = resolve_device(cfgs.train.device)
    sets, classes, excluded = scene_sets(cfgs)
    print(f"scene prior: {len(classes)} classes; labelled images "
          + ", ".join(f"{k} {len(v)}" for k, v in sets.items())
          + f"; excluded (unknown scene) {excluded}")
    model = create_scene_prior(cfgs.model, num_classes=len(classes), pretrained=cfgs.scene_prior.pretrained)
    root = common.repo_root()
    params = {"seed": cfgs.seed, "scene_prior": to_dict(cfgs.scene_prior), "model": to_dict(cfgs.model)}
    tracking.ensure_experiment(root)
    with tracking.stage_run(root, "scene_prior", params) as tracker:
        start = time.perf_counter()
        result = train_scene_prior(model, sets, cfgs.scene_prior, cfgs.model, cfgs.seed, device,
                                   num_workers=cfgs.train.num_workers)
        for row in result.history:
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        scores = {}
        for split in ("val", "test"):
            predictions = predict(model, sets[split], cfgs.model.image_size, cfgs.scene_prior.batch_size, device)
            scores[split] = (top1(predictions, sets[split].labels),
                             confusion_matrix(predictions, sets[split].labels, len(classes)))
        test_confusion = scores["test"][1]
        report = {
            "classes": len(classes),
            "source": cfgs.scene_prior.external or "train split scene labels",
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "val_top1": scores["val"][0],
            "test_top1": scores["test"][0],
            "per_class_test_accuracy": {c: (None if np.isnan(a) else round(float(a), 2))
                                        for c, a in zip(classes, per_class_accuracy(test_confusion))},
            "images": {k: len(v) for k, v in sets.items()},
            "excluded_unknown_scene": excluded,
        }
        io.save_torch(PRIOR_PATH, {"model": result.state_dict, "model_config": to_dict(cfgs.model),
                                   "classes": list(classes), "epoch": result.best_epoch})
        io.write_json(REPORT_PATH, report)
        plot_confusion(test_confusion, classes, CONFUSION_PATH,
                       f"scene prior, test split (top-1 {scores['test'][0]:.1f}%)")
        # wall-clock time goes to MLflow only: the report holds what the seed determines
        tracker.log_metrics({"prior_val_top1": report["val_top1"], "prior_test_top1": report["test_top1"],
                             "prior_train_seconds": round(time.perf_counter() - start, 2)})
        for path in (PRIOR_PATH, REPORT_PATH, CONFUSION_PATH):
            tracker.log_artifact(path)
    print(f"scene prior: best epoch {result.best_epoch}, val top-1 {report['val_top1']:.2f}, "
          f"test top-1 {report['test_top1']:.2f} -> {PRIOR_PATH}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(str(exc))
