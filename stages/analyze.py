"""analyze: t-SNE and cluster statistics of the common subspace (test split embeddings).

Reads data/evaluate/embeddings.npz (written by evaluate). Outputs:
reports/analysis.json, reports/tsne.csv, reports/figures/{tsne,class_similarity}.png,
data/analyze/tsne.npz. Logs into the MLflow run evaluate used.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np

import common
from pir import files, tracking
from pir.analysis.clusters import cluster_statistics
from pir.analysis.tsne import class_similarity_figure, joint_tsne, subsample, tsne_figure
from pir.config import to_dict



def load_embeddings() -> dict[str, np.ndarray]:
    try:
        with np.load(common.PATHS.embeddings) as saved:
            return {k: saved[k] for k in saved.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"{common.PATHS.embeddings}: embeddings not found (run the evaluate stage)") from None


def evaluated_model_key() -> str | None:
    """The evaluated model's key (evaluate wrote it), by which its MLflow run is found."""
    try:
        return json.loads(common.PATHS.evaluation.read_text()).get("model_key")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def tsne_csv(coords: np.ndarray, modality: list[str], scenes: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["x", "y", "modality", "scene"])
    writer.writerows((f"{x:.4f}", f"{y:.4f}", m, s) for (x, y), m, s in zip(coords, modality, scenes))
    return out.getvalue()


def analyze(cfgs: common.Configs) -> None:
    settings = cfgs.analyze
    saved = load_embeddings()
    image_emb, text_emb = saved["image_emb"], saved["text_emb"]
    image_labels, txt2img = saved["image_labels"].astype(np.int64), saved["txt2img"].astype(np.int64)
    class_names = [str(c) for c in saved["class_names"]]
    if len(image_emb) != len(image_labels) or len(text_emb) != len(txt2img):
        raise ValueError(f"{common.PATHS.embeddings}: embedding and label counts disagree")

    root, model_key = common.repo_root(), evaluated_model_key()
    run_id = tracking.find_run(root, model_key) if model_key else None
    with tracking.stage_run(root, "analyze", {"analyze": to_dict(settings)}, run_id=run_id,
                            model_key=model_key, run_name="analyze") as tracker:
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

        common.PATHS.analyze.mkdir(parents=True, exist_ok=True)
        files.save_npz(common.PATHS.tsne_points, coords=coords, labels=labels,
                    image_index=image_pick, text_index=text_pick, class_similarity=class_matrix)
        files.write_json(common.PATHS.analysis, json_safe(stats))
        files.write_text(common.PATHS.tsne_csv, tsne_csv(coords, modality, scenes))
        files.save_figure(tsne_figure(coords, modality, labels, class_names), common.PATHS.tsne_figure, dpi=100)
        files.save_figure(class_similarity_figure(class_matrix, class_names), common.PATHS.class_similarity, dpi=100)

        tracker.log_metrics(flat_numbers(stats, "analysis_"))
        for path in (common.PATHS.analysis, common.PATHS.tsne_figure, common.PATHS.class_similarity):
            tracker.log_artifact(path, "analyze")
    print(f"silhouette image={stats['silhouette']['image']:.3f} text={stats['silhouette']['text']:.3f} "
          f"joint={stats['silhouette']['joint']:.3f}  modality gap={stats['modality_gap']['centroid_distance']:.3f}")


def json_safe(value):
    """NaN (e.g. a silhouette with fewer than two classes) -> null: strict JSON for DVC and other readers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and not np.isfinite(value) else value


def flat_numbers(tree: dict, prefix: str = "") -> dict[str, float]:
    """Finite numbers of a nested dict as {"prefix_a_b": value} for MLflow; lists skipped."""
    flat: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flat_numbers(value, f"{prefix}{key}_"))
        elif isinstance(value, (int, float)) and np.isfinite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def main() -> None:
    common.run_stage("analyze", analyze)


if __name__ == "__main__":
    main()
