"""evaluate.checkpoint as a Hugging Face Hub id (pir.hub): the evaluate stage loads a `pir export --hub`
folder from a cache built from it (offline), embeds exactly as with the original best.pt, and records
{id: commit} in reports/metrics.json and the MLflow run; a miss is one line."""

from __future__ import annotations

import json

import numpy as np
import yaml
from mlflow import MlflowClient

from pir_tools.export import main as export
from tests.evaluation.test_stages import project, run_stage  # noqa: F401  (fixture)
from tests.hub_cache import add_folder, hub_cache  # noqa: F401  (fixture)


def set_checkpoint(root, value: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["checkpoint"] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def evaluated_embeddings(root) -> dict[str, np.ndarray]:
    with np.load(root / "data" / "evaluate" / "embeddings.npz") as saved:
        return {k: saved[k] for k in ("image_emb", "text_emb")}


def test_evaluate_checkpoint_by_hub_id_of_an_exported_folder(project, hub_cache, tmp_path):  # noqa: F811
    set_checkpoint(project, "")
    assert run_stage(project, "evaluate") is None
    reference = evaluated_embeddings(project)
    assert export([str(project / "data" / "train" / "best.pt"), "--hub", str(tmp_path / "hub")]) == 0
    spec = "hf-hub:someone/pir-tiny"
    commit = add_folder(hub_cache, "someone/pir-tiny", tmp_path / "hub")

    for checkpoint in (str(tmp_path / "hub"), spec):   # the folder itself, then its upload
        set_checkpoint(project, checkpoint)
        assert run_stage(project, "evaluate") is None, checkpoint
        ours = evaluated_embeddings(project)
        assert all(np.array_equal(ours[k], reference[k]) for k in reference), checkpoint

    record = json.loads((project / "reports" / "metrics.json").read_text())["checkpoint"]
    assert record == {"path": spec, "format": "pir", "epoch": 0, "model_key": "tiny-key", "hub": {spec: commit}}
    assert json.loads((project / "data" / "evaluate" / "evaluation.json").read_text())["checkpoint"] == record
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("pir").experiment_id],
                             filter_string="tags.pir_model_key = 'tiny-key'")[0]
    assert run.data.tags["hub.evaluate.checkpoint.id"] == spec
    assert run.data.tags["hub.evaluate.checkpoint.commit"] == commit


def test_an_id_missing_from_the_cache_is_one_line(project, hub_cache):  # noqa: F811
    set_checkpoint(project, "hf-hub:someone/absent/best.pt@v2")
    message = run_stage(project, "evaluate")
    assert message.startswith("evaluate: evaluate.checkpoint = hf-hub:someone/absent/best.pt@v2: not in the "
                              f"Hugging Face cache ({hub_cache})") and "\n" not in message
