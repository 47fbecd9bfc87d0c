"""evaluate: test-split retrieval metrics, the similarity matrix they came from, a gallery.

Outputs: reports/metrics.json, reports/per_class.csv, reports/figures/gallery.png,
data/evaluate/{similarity.npz, embeddings.npz, evaluation.json}. Metrics and the
figure go to the evaluated model's MLflow run (a new run for official checkpoints).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

import common
from pir import files, tracking
from pir.config import to_dict
from pir.data.prepared import load_prepared
from pir.data.text import load_tokenizer
from pir.device import resolve_device
from pir.evaluation.embed import embed_split
from pir.evaluation.gallery import save_gallery
from pir.evaluation.metrics import METRIC_KEYS, RECALL_KS, evaluation_report
from pir.models.checkpoint import load_model



def checkpoint_path(setting: str) -> Path:
    """"" = the train stage's best checkpoint; relative paths are relative to the repository."""
    if not setting:
        return common.PATHS.best
    path = Path(setting).expanduser()
    return path if path.is_absolute() else common.ROOT / path


def display_path(path: Path) -> str:
    """Repo-relative when inside the repo: reports must read the same in every clone."""
    try:
        return str(path.resolve().relative_to(common.ROOT))
    except ValueError:
        return str(path)


def check_vocabulary(tokenizer, vocab_size: int, where: Path) -> None:
    if len(tokenizer) > vocab_size:
        raise ValueError(f"{where}: model vocabulary has {vocab_size} ids but the tokenizer has {len(tokenizer)}; "
                         "set data.tokenizer to the tokenizer the model was trained with")


def per_class_csv(per_class: dict[str, dict[str, float]]) -> str:
    """One row per scene class, with its six recalls and their mean, for `dvc plots`."""
    columns = ["scene", "n_images", "n_texts"] + [f"{d}_r{k}" for d in ("txt", "img") for k in RECALL_KS] + ["r_mean"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for scene, row in per_class.items():
        recalls = [row[c] for c in columns[3:-1]]
        writer.writerow([scene, row["n_images"], row["n_texts"], *recalls, sum(recalls) / len(recalls)])
    return out.getvalue()


def scalar_metrics(report: dict) -> dict[str, float]:
    return {k: v for k, v in report.items() if isinstance(v, (int, float)) and np.isfinite(v)}


def evaluate(cfgs: common.Configs) -> None:
    settings = cfgs.evaluate
    checkpoint = checkpoint_path(settings.checkpoint)
    device = resolve_device(settings.device)
    model, model_cfg, extra = load_model(checkpoint, device)
    official = "official_config" in extra
    prepared = load_prepared(common.PATHS.fetch)
    test = prepared.split("test")
    if test.n_images == 0 or test.n_texts == 0:
        raise ValueError(f"{common.PATHS.dataset_json}: the test split has no images or no captions")
    tokenizer = load_tokenizer(common.PATHS.tokenizer)
    check_vocabulary(tokenizer, model_cfg.vocab_size, checkpoint)

    params = {"evaluate": {**to_dict(settings), "checkpoint_path": str(checkpoint), "dataset": prepared.name}}
    # Our checkpoints name their training run's key; any other file is identified by its bytes.
    model_key = extra.get("model_key") or f"sha256:{files.sha256_file(checkpoint)}"
    root = common.repo_root()
    run_id = tracking.find_run(root, model_key)
    with tracking.stage_run(root, "evaluate", params, run_id=run_id, model_key=model_key,
                            run_name=None if run_id else "evaluate") as tracker:
        image_emb, text_emb = embed_split(model, prepared, test, tokenizer, model_cfg.image_size,
                                          model_cfg.max_tokens, settings.batch_size, device, settings.precision,
                                          max_words=model_cfg.max_words)
        image_emb, text_emb = image_emb.numpy(), text_emb.numpy()
        # The one matrix: saved as is, and every number below is computed from it.
        sims = (image_emb @ text_emb.T).astype(np.float32)
        class_names = list(prepared.classes)
        report = evaluation_report(sims, test.txt2img, test.labels, class_names, test.captions)
        report["checkpoint"] = {"path": display_path(checkpoint), "format": "official" if official else "pir",
                                "epoch": extra.get("epoch"), "model_key": model_key}
        report["dataset"] = prepared.name
        per_class = report.pop("per_class")

        common.PATHS.evaluate.mkdir(parents=True, exist_ok=True)
        files.save_npz(common.PATHS.similarity, sims=sims, txt2img=test.txt2img)
        files.save_npz(common.PATHS.embeddings, image_emb=image_emb, text_emb=text_emb,
                    image_labels=test.labels, txt2img=test.txt2img, class_names=np.array(class_names, dtype=str))
        files.write_json(common.PATHS.evaluation, {"checkpoint": report["checkpoint"],
                                                           "dataset": prepared.name, "model_key": model_key})
        files.write_json(common.PATHS.metrics, report)
        files.write_text(common.PATHS.per_class, per_class_csv(per_class))
        scenes = [prepared.classes[label] if label >= 0 else "unknown" for label in test.labels]
        save_gallery(common.PATHS.gallery, sims, test.txt2img, prepared.pixels[test.image_rows], test.captions,
                     settings.gallery_queries, cfgs.seed, scenes=scenes)

        tracker.log_metrics({f"test_{k}": v for k, v in scalar_metrics(report).items()})
        for path in (common.PATHS.metrics, common.PATHS.per_class, common.PATHS.gallery):
            tracker.log_artifact(path, "evaluate")
    print(" ".join(f"{k}={report[k]:.2f}" for k in
                   METRIC_KEYS))


def main() -> None:
    common.run_stage("evaluate", evaluate)


if __name__ == "__main__":
    main()
