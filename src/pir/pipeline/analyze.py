"""Stage ``analyze``: t-SNE and cluster statistics of the common subspace (test split embeddings).

Reads the embeddings evaluate wrote; writes the analysis report, the t-SNE table and figures,
and the t-SNE points. Logs into the MLflow run evaluate used.
"""

from __future__ import annotations

import json

import numpy as np

from pir import files

from pir.pipeline import reports, tracking
from pir.analysis.clusters import cluster_statistics
from pir.analysis.tsne import class_similarity_figure, joint_tsne, subsample, tsne_figure, tsne_table
from pir.config import to_dict
from pir.device import numerics_record
from pir.pipeline.params import PipelineConfig
from pir.pipeline.paths import Paths


def load_embeddings(paths: Paths) -> dict[str, np.ndarray]:
    try:
        with np.load(paths.embeddings) as saved:
            return {k: saved[k] for k in saved.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"{paths.embeddings}: embeddings not found (run the evaluate stage)") from None


def evaluated_model_key(paths: Paths) -> str | None:
    """The evaluated model's key (evaluate wrote it), by which its MLflow run is found."""
    try:
        return json.loads(paths.evaluation.read_text()).get("model_key")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    settings = cfgs.analyze
    saved = load_embeddings(paths)
    image_emb, text_emb = saved["image_emb"], saved["text_emb"]
    image_labels, txt2img = saved["image_labels"].astype(np.int64), saved["txt2img"].astype(np.int64)
    class_names = [str(c) for c in saved["class_names"]]
    if len(image_emb) != len(image_labels) or len(text_emb) != len(txt2img):
        raise ValueError(f"{paths.embeddings}: embedding and label counts disagree")

    model_key = evaluated_model_key(paths)
    run_id = tracking.find_run(paths.store, model_key) if model_key else None
    runtime = numerics_record()
    with tracking.stage_run(paths.store, "analyze", {"analyze": to_dict(settings)}, run_id=run_id,
                            model_key=model_key, compared=cfgs.compared_params("analyze"), runtime=runtime) as tracker:
        stats, class_matrix = cluster_statistics(image_emb, image_labels, text_emb, txt2img, class_names,
                                                 settings.knn)
        # t-SNE on a seeded per-modality sample: O(n^2) memory and minutes beyond a few thousand points.
        image_pick = subsample(len(image_emb), settings.max_points, cfgs.seed)
        text_pick = subsample(len(text_emb), settings.max_points, cfgs.seed + 1)
        coords = joint_tsne(image_emb[image_pick], text_emb[text_pick], settings.perplexity, cfgs.seed)
        labels = np.concatenate([image_labels[image_pick], image_labels[txt2img[text_pick]]])
        modality = ["image"] * len(image_pick) + ["text"] * len(text_pick)
        scenes = [class_names[c] if c >= 0 else "unknown" for c in labels]
        stats["tsne"] = {"images": int(len(image_pick)), "texts": int(len(text_pick)),
                         "perplexity": float(min(settings.perplexity, (len(labels) - 1) / 3))}
        stats["runtime"] = runtime

        paths.analyze.mkdir(parents=True, exist_ok=True)
        files.save_npz(paths.tsne_points, coords=coords, labels=labels,
                       image_index=image_pick, text_index=text_pick, class_similarity=class_matrix)
        files.write_json(paths.analysis, reports.json_safe(stats))
        files.write_text(paths.tsne_csv, reports.csv_text(*tsne_table(coords, modality, scenes)))
        files.save_figure(tsne_figure(coords, modality, labels, class_names), paths.tsne_figure, dpi=100)
        files.save_figure(class_similarity_figure(class_matrix, class_names), paths.class_similarity, dpi=100)

        tracker.log_metrics(reports.finite_numbers(stats, "analysis_"))
        for path in (paths.analysis, paths.tsne_figure, paths.class_similarity):
            tracker.log_artifact(path, "analyze")
    print(f"silhouette image={stats['silhouette']['image']:.3f} text={stats['silhouette']['text']:.3f} "
          f"joint={stats['silhouette']['joint']:.3f}  modality gap={stats['modality_gap']['centroid_distance']:.3f}")
