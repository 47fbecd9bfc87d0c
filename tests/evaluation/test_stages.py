"""The evaluate and analyze stages, run through the stage scripts' entry point, on a tiny hand-built project.

The project holds the real params.yaml, a small prepared dataset,
a trained-vocabulary tokenizer and a tiny (untrained) PIR checkpoint: the upstream
stages are not run here (the e2e tests do that), so this stays a few seconds.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml

from pir.data.prepared import ImageRecord, write_prepared
from pir.data.text import caption_keys, load_tokenizer, train_wordpiece
from pir.evaluation import retrieval_metrics
from pir.evaluation.metrics import METRIC_KEYS as STANDARD
from pir.evaluation.protocols import dedup_metrics, pairwise_metrics
from pir.models import create_model
from pir.models.checkpoint import save_checkpoint
from pir.models.official import export_official_config, export_official_state_dict
from pir.config import model_config
from pir.pipeline.entry import main
from pir.pipeline.tracking import stage_run

PROJECT = Path(__file__).resolve().parents[2]
CLASSES = ["airport", "beach", "forest"]


def make_dataset(fetch_dir: Path) -> None:
    rng = np.random.default_rng(0)
    records, pixels = [], []
    for i in range(18):
        label = i % 3
        scene = CLASSES[label] if i != 17 else "unknown"
        captions = tuple(f"a {CLASSES[label]} with {w} things number {i % 4}" for w in ("many", "few", "some"))
        captions += ("a view from above",)  # identical across images: the duplicate-aware metric's case
        records.append(ImageRecord(f"{scene}_{i}.jpg", "train" if i < 6 else "test", scene,
                                   label if i != 17 else -1, captions))
        pixels.append(np.full((32, 32, 3), 60 * label, np.uint8) + rng.integers(0, 40, (32, 32, 3), dtype=np.uint8))
    write_prepared(fetch_dir, "synthetic", CLASSES, records, np.stack(pixels))
    train_wordpiece([c for r in records for c in r.captions], 120, fetch_dir / "tokenizer")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["evaluate"].update(batch_size=8, gallery_queries=2, device="cpu")
    params["analyze"].update(max_points=10, perplexity=5.0, knn=3)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    make_dataset(root / "data" / "fetch")
    vocab = len(load_tokenizer(root / "data" / "fetch" / "tokenizer"))
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab_size=vocab, image_size=32, filter_size=2)
    with stage_run(root, "train", {"train": {"epochs": 0}}, model_key="tiny-key", system_metrics=False):
        pass
    save_checkpoint(root / "data" / "train" / "best.pt", create_model(cfg), cfg, epoch=0, model_key="tiny-key")
    return root


def run_stage(root: Path, name: str) -> str | None:
    """Run stage ``name`` on the tiny project through the entry point the stage scripts call.

    Returns None on success, else the stage's one-line exit message.
    """
    with mock.patch.dict(os.environ):
        os.environ.pop("DVC_ROOT", None)     # the project is its own repository
        try:
            main(importlib.import_module(f"pir.pipeline.{name}"), root)
            return None
        except SystemExit as exc:
            return str(exc.code)


@pytest.fixture(scope="module")
def evaluated(project) -> Path:
    assert run_stage(project, "evaluate") is None
    return project


def test_metrics_json_equals_metrics_recomputed_from_the_saved_matrix(evaluated):
    saved = np.load(evaluated / "data/evaluate/similarity.npz")
    assert saved["sims"].dtype == np.float32 and saved["sims"].shape == (12, 48)
    stored = json.loads((evaluated / "reports/metrics.json").read_text())
    recomputed = retrieval_metrics(saved["sims"], saved["txt2img"])
    assert {k: stored[k] for k in recomputed} == recomputed  # exact: JSON round-trips floats
    assert stored["n_images"] == 12 and stored["n_texts"] == 48
    assert stored["duplicates"]["captions_shared_across_images"] == 12
    assert stored["protocols"]["itm"] == {k: stored[k] for k in STANDARD}
    assert stored["protocols"]["dedup"] == dedup_metrics(saved["sims"], saved["txt2img"],
                                                         caption_keys(saved["captions"].tolist())[1])
    assert stored["protocols"]["pairwise"] == pairwise_metrics(saved["sims"], saved["txt2img"])
    low, high = stored["ci95"]["r_mean"]
    assert low <= stored["r_mean"] <= high
    assert stored["checkpoint"]["format"] == "pir"


def test_evaluate_writes_embeddings_gallery_and_per_class_table(evaluated):
    embeddings = np.load(evaluated / "data/evaluate/embeddings.npz")
    saved = np.load(evaluated / "data/evaluate/similarity.npz")
    np.testing.assert_allclose(embeddings["image_emb"] @ embeddings["text_emb"].T, saved["sims"], atol=1e-6)
    assert embeddings["class_names"].tolist() == CLASSES
    assert (evaluated / "reports/figures/gallery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (evaluated / "reports/per_class.csv").read_text().splitlines()
    assert rows[0].startswith("scene,n_images,n_texts,txt_r1") and len(rows) == 1 + 3


def test_evaluate_logs_into_the_trained_models_run(evaluated):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{evaluated / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pir").experiment_id])
    assert len(runs) == 1
    assert "test_r_mean" in runs[0].data.metrics and runs[0].data.tags["dvc_stage"] == "train"
    logged = runs[0].data.metrics
    assert {f"test_{p}_r_mean" for p in ("itm", "dedup", "pairwise")} <= set(logged)
    assert logged["test_ci95_r_mean_low"] <= logged["test_r_mean"] <= logged["test_ci95_r_mean_high"]
    assert runs[0].data.tags["dvc_stages"] == "train,evaluate"
    # the reopened run keeps train's name, and evaluate adds no compared params to a train row
    assert runs[0].info.run_name == f"{runs[0].data.tags['dvc_exp_name']} · train"
    assert "precision" not in runs[0].data.params and "dataset" not in runs[0].data.params


def test_evaluate_reports_zero_shot_scene_accuracy_from_its_own_embeddings(evaluated):
    """metrics.json["zeroshot"]: the saved test image embeddings (unknown scene left out) classified among
    the dataset's classes with the model's text tower, recomputed here to the bit; logged to MLflow."""
    from mlflow import MlflowClient

    from pir.data.text import model_tokenizer
    from pir.evaluation.zeroshot import caption_encoder, split_zeroshot
    from pir.models.checkpoint import load_model

    stored = json.loads((evaluated / "reports/metrics.json").read_text())["zeroshot"]
    assert stored["images"] == 11 and stored["classes"] == CLASSES and stored["top5_k"] == 3
    assert 0 <= stored["top1"] <= stored["top5"] == 100.0 and len(stored["templates"]) == 5
    saved = np.load(evaluated / "data/evaluate/embeddings.npz")
    model, cfg, _ = load_model(evaluated / "data/train/best.pt")
    encode = caption_encoder(model, model_tokenizer(cfg, evaluated / "data/fetch/tokenizer"), cfg.max_tokens,
                             cfg.max_words, "cpu")
    assert split_zeroshot(saved["image_emb"], saved["image_labels"], saved["class_names"].tolist(), encode,
                          "synthetic") == stored
    client = MlflowClient(tracking_uri=f"sqlite:///{evaluated / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("pir").experiment_id])[0]
    assert run.data.metrics["test_zeroshot_top1"] == stored["top1"]
    assert run.data.metrics["test_zeroshot_top5"] == stored["top5"]


def test_analyze_reports_statistics_and_figures(evaluated):
    assert run_stage(evaluated, "analyze") is None
    analysis = json.loads((evaluated / "reports/analysis.json").read_text())
    assert analysis["unknown_scene_images"] == 1 and analysis["unknown_scene_texts"] == 4
    assert set(analysis["knn_purity"]) == {"k", "image", "text", "image_to_text", "text_to_image"}
    rows = (evaluated / "reports/tsne.csv").read_text().splitlines()
    assert rows[0] == "x,y,modality,scene" and len(rows) == 1 + 10 + 10
    for figure in ("tsne.png", "class_similarity.png"):
        assert (evaluated / "reports/figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_index_stage_embeds_the_test_split_as_evaluate_does(evaluated):
    from pir.data.prepared import load_prepared
    from pir.search.index import load_index

    # runs before the tests below point evaluate.checkpoint elsewhere: it compares with best.pt's embeddings
    assert yaml.safe_load((evaluated / "params.yaml").read_text())["evaluate"]["checkpoint"] == ""
    assert run_stage(evaluated, "index") is None
    index = load_index(evaluated / "data/index")
    prepared = load_prepared(evaluated / "data/fetch")
    test = [prepared.records[row] for row in prepared.split("test").image_rows]
    names = [f"{Path(r.file).stem}.png" for r in test]
    assert sorted(e.path for e in index.entries) == sorted(names)
    scenes = {e.path: e.scene for e in index.entries}
    assert [scenes[n] for n in names] == [r.scene if r.scene != "unknown" else "" for r in test]
    # the same pixels through the same transform and model: evaluate's image embeddings, to float16
    rows = {e.path: i for i, e in enumerate(index.entries)}
    vectors = np.asarray(index.vectors, np.float32)[[rows[n] for n in names]]
    np.testing.assert_allclose(vectors, np.load(evaluated / "data/evaluate/embeddings.npz")["image_emb"], atol=2e-3)
    assert index.identity["checkpoint"] == "../train/best.pt" and index.identity["root"] == "source"
    # a rerun writes the same bytes (DVC deletes the output first): no time stamp, fixed file times
    first = folder_digests(evaluated / "data/index")
    shutil.rmtree(evaluated / "data/index")
    assert run_stage(evaluated, "index") is None
    assert folder_digests(evaluated / "data/index") == first and index.identity["created"] is None


def folder_digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_evaluate_accepts_an_official_checkpoint(evaluated, tmp_path):
    # The official format: {"model": their key layout, "config": their config dict}.
    from pir.models.checkpoint import load_model

    model, cfg, _ = load_model(evaluated / "data/train/best.pt")
    official = tmp_path / "checkpoint_best.pth"
    torch.save({"model": export_official_state_dict(model), "config": export_official_config(cfg)}, official)
    params = yaml.safe_load((evaluated / "params.yaml").read_text())
    params["evaluate"]["checkpoint"] = str(official)
    (evaluated / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(evaluated, "evaluate") is None
    stored = json.loads((evaluated / "reports/metrics.json").read_text())
    assert stored["checkpoint"]["format"] == "official" and set(STANDARD) <= set(stored)
    # no train run to reopen: a run of its own, named for the stage, with the compared params
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{evaluated / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("pir").experiment_id],
                             filter_string="tags.dvc_stage = 'evaluate'")[0]
    assert run.info.run_name.endswith(" · evaluate") and run.data.params["precision"] == "fp32"


def test_audit_finds_a_copied_test_image_and_evaluate_can_exclude_it(evaluated, tmp_path):
    import shutil

    project = tmp_path / "project"
    shutil.copytree(evaluated, project, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    fetch = project / "data" / "fetch"
    pixels = np.load(fetch / "pixels.npy")
    pixels[7] = pixels[1]                          # test image 7 (beach_7.jpg) is a copy of train image 1
    np.save(fetch / "pixels.npy", pixels)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["checkpoint"] = ""
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(project, "audit") is None
    audit = json.loads((project / "reports/audit.json").read_text())
    assert [(p["a"], p["b"], p["distance"]) for p in audit["near_duplicate_pairs"]] == [("beach_1.jpg", "beach_7.jpg", 0)]
    assert (project / "reports/figures/audit_pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    params["data"]["exclude_leaked"] = True
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(project, "evaluate") is None
    stored = json.loads((project / "reports/metrics.json").read_text())
    assert stored["leakage"]["excluded_test_images"] == 1 and stored["leakage"]["excluded_files"] == ["beach_7.jpg"]
    assert stored["n_images"] == 11 and stored["n_texts"] == 44


def test_missing_checkpoint_is_a_one_line_error(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["checkpoint"] = "no/such/checkpoint.pt"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    message = run_stage(project, "evaluate")
    assert message.startswith("evaluate:") and "no/such/checkpoint.pt" in message and "\n" not in message

