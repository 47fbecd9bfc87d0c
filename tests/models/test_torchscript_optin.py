"""TorchScript archives (OpenAI's CLIP layout) run code as they load: refused, before torch.jit.load is
reached, unless the caller opts in (``model.allow_torchscript``, ``allow_torchscript=True``,
``--allow-torchscript``); the permission never travels in checkpoints or run keys."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from pir.config import model_config, to_dict
from pir.files import is_torchscript
from pir.models import create_model
from pir.models.checkpoint import load_evaluated_model, load_model, save_checkpoint
from pir.models.clip import ClipPIR, load_clip_checkpoint, read_clip_state
from pir.pipeline.params import PipelineConfig
from tests.evaluation.test_stages import run_stage
from tests.models.test_clip import ARCH, clip_project, reference, write_layout  # noqa: F401 (fixtures)

OPT_IN = "model.allow_torchscript: true"


@pytest.fixture(scope="module")
def archive(reference, tmp_path_factory):   # noqa: F811
    return write_layout("openai", reference, tmp_path_factory.mktemp("openai"))


@pytest.fixture
def jit_calls(monkeypatch):
    """Every torch.jit.load call (then the real one): a refusal must come before the first."""
    calls, real = [], torch.jit.load

    def recording(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("f"))
        return real(*args, **kwargs)
    monkeypatch.setattr(torch.jit, "load", recording)
    return calls


def assert_refused(caught, path) -> None:
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)) and OPT_IN in message
    assert "runs code from the file" in message


def test_archives_are_recognised_from_the_zip_directory(archive, tmp_path):
    assert is_torchscript(archive)
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")            # a torch.save zip is not one
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    assert not is_torchscript(tmp_path / "plain.pt") and not is_torchscript(tmp_path / "junk.pt")


def test_every_loader_refuses_an_archive_without_the_opt_in(archive, jit_calls):
    clip_cfg = model_config("clip-tiny", use_vir=False, use_lca=False, use_affiliation=False)
    for load in (lambda: read_clip_state(archive),
                 lambda: load_clip_checkpoint(archive, ARCH),
                 lambda: load_clip_checkpoint(archive, ARCH, cfg=dataclasses.replace(clip_cfg, allow_torchscript=True)),
                 lambda: ClipPIR(dataclasses.replace(clip_cfg, clip_weights=str(archive))),
                 lambda: load_evaluated_model(archive, "cpu", dataclasses.replace(clip_cfg, allow_torchscript=True))):
        with pytest.raises(ValueError) as caught:   # the explicit argument decides, not a cfg passed along
            load()
        assert_refused(caught, archive)
    with pytest.raises(ValueError, match="a TorchScript archive .*not a PIR checkpoint") as caught:
        load_model(archive)                         # search/index: PIR checkpoints only, weights_only
    assert "\n" not in str(caught.value)
    assert jit_calls == []


def test_the_opt_in_loads_it(archive, reference, jit_calls):
    state, layout = read_clip_state(archive, allow_torchscript=True)
    assert "torchscript" in layout and set(state) >= set(reference.state_dict()) - {"attn_mask"}
    clip_cfg = model_config("clip-tiny", use_vir=False, use_lca=False, use_affiliation=False)
    model, cfg, extra = load_evaluated_model(archive, "cpu", clip_cfg, allow_torchscript=True)
    assert extra == {"format": "clip"} and isinstance(model, ClipPIR)
    built = create_model(dataclasses.replace(clip_cfg, clip_weights=str(archive), allow_torchscript=True))
    torch.testing.assert_close(built.clip.visual.proj, reference.visual.proj)
    assert jit_calls == [str(archive)] * 3


def test_the_permission_is_not_architecture(tmp_path):
    cfg = model_config("clip-tiny", use_vir=False, use_lca=False, allow_torchscript=True)
    plain = dataclasses.replace(cfg, allow_torchscript=False)
    # checkpoints, run keys and MLflow params hash as before the field existed
    assert to_dict(cfg) == to_dict(plain) and "allow_torchscript" not in to_dict(cfg)
    assert to_dict(cfg, permissions=True)["allow_torchscript"] is True
    save_checkpoint(tmp_path / "best.pt", create_model(plain), cfg)
    stored = torch.load(tmp_path / "best.pt", weights_only=True)
    assert "allow_torchscript" not in stored["model_config"]
    _, loaded, _ = load_model(tmp_path / "best.pt")         # an older checkpoint's config has no such key
    assert loaded == dataclasses.replace(plain, clip_activation="gelu")   # "auto" is stored resolved
    stored["model_config"]["allow_torchscript"] = True      # and a file never grants itself the permission
    torch.save(stored, tmp_path / "crafted.pt")
    assert load_model(tmp_path / "crafted.pt")[1].allow_torchscript is False


def test_params_route(archive, jit_calls):
    params = {"recipe": "clip", "model": {"preset": "clip-tiny", "clip_weights": str(archive)}}
    refused = PipelineConfig.from_params(params)
    assert not refused.model.allow_torchscript and refused.problems() == []
    with pytest.raises(ValueError) as caught:               # the train stage builds its model like this
        create_model(refused.model)
    assert_refused(caught, archive)
    assert jit_calls == []
    allowed = PipelineConfig.from_params({**params, "model": {**params["model"], "allow_torchscript": "true"}})
    assert allowed.model.allow_torchscript
    assert yaml.safe_load(allowed.to_yaml())["model"]["allow_torchscript"] is True    # `pir recipe show`
    assert PipelineConfig.from_params(yaml.safe_load(allowed.to_yaml())) == allowed
    assert isinstance(create_model(allowed.model), ClipPIR) and jit_calls == [str(archive)]


def test_evaluate_stage_needs_the_opt_in(clip_project, archive, jit_calls):   # noqa: F811
    root = clip_project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["checkpoint"] = str(archive)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    message = run_stage(root, "evaluate")
    assert message and str(archive) in message and OPT_IN in message and "\n" not in message
    assert jit_calls == []
    params["model"]["allow_torchscript"] = True
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(root, "evaluate") is None
    assert json.loads((root / "reports/metrics.json").read_text())["checkpoint"]["format"] == "clip"
    assert jit_calls == [str(archive)]
