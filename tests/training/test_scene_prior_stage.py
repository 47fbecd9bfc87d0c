"""The scene_prior stage through its entry point: a model without VIR takes no prior, so the stage trains
nothing and reads no images, and writes placeholders that say so; with VIR it trains the prior as before."""

from __future__ import annotations

import json

import pytest
import yaml

from pir.config import model_config
from pir.files import load_torch
from pir.models import create_model
from pir.models.checkpoint import PRIOR_NOT_USED, load_scene_prior_weights
from pir.pipeline.scene_prior import NOT_USED
from tests.evaluation.test_stages import PROJECT, run_stage
from tests.prepared_fixture import make_prepared


def write_params(root, use_vir: bool, **scene_prior) -> None:
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["model"]["use_vir"] = use_vir
    params["scene_prior"].update(scene_prior)
    params["train"]["device"] = "cpu"
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def project(tmp_path):
    make_prepared(tmp_path / "data" / "fetch", images=40, image_size=32, classes=3, captions_per_image=2,
                  split=(0.6, 0.2, 0.2), vocab_size=120)
    return tmp_path


def test_without_vir_the_stage_writes_placeholders_and_reads_no_images(project):
    for name in ("pixels.npy", "dataset.json"):              # nothing may read the data
        (project / "data" / "fetch" / name).unlink()
    write_params(project, use_vir=False, pretrained="/nowhere/prior.pth", epochs=0)   # unused: not checked
    assert run_stage(project, "scene_prior") is None
    assert load_torch(project / "data/scene_prior/prior.pt") == {PRIOR_NOT_USED: NOT_USED}
    assert json.loads((project / "reports/scene_prior.json").read_text()) == {"used": False, "reason": NOT_USED}
    assert NOT_USED == "not used by this model (model.use_vir false)"
    assert (project / "reports/figures/scene_prior_confusion.png").read_bytes()[:4] == b"\x89PNG"
    # a model with a prior refuses the placeholder by name, in one line
    with pytest.raises(ValueError) as caught:
        load_scene_prior_weights(create_model(model_config("tiny")), project / "data/scene_prior/prior.pt")
    assert "a placeholder, no prior (not used by this model" in str(caught.value) and "\n" not in str(caught.value)


def test_with_vir_the_stage_trains_the_prior_as_before(project):
    write_params(project, use_vir=True, epochs=1, batch_size=4, patience=1)
    assert run_stage(project, "scene_prior") is None
    report = json.loads((project / "reports/scene_prior.json").read_text())
    assert report["epochs_run"] == 1 and "used" not in report and report["classes"] == 3
    prior = load_torch(project / "data/scene_prior/prior.pt")
    assert PRIOR_NOT_USED not in prior and len(prior["classes"]) == 3 and prior["epoch"] == 1
    load_scene_prior_weights(create_model(model_config("tiny")), project / "data/scene_prior/prior.pt")
