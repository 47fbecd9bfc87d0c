"""Stage ``evaluate``: test-split retrieval metrics, the similarity matrix they came from, a gallery.

Writes the metrics and per-class reports, the gallery figure, and the similarity matrix,
embeddings and evaluated-model record under the stage's data folder. Metrics and the figure go
to the evaluated model's MLflow run (a new run for official checkpoints). For the train stage's
own best.pt the report also holds ``as_published`` and ``last_epoch`` (pir.evaluation.published).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from pir import files, hub

from pir.pipeline import reports, seed_runs, tracking
from pir.config import EvalConfig, ModelConfig, to_dict
from pir.data import leakage
from pir.data.prepared import PreparedDataset, SplitView, load_prepared
from pir.data.text import caption_keys, check_vocabulary, model_tokenizer
from pir.device import numerics_record, resolve_device
from pir.evaluation import published
from pir.evaluation.embed import embed_split
from pir.evaluation.gallery import save_gallery
from pir.evaluation.metrics import METRIC_KEYS, per_class_table
from pir.evaluation.protocols import itm_metrics
from pir.evaluation.report import evaluation_report
from pir.evaluation.zeroshot import caption_encoder, split_zeroshot
from pir.models.checkpoint import load_evaluated_model, load_model
from pir.pipeline.params import PipelineConfig
from pir.pipeline.paths import Paths


def display_path(path: Path | str, root: Path) -> str:
    """Checkout-relative when inside it: reports must read the same in every clone. A Hub id as it is."""
    if hub.is_hub_id(path):
        return str(path)
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def mlflow_metrics(report: dict) -> dict[str, float]:
    """The report's own numbers, each protocol as ``test_<protocol>_<key>`` and the interval as
    ``test_ci95_<key>_low/high``; nested tables (per class, duplicates) stay in the files."""
    metrics = {f"test_{k}": float(v) for k, v in report.items() if reports.is_finite_number(v)}
    for protocol, values in report["protocols"].items():
        metrics.update({f"test_{protocol}_{k}": float(v) for k, v in values.items()})
    for key, (low, high) in report["ci95"].items():
        metrics.update({f"test_ci95_{key}_low": low, f"test_ci95_{key}_high": high})
    if report.get("zeroshot"):
        metrics.update({f"test_zeroshot_{k}": float(report["zeroshot"][k]) for k in ("top1", "top5")})
    metrics.update(published_metrics(report["as_published"], report["last_epoch"]))
    return metrics


def published_metrics(as_published_entry: Mapping[str, Any], last_epoch_entry: Mapping[str, Any]) -> dict[str, float]:
    """The ``as_published`` and ``last_epoch`` entries (pir.evaluation.published) as MLflow metrics:
    ``test_as_published_<key>``, ``as_published_epoch``, ``test_last_epoch_<key>`` and ``last_epoch``;
    nothing for an entry without numbers. Never ``test_<key>``: that name is the headline's."""
    metrics: dict[str, float] = {}
    for name, entry, epoch_name in (("as_published", as_published_entry, "as_published_epoch"),
                                    ("last_epoch", last_epoch_entry, "last_epoch")):
        if entry["epoch"] is None:
            continue
        metrics[epoch_name] = float(entry["epoch"])
        metrics.update({f"test_{name}_{k}": float(entry[k]) for k in METRIC_KEYS})
    return metrics


def last_epoch_entry(paths: Paths, best_extra: dict, headline: dict, device: torch.device,
                     score: Callable[[torch.nn.Module, ModelConfig], dict[str, float]]) -> dict:
    """``last_epoch``: the last.pt of best.pt's train run, scored by ``score`` (evaluate's own embedding
    and metrics); the headline's numbers when it is the same epoch, hence the same weights."""
    shown = display_path(paths.last, paths.root)
    if not paths.last.is_file():
        return published.last_epoch(None, None, None, f"not available: {shown} not found")
    contents = files.load_torch(paths.last)
    if not isinstance(contents, dict) or contents.get("model_key") != best_extra["model_key"]:
        return published.last_epoch(None, None, None, f"not available: {shown} is not from best.pt's train run")
    epoch = int(contents["epoch"])
    if epoch == best_extra.get("epoch"):
        return published.last_epoch(epoch, shown, headline)
    model, model_cfg, _ = load_model(paths.last, device, checkpoint=contents)
    return published.last_epoch(epoch, shown, score(model, model_cfg))


