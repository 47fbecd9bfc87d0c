"""Stage ``scene_prior``: the scene classifier PIR uses as its frozen instruction encoder.

scene_prior.epochs > 0 trains it (from scratch, or from scene_prior.pretrained's backbone);
scene_prior.epochs == 0 uses scene_prior.pretrained as it is (the released recipe: the AID
RSP ResNet-50) and scores it with a nearest-centroid probe on the dataset's scene labels.
Writes the prior, its report and the test-split confusion figure, and logs to MLflow.

A model without VIR (model.use_vir false: CLIP-CL, zero-shot, the ablation's baselines) takes no
prior: then the stage trains nothing and reads no images, and writes placeholders at its outputs
(DVC needs them) that say so, with a params-only MLflow run (docs/design.md, "Overview").
"""

from __future__ import annotations

import time

from pir import hub

from pir.pipeline import tracking
from pir.config import to_dict
from pir.data.prepared import load_prepared
from pir.device import numerics_record, resolve_device
from pir.pipeline.params import PipelineConfig
from pir.pipeline.paths import Paths
from pir.training.scene_prior import (build_scene_prior, check_prior_config, load_class_folders, prepared_scene_sets,
                                      prior_report, scene_prior_model, write_prior_outputs,
                                      write_unused_prior_outputs)

NOT_USED = "not used by this model (model.use_vir false)"


def scene_sets(cfgs: PipelineConfig, paths: Paths):
    """(sets per split, class names, excluded unknown-scene counts) from the chosen label source."""
    if cfgs.scene_prior.external:
        sets, classes = load_class_folders(cfgs.scene_prior.external, cfgs.data.cache_res, cfgs.seed)
        return sets, classes, {name: 0 for name in sets}
    prepared = load_prepared(paths.fetch)
    if prepared.train_shards and cfgs.scene_prior.epochs > 0:
        raise ValueError(f"the train split streams from shards ({prepared.train_shards['source']}) and "
                         "is not in the prepared dataset, so there is nothing to train the classifier on: set "
                         "scene_prior.external (class folders), scene_prior.epochs=0 with scene_prior.pretrained, "
                         "or model.use_vir=false")
    sets, excluded = prepared_scene_sets(prepared)
    return sets, prepared.classes, excluded


def skip_unused(cfgs: PipelineConfig, paths: Paths) -> None:
    """The model takes no prior: placeholders at the outputs, and a run that records only the params."""
    write_unused_prior_outputs(NOT_USED, paths.prior, paths.prior_report, paths.prior_confusion)
    params = {"seed": cfgs.seed, "recipe": cfgs.recipe, "scene_prior": to_dict(cfgs.scene_prior),
              "model": to_dict(cfgs.model)}
    tracking.ensure_experiment(paths.store)
    with tracking.stage_run(paths.store, "scene_prior", params, compared=cfgs.compared_params("scene_prior"),
                            system_metrics=False) as tracker:
        tracker.set_tags({"scene_prior_used": "false"})
        tracker.log_artifact(paths.prior_report)
    print(f"scene prior: {NOT_USED}; nothing trained, placeholders at {paths.prior}")


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    if not cfgs.model.use_vir:
        skip_unused(cfgs, paths)
        return
    check_prior_config(cfgs.scene_prior)     # before reading any data
    device = resolve_device(cfgs.train.device)
    sets, classes, excluded = scene_sets(cfgs, paths)
    print(f"scene prior: {len(classes)} classes; labelled images "
          + ", ".join(f"{k} {len(v)}" for k, v in sets.items())
          + f"; excluded (unknown scene) {excluded}")
    with hub.recording() as resolved:   # scene_prior.pretrained as a Hub id: its commit goes in the report and run
        model = scene_prior_model(cfgs.scene_prior, cfgs.model, len(classes))
    params = {"seed": cfgs.seed, "recipe": cfgs.recipe, "scene_prior": to_dict(cfgs.scene_prior),
              "model": to_dict(cfgs.model)}
    tracking.ensure_experiment(paths.store)
    runtime = numerics_record(device)
    with tracking.stage_run(paths.store, "scene_prior", params, compared=cfgs.compared_params("scene_prior"),
                            runtime=runtime) as tracker:
        tracker.set_tags(tracking.hub_tags(resolved))
        start = time.perf_counter()
        built = build_scene_prior(model, sets, len(classes), cfgs.scene_prior, cfgs.model, cfgs.seed, device,
                                  num_workers=cfgs.train.num_workers)
        for row in built.history:
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        report = prior_report(built, classes, sets, excluded, cfgs.scene_prior.external or "train split scene labels",
                              cfgs.scene_prior.pretrained)
        if resolved:
            report["hub"] = hub.report(resolved)
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
