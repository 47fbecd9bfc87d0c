"""Stage ``scene_prior``: the scene classifier PIR uses as its frozen instruction encoder.

scene_prior.epochs > 0 trains it (from scratch, or from scene_prior.pretrained's backbone);
scene_prior.epochs == 0 uses scene_prior.pretrained as it is (the released recipe: the AID
RSP ResNet-50) and scores it with a nearest-centroid probe on the dataset's scene labels.
Writes the prior, its report and the test-split confusion figure, and logs to MLflow.
"""

from __future__ import annotations

import time

from pir import tracking
from pir.config import to_dict
from pir.data.prepared import load_prepared
from pir.device import numerics_record, resolve_device
from pir.params import PipelineConfig
from pir.paths import Paths
from pir.training.scene_prior import (build_scene_prior, check_prior_config, load_class_folders, prepared_scene_sets,
                                      prior_report, scene_prior_model, write_prior_outputs)


def scene_sets(cfgs: PipelineConfig, paths: Paths):
    """(sets per split, class names, excluded unknown-scene counts) from the chosen label source."""
    if cfgs.scene_prior.external:
        sets, classes = load_class_folders(cfgs.scene_prior.external, cfgs.data.cache_res, cfgs.seed)
        return sets, classes, {name: 0 for name in sets}
    prepared = load_prepared(paths.fetch)
    sets, excluded = prepared_scene_sets(prepared)
    return sets, prepared.classes, excluded


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    check_prior_config(cfgs.scene_prior)     # before reading any data
    device = resolve_device(cfgs.train.device)
    sets, classes, excluded = scene_sets(cfgs, paths)
    print(f"scene prior: {len(classes)} classes; labelled images "
          + ", ".join(f"{k} {len(v)}" for k, v in sets.items())
          + f"; excluded (unknown scene) {excluded}")
    model = scene_prior_model(cfgs.scene_prior, cfgs.model, len(classes))
    params = {"seed": cfgs.seed, "recipe": cfgs.recipe, "scene_prior": to_dict(cfgs.scene_prior),
              "model": to_dict(cfgs.model)}
    tracking.ensure_experiment(paths.store)
    runtime = numerics_record(device)
    with tracking.stage_run(paths.store, "scene_prior", params, compared=cfgs.compared_params("scene_prior"),
                            runtime=runtime) as tracker:
        start = time.perf_counter()
        built = build_scene_prior(model, sets, len(classes), cfgs.scene_prior, cfgs.model, cfgs.seed, device,
                                  num_workers=cfgs.train.num_workers)
        for row in built.history:
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        report = prior_report(built, classes, sets, excluded, cfgs.scene_prior.external or "train split scene labels",
                              cfgs.scene_prior.pretrained)
        report["runtime"] = runtime
        write_prior_outputs(built, report, classes, cfgs.model, paths.prior, paths.prior_report, paths.prior_confusion)
        # wall-clock time goes to MLflow only: the report holds what the seed determines
        seconds = "prior_probe_seconds" if built.as_released else "prior_train_seconds"
        metrics = {"prior_val_top1": built.val_top1, "prior_test_top1": built.test_top1,
                   seconds: round(time.perf_counter() - start, 2)}
        tracker.log_metrics({k: v for k, v in metrics.items() if v is not None})
        for path in (paths.prior, paths.prior_report, paths.prior_confusion):
            tracker.log_artifact(path)
    how = f"used as released ({built.evaluation})" if built.as_released else f"best epoch {built.best_epoch}"
    scores = ", ".join(f"{split} top-1 {value:.2f}" for split, value in
                       (("val", built.val_top1), ("test", built.test_top1)) if value is not None)
    print(f"scene prior: {how}" + (f", {scores}" if scores else "") + f" -> {paths.prior}")