def comparison_entries(paths: Paths, checkpoint: Path, extra: dict, report: dict, full_test: SplitView,
                       device: torch.device, score: Callable[[torch.nn.Module, ModelConfig], dict[str, float]]
                       ) -> dict:
    """``as_published`` and ``last_epoch`` (docs/evaluation.md, "Comparing with published numbers"). Only the
    train stage's own best.pt has per-epoch test scores (reports/train_curves.csv) and a last.pt beside it."""
    if checkpoint.resolve() != paths.best.resolve() or "model_key" not in extra:
        return {"as_published": published.not_published(published.FOREIGN_CHECKPOINT),
                "last_epoch": published.last_epoch(None, None, None, published.FOREIGN_CHECKPOINT)}
    as_published = (published.not_published(published.NOT_TRACKED_ZERO_SHOT) if extra.get("epoch") == 0 else
                    published.as_published(published.read_curves(paths.train_curves), full_test.n_images,
                                           full_test.n_texts))
    headline = {k: report[k] for k in METRIC_KEYS}
    return {"as_published": as_published, "last_epoch": last_epoch_entry(paths, extra, headline, device, score)}


def embed_test(prepared: PreparedDataset, test: SplitView, tokenizer, settings: EvalConfig, device: torch.device,
               model: torch.nn.Module, model_cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """float32 (image, text) embeddings of the test split: the one way evaluate embeds a model."""
    image_emb, text_emb = embed_split(model, prepared, test, tokenizer, model_cfg.image_size, model_cfg.max_tokens,
                                      settings.batch_size, device, settings.precision, max_words=model_cfg.max_words)
    return image_emb.numpy(), text_emb.numpy()


def similarity(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """float32 [n_images, n_texts] scores: the one matrix, saved as is, that every number comes from."""
    return (image_emb @ text_emb.T).astype(np.float32)


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    settings = cfgs.evaluate
    checkpoint = paths.checkpoint(settings.checkpoint)
    device = resolve_device(settings.device)
    with hub.recording() as resolved:   # a Hub id's commit goes in the report and the run (pir.hub)
        local = hub.local_path(checkpoint, "evaluate.checkpoint")
        model, model_cfg, extra = load_evaluated_model(local, device, cfgs.model,
                                                       allow_torchscript=cfgs.model.allow_torchscript)
    checkpoint_format = "official" if "official_config" in extra else extra.get("format", "pir")
    prepared = load_prepared(paths.fetch)
    test = prepared.split("test")
    leaked = {"exclude_leaked": False, "excluded_test_images": 0}
    if cfgs.data.exclude_leaked:   # test images with a near-duplicate in train or val (the audit stage)
        test, leaked = leakage.without_leaked(prepared.records, test, leakage.read_audit(paths.audit))
        print(f"evaluate: excluded {leaked['excluded_test_images']} leaked test images ({paths.audit})")
    if test.n_images == 0 or test.n_texts == 0:
        raise ValueError(f"{paths.dataset_json}: the test split has no images or no captions")
    tokenizer = model_tokenizer(model_cfg, paths.tokenizer)
    check_vocabulary(tokenizer, model_cfg.vocab_size, checkpoint)

    params = {"evaluate": {**to_dict(settings), "checkpoint_path": str(checkpoint), "dataset": prepared.name,
                           "exclude_leaked": cfgs.data.exclude_leaked}}
    # Our checkpoints name their training run's key; any other file is identified by its bytes.
    model_key = extra.get("model_key") or f"sha256:{files.sha256_path(local)}"
    run_id = tracking.find_run(paths.store, model_key)
    # A foreign checkpoint has no train run to reopen: its new run gets the compared params.
    runtime = numerics_record(device)
    with tracking.stage_run(paths.store, "evaluate", params, run_id=run_id, model_key=model_key,
                            compared=cfgs.compared_params("evaluate", device_type=device.type),
                            runtime=runtime) as tracker:
        embed = functools.partial(embed_test, prepared, test, tokenizer, settings, device)
        image_emb, text_emb = embed(model, model_cfg)
        # The one matrix: saved as is, and every number below is computed from it.
        sims = similarity(image_emb, text_emb)
        class_names = list(prepared.classes)
        report = evaluation_report(sims, test.txt2img, test.labels, class_names, test.captions,
                                   seed=cfgs.seed, n_resamples=settings.bootstrap_resamples)
        report["checkpoint"] = {"path": display_path(checkpoint, paths.root), "format": checkpoint_format,
                                "epoch": extra.get("epoch"), "model_key": model_key,
                                **({"hub": hub.report(resolved)} if resolved else {})}
        tracker.set_tags(tracking.hub_tags(resolved))
        report["dataset"] = prepared.name
        report["leakage"] = leaked
        # the last epoch is scored exactly as the headline: same embedding, same test images, same metrics
        report.update(comparison_entries(paths, local, extra, report, prepared.split("test"), device,
                                         lambda last, last_cfg: itm_metrics(similarity(*embed(last, last_cfg)),
                                                                            test.txt2img)))
        # zero-shot scene classification of the test images just embedded, among the dataset's classes
        # (docs/evaluation.md, "Zero-shot scene classification"); None without two classes and a labelled image
        report["zeroshot"] = split_zeroshot(image_emb, test.labels, class_names,
                                            caption_encoder(model, tokenizer, model_cfg.max_tokens,
                                                            model_cfg.max_words, device, settings.precision),
                                            prepared.name)
        report["runtime"] = runtime
        per_class = report.pop("per_class")

        paths.evaluate.mkdir(parents=True, exist_ok=True)
        # captions: the normalised strings the dedup protocol compares, in txt2img order.
        files.save_npz(paths.similarity, sims=sims, txt2img=test.txt2img,
                       captions=np.array(caption_keys(test.captions)[0], dtype=str))
        files.save_npz(paths.embeddings, image_emb=image_emb, text_emb=text_emb, image_labels=test.labels,
                       txt2img=test.txt2img, class_names=np.array(class_names, dtype=str))
        files.write_json(paths.evaluation, {"checkpoint": report["checkpoint"], "dataset": prepared.name,
                                            "model_key": model_key})
        files.write_json(paths.metrics, report)
        files.write_text(paths.per_class, reports.csv_text(*per_class_table(per_class)))
        scenes = [prepared.classes[label] if label >= 0 else "unknown" for label in test.labels]
        save_gallery(paths.gallery, sims, test.txt2img, prepared.pixels[test.image_rows], test.captions,
                     settings.gallery_queries, cfgs.seed, scenes=scenes)

        tracker.log_metrics(mlflow_metrics(report))
        for path in (paths.metrics, paths.per_class, paths.gallery):
            tracker.log_artifact(path, "evaluate")
    # After the run is closed: a second seed of this configuration now gets (or updates) its parent run.
    seed_runs.group_runs_of(paths.store, tracker.run_id)
    print(" ".join(f"{k}={report[k]:.2f}" for k in METRIC_KEYS)
          + " (95% CI {:.2f}-{:.2f})".format(*report["ci95"]["r_mean"]))
    for protocol in ("dedup", "pairwise"):
        print(f"  {protocol}: r_mean={report['protocols'][protocol]['r_mean']:.2f}")
    if report["zeroshot"]:
        zeroshot = report["zeroshot"]
        print(f"  zero-shot scenes: top1={zeroshot['top1']:.2f} top{zeroshot['top5_k']}={zeroshot['top5']:.2f} "
              f"({zeroshot['images']} images, {len(zeroshot['classes'])} classes)")
    for name in ("as_published", "last_epoch"):
        entry = report[name]
        print(f"  {name}: " + (entry["note"] if entry["epoch"] is None else
                               f"r_mean={entry['r_mean']:.2f} (epoch {entry['epoch']})"))
