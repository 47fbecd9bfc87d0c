"""Stage ``evaluate``: test-split retrieval metrics, the similarity matrix they came from, a gallery.

Writes the metrics and per-class reports, the gallery figure, and the similarity matrix,
embeddings and evaluated-model record under the stage's data folder. Metrics and the figure go
to the evaluated model's MLflow run (a new run for official checkpoints).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pir import files, reports, seed_runs, tracking
from pir.config import to_dict
from pir.data import leakage
from pir.data.prepared import load_prepared
from pir.data.text import check_vocabulary, model_tokenizer
from pir.device import numerics_record, resolve_device
from pir.evaluation.embed import embed_split
from pir.evaluation.gallery import save_gallery
from pir.evaluation.metrics import METRIC_KEYS, caption_keys, per_class_table
from pir.evaluation.report import evaluation_report
from pir.models.checkpoint import load_evaluated_model
from pir.params import PipelineConfig
from pir.paths import Paths


def display_path(path: Path, root: Path) -> str:
    """Checkout-relative when inside it: reports must read the same in every clone."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def weights_digest(path: Path) -> str:
    """sha256 of a weights file, or of a weights folder's files (name and bytes, in name order:
    Hugging Face-style CLIP folders)."""
    if not path.is_dir():
        return files.sha256_file(path)
    import hashlib
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path)}\0{files.sha256_file(item)}\n".encode())
    return digest.hexdigest()


def mlflow_metrics(report: dict) -> dict[str, float]:
    """The report's own numbers, each protocol as ``test_<protocol>_<key>`` and the interval as
    ``test_ci95_<key>_low/high``; nested tables (per class, duplicates) stay in the files."""
    metrics = {f"test_{k}": float(v) for k, v in report.items() if reports.is_finite_number(v)}
    for protocol, values in report["protocols"].items():
        metrics.update({f"test_{protocol}_{k}": float(v) for k, v in values.items()})
    for key, (low, high) in report["ci95"].items():
        metrics.update({f"test_ci95_{key}_low": low, f"test_ci95_{key}_high": high})
    return metrics


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    settings = cfgs.evaluate
    checkpoint = paths.checkpoint(settings.checkpoint)
    device = resolve_device(settings.device)
    model, model_cfg, extra = load_evaluated_model(checkpoint, device, cfgs.model,
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
    model_key = extra.get("model_key") or f"sha256:{weights_digest(checkpoint)}"
    run_id = tracking.find_run(paths.store, model_key)
    # A foreign checkpoint has no train run to reopen: its new run gets the compared params.
    runtime = numerics_record(device)
    with tracking.stage_run(paths.store, "evaluate", params, run_id=run_id, model_key=model_key,
                            compared=cfgs.compared_params("evaluate", device_type=device.type),
                            runtime=runtime) as tracker:
        image_emb, text_emb = embed_split(model, prepared, test, tokenizer, model_cfg.image_size,
                                          model_cfg.max_tokens, settings.batch_size, device, settings.precision,
                                          max_words=model_cfg.max_words)
        image_emb, text_emb = image_emb.numpy(), text_emb.numpy()
        # The one matrix: saved as is, and every number below is computed from it.
        sims = (image_emb @ text_emb.T).astype(np.float32)
        class_names = list(prepared.classes)
        report = evaluation_report(sims, test.txt2img, test.labels, class_names, test.captions,
                                   seed=cfgs.seed, n_resamples=settings.bootstrap_resamples)
        report["checkpoint"] = {"path": display_path(checkpoint, paths.root), "format": checkpoint_format,
                                "epoch": extra.get("epoch"), "model_key": model_key}
        report["dataset"] = prepared.name
        report["leakage"] = leaked
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
