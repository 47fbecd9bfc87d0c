"""params.yaml -> PipelineConfig: recipes, overrides, types in DVC's forms, one-line errors."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pir.pipeline.params import PipelineConfig, apply_overrides, load_params, recipe_names

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("fetch", "audit", "scene_prior", "train", "evaluate", "analyze", "index")


def project_params() -> dict:
    return load_params(ROOT / "params.yaml")


def resolve(*overrides: str) -> PipelineConfig:
    return PipelineConfig.from_params(apply_overrides(project_params(), list(overrides)))


def test_recipes_ship_with_the_library():
    assert {"cpu", "paper", "clip"} <= set(recipe_names())


def test_paper_recipe_is_the_released_recipe():
    cfg = resolve("recipe=paper")
    train, model, data = cfg.train, cfg.model, cfg.data
    # optimisation: AdamW 6e-5, wd 0.01, betas (0.9, 0.98), eps 1e-8, 10 % warm-up then linear decay, 50 epochs
    assert (train.lr, train.weight_decay, train.betas, train.eps) == (6e-5, 0.01, (0.9, 0.98), 1e-8)
    assert (train.warmup_fraction, train.warmup_steps, train.schedule, train.epochs) == (0.1, 0, "linear", 50)
    assert train.grad_clip == 0.0
    # 2 GPUs x 128, gathered: a global batch of 256; every caption each epoch
    assert train.global_batch_size == 256 and train.pairs_per_image == 0
    assert (data.max_tokens, data.max_words) == (47, 30) and (model.max_tokens, model.max_words) == (47, 30)
    assert (model.embed_dim, model.heads, model.dropout) == (512, 8, 0.2)
    assert (model.temp, model.temp2) == (0.07, 0.07)
    assert (model.filter_size, model.instru_num, model.cycle_num) == (40, 2, 3)
    assert model.use_vir and model.use_lca
    assert model.use_affiliation and model.center_factor == 1.0 and not model.use_triplet
    # augmentation: 224 px, RandomResizedCrop (0.5, 1) bicubic, flip, RandAugment 2 ops at magnitude 7
    assert model.image_size == 224 and train.crop_scale == (0.5, 1.0) and train.hflip
    assert (train.randaug_ops, train.randaug_magnitude) == (2, 7)
    # backbones: Swin-T from ImageNet-22k, pretrained BERT-base, a frozen prior used as it is; fp32
    assert cfg.model_preset == "paper" and model.vision_pretrained.endswith("ms_in22k")
    assert model.text_pretrained and model.text_model == "bert-base-uncased"
    assert not model.finetune_prior and cfg.scene_prior.epochs == 0
    assert train.precision == "fp32" and cfg.evaluate.precision == "fp32"
    assert cfg.tokenizer_source == "bert-base-uncased"


def test_released_details_the_values_cannot_show():
    # tau1/tau2 are learnable parameters, and the crop is bicubic (equal to torchvision's RandomResizedCrop
    # kernel on the same box)
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    from pir.data.transforms import resized_crop
    from pir.models import create_model
    model = create_model(resolve().model)
    assert isinstance(model.temp, torch.nn.Parameter) and model.temp.requires_grad
    assert isinstance(model.temp2, torch.nn.Parameter) and model.temp2.requires_grad
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    ours = resized_crop(image.float(), 5, 7, 40, 30, 32)
    reference = F.resized_crop(image.float(), 5, 7, 40, 30, [32, 32], InterpolationMode.BICUBIC, antialias=True)
    assert torch.allclose(ours, reference, atol=1e-3)


def test_cpu_recipe_keeps_the_default_run():
    cfg = resolve()
    assert cfg.recipe == "cpu" and cfg.model_preset == "tiny"
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.global_batch_size, cfg.train.pairs_per_image) == (5e-4, 8, 64, 1)
    assert (cfg.scene_prior.epochs, cfg.scene_prior.lr) == (4, 0.005) and cfg.data.cache_res == 128
    # the released schedule, as before the keys existed: 10 % warm-up, linear decay, no clipping
    assert (cfg.train.warmup_fraction, cfg.train.warmup_steps, cfg.train.schedule, cfg.train.grad_clip) == \
        (0.1, 0, "linear", 0.0)
    assert cfg.problems() == []


def test_params_override_the_recipe_and_null_takes_it():
    cfg = resolve("recipe=paper", "train.lr=1e-4", "model.use_lca=false", "train.epochs=null")
    assert cfg.train.lr == 1e-4 and not cfg.model.use_lca and cfg.train.epochs == 50
    assert cfg.model.embed_dim == 512          # untouched recipe values stay


def test_compared_params_are_the_resolved_values_the_stage_used():
    cfg = resolve("recipe=paper", "train.lr=1e-4", "model.use_lca=false", "seed=3")
    assert cfg.compared_params("train", device_type="cuda") == {
        "recipe": "paper", "dataset": "synthetic", "seed": 3, "preset": "paper", "use_vir": True, "use_lca": False,
        "use_affiliation": True, "epochs": 50, "global_batch": 256, "lr": 1e-4, "precision": "fp32"}
    cpu = resolve("train.precision=bf16")
    assert cpu.compared_params("train")["precision"] == "bf16"                     # as configured
    assert cpu.compared_params("train", device_type="cpu")["precision"] == "fp32"  # what autocast runs there
    prior = cpu.compared_params("scene_prior")
    assert (prior["epochs"], prior["lr"], prior["global_batch"]) == (4, 0.005, cpu.scene_prior.batch_size)
    assert "use_vir" not in prior and set(cpu.compared_params("analyze")) == {"recipe", "dataset", "seed"}


def test_numbers_as_dvc_writes_them():
    # `dvc exp run -S train.lr=6e-5` writes `lr: 6e-05`, which PyYAML reads as a string
    written = yaml.safe_load("train:\n  lr: 6e-05\n  epochs: '3'\n")
    assert written["train"]["lr"] == "6e-05"
    cfg = PipelineConfig.from_params({**project_params(), "train": {**project_params()["train"], **written["train"]}})
    assert cfg.train.lr == 6e-5 and cfg.train.epochs == 3


BAD_VALUES = [
    ("model.use_vir", '"flase"', "model.use_vir = 'flase': expected true or false"),
    ("train.lr", "abc", "train.lr = 'abc': expected a number"),
    ("train.lr", "-1", "train.lr = -1.0: must be > 0"),
    ("train.epochs", "-1", "train.epochs = -1: must be >= 1, or 0 (CLIP presets) for zero-shot"),
    ("train.epochs", "2.5", "train.epochs = 2.5: expected an integer"),
    ("train.global_batch_size", "0", "train.global_batch_size = 0: must be >= 1"),
    ("scene_prior.epochs", "-1", "scene_prior.epochs = -1: must be >= 1, or 0"),
    ("scene_prior.batch_size", "0", "scene_prior.batch_size = 0: must be >= 1"),
    ("evaluate.batch_size", "0", "evaluate.batch_size = 0: must be >= 1"),
    ("data.val_fraction", "1.0", "data.val_fraction = 1.0: must be in [0, 1)"),
    ("data.cache_res", "64", "data.cache_res = 64: must be >= the model's image size (112)"),
    ("data.max_words", "0", "data.max_words = 0: must be >= 1"),
    ("train.schedule", "step", "train.schedule = 'step': choose from linear, cosine"),
    ("train.warmup_steps", "-5", "train.warmup_steps = -5: must be >= 0 (0 = use warmup_fraction)"),
    ("data.sha256", "abc", "data.sha256 = 'abc': a 64-hex-digit sha256 or empty"),
    ("data.dataset", "coco", "data.dataset = 'coco': choose from synthetic, rsitmd, rsicd"),
    ("train.precision", "fp16", "train.precision = 'fp16': choose from bf16, fp32"),
    ("train.crop_scale", "[0.5]", "train.crop_scale = [0.5]: expected a list of 2 values"),
    ("train.batch_size", "8", "train: unknown key(s) batch_size"),
    ("recipe", "papr", "recipe = 'papr': choose from"),
    ("model.preset", "huge", "model.preset = 'huge': choose from paper, tiny"),
    ("bogus", "1", "unknown section(s) bogus"),
]


@pytest.mark.parametrize("key,value,message", BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_bad_values_name_key_value_and_what_is_allowed(key, value, message):
    with pytest.raises(ValueError) as caught:
        resolve(f"{key}={value}")
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_problems_that_stop_a_run():
    cfg = resolve("recipe=paper")
    assert any("scene_prior.pretrained" in p for p in cfg.problems())
    missing = resolve("scene_prior.pretrained=/nowhere/aid.pth")
    assert "scene_prior.pretrained = '/nowhere/aid.pth': file not found" in missing.problems()


def test_global_batch_splits_evenly_over_gpus():
    train = resolve("train.global_batch_size=256").train
    assert [train.per_process_batch(n) for n in (1, 2, 4)] == [256, 128, 64]
    with pytest.raises(ValueError, match="global_batch_size = 256 does not split evenly over 3"):
        train.per_process_batch(3)


def test_resolved_params_round_trip():
    cfg = resolve("recipe=paper", "train.lr=1e-4")
    again = PipelineConfig.from_params(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


# --------------------------------------------------------------------------- the commands

def _copy_stages(tmp_path: Path, params: dict) -> Path:
    shutil.copytree(ROOT / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def _run(project: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(project / "stages" / script), *args], cwd=project,
                          capture_output=True, text=True, timeout=120)


def test_recipe_show_prints_the_resolved_recipe(tmp_path, capsys):
    # `pir recipe show` in this process, KEY=VALUE form (test_pir_recipe_show_from_inside_the_project runs the command)
    from pir_tools.cli import recipe_show
    project = _copy_stages(tmp_path, project_params())
    assert recipe_show(["recipe=paper", "train.lr=6e-05"], project) == 0
    out, err = capsys.readouterr()
    shown = yaml.safe_load(out)
    assert shown["train"]["lr"] == 6e-5 and shown["train"]["global_batch_size"] == 256
    assert shown["model"]["preset"] == "paper" and "scene_prior.pretrained" in err
    assert not (project / "data").exists()


def _bad_value_project(tmp_path: Path) -> Path:
    params = project_params()
    params["train"]["lr"] = "6e-05"                     # as DVC writes it: must be accepted
    params["model"]["use_vir"] = "flase"                # must be rejected
    return _copy_stages(tmp_path, params)


BAD_VALUE = "params.yaml: model.use_vir = 'flase': expected true or false"


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_stops_on_a_bad_value_in_one_line_before_any_work(tmp_path, stage, monkeypatch):
    # Each stage's entry point in this process: its modules are imported already, where a process per
    # stage would spend seconds importing them (the next test runs a stage script as DVC does).
    from pir.pipeline.entry import main
    project = _bad_value_project(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main(importlib.import_module(f"pir.pipeline.{stage}"), project)
    assert stopped.value.code == f"{stage}: {BAD_VALUE}"
    assert not any((project / name).exists() for name in ("data", "reports", "mlflow.db"))


def test_a_stage_script_stops_on_a_bad_value_in_one_line(tmp_path):
    project = _bad_value_project(tmp_path)
    proc = _run(project, "fetch.py")
    assert proc.returncode != 0 and proc.stderr.strip() == f"fetch: {BAD_VALUE}"
    assert not any((project / name).exists() for name in ("data", "reports", "mlflow.db"))


def test_pir_recipe_show_from_inside_the_project(tmp_path):
    project = _copy_stages(tmp_path, project_params())
    (project / "dvc.yaml").write_text("stages: {}\n")
    (project / "sub").mkdir()
    proc = subprocess.run([sys.executable, "-m", "pir_tools.cli", "recipe", "show", "paper", "train.lr=6e-05"],
                          cwd=project / "sub", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["recipe"] == "paper" and shown["train"]["lr"] == 6e-5
    listed = subprocess.run([sys.executable, "-m", "pir_tools.cli", "recipe", "list"], cwd=project,
                            capture_output=True, text=True, timeout=120)
    assert listed.stdout.split() == recipe_names()
    # the console script `pir` is what pyproject declares
    assert 'pir = "pir_tools.cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_clip_recipe_is_georsclip_ft():
    # Zhang et al. (RS5M/GeoRSCLIP, TGRS 2024) section VI: AdamW 1e-6, wd 0.5, cosine, batch 700, 1-3 epochs;
    # OpenCLIP's defaults where the paper is silent; HarMA's 10 % warm-up (src/pir/recipes/clip.yaml)
    train = resolve("recipe=clip").train
    assert (train.lr, train.weight_decay, train.betas, train.eps) == (1e-6, 0.5, (0.9, 0.98), 1e-6)
    assert (train.schedule, train.warmup_steps, train.warmup_fraction) == ("cosine", 0, 0.1)
    assert (train.epochs, train.global_batch_size, train.pairs_per_image, train.grad_clip) == (3, 700, 0, 0.0)
    assert (train.crop_scale, train.hflip, train.randaug_ops) == ((0.9, 1.0), False, 0)
    assert "[assumed]" not in (ROOT / "src/pir/recipes/clip.yaml").read_text()


def test_zero_shot_is_for_clip_presets_only():
    assert any("train.epochs = 0 (zero-shot) needs a CLIP preset" in p for p in resolve("train.epochs=0").problems())
    clip = resolve("recipe=clip", "model.preset=clip-tiny", "train.epochs=0")
    assert clip.model.is_clip and clip.model.clip_model == "PIR-CLIP-tiny" and clip.problems() == []
    assert "model.clip_weights = '/nowhere/rc.pt': file or folder not found" in \
        resolve("recipe=clip", "model.clip_weights=/nowhere/rc.pt").problems()


# --------------------------------------------------------------------------- exact integers, ceilings

def test_integers_are_parsed_exactly_never_through_float():
    from pir.config import coerce
    big = 2 ** 53 + 1                                          # float(big) == big - 1
    assert coerce(big, int, "k") == big and coerce(str(big), int, "k") == big and coerce(" 3 ", int, "k") == 3
    assert coerce(2.0, int, "k") == 2                         # YAML's 2.0: an integer all the same
    # the seed is refused past NumPy's range, naming its exact value (not ...992)
    with pytest.raises(ValueError, match=r"seed = 9007199254740993: must be <= 4294967295"):
        resolve(f"seed={big}")
    assert resolve("seed=4294967295").seed == 4294967295


HUGE = "1" + "0" * 400                                         # a 401-digit integer literal


@pytest.mark.parametrize("key,value,message", [
    ("seed", HUGE, "seed = 100000000000... (401 digits): outside the integers a param can hold"),
    ("train.epochs", HUGE, "train.epochs = 100000000000... (401 digits): outside the integers"),
    ("train.epochs", f"'{HUGE}'", "... (403 characters): outside the integers a param can hold"),   # as -S writes it
    ("train.lr", HUGE, "train.lr = 100000000000... (401 digits): too large for a number"),
    ("train.epochs", "'1e3'", "train.epochs = '1e3': expected an integer"),    # strings of ints are digits only
    ("train.epochs", "1.0e+3", None),                                          # a YAML float with no fraction: fine
    ("train.lr", "'1_0'", "train.lr = '1_0': expected a number"),
    ("runtime.threads", "'²'", "runtime.threads = '²': expected an integer"),
    ("runtime.threads", "100000", "runtime.threads = 100000: at most 4096"),
    ("train.epochs", "9" * 5000, "invalid YAML (Exceeds the limit (4300 digits)"),
])
def test_huge_and_malformed_numbers_end_in_one_short_line(key, value, message):
    if message is None:
        assert resolve(f"{key}={value}").train.epochs == 1000
        return
    with pytest.raises(ValueError) as caught:
        resolve(f"{key}={value}")
    text = str(caught.value)
    assert message in text and "\n" not in text and len(text) < 300


CEILINGS = [("train.global_batch_size", "max_batch_size", 65536), ("evaluate.batch_size", "max_batch_size", 65536),
            ("scene_prior.batch_size", "max_batch_size", 65536), ("model.image_size", "max_image_side", 2048),
            ("data.cache_res", "max_image_side", 2048), ("synthetic.image_size", "max_image_side", 2048),
            ("synthetic.images", "max_images", 100000)]


@pytest.mark.parametrize("key,ceiling,default", CEILINGS, ids=[k for k, _, _ in CEILINGS])
def test_sizes_that_are_memory_stop_at_a_raisable_ceiling(key, ceiling, default):
    with pytest.raises(ValueError) as caught:
        resolve(f"{key}=10000000")
    assert str(caught.value) == (f"params.yaml: {key} = 10000000: above runtime.{ceiling} ({default}); "
                                 f"raise runtime.{ceiling} to allow it")
    raised = [f"runtime.{ceiling}={default * 2}", f"{key}={default * 2}"]
    if key == "model.image_size":
        raised.append(f"data.cache_res={default * 2}")
    resolve(*raised)                                           # raising the ceiling lets it through


def test_ceilings_never_bind_a_shipped_recipe_and_show_in_the_resolved_params():
    for recipe in recipe_names():
        cfg = resolve(f"recipe={recipe}")
        for key, value, ceiling in cfg._bounded_sizes():
            assert value * 8 <= getattr(cfg.runtime, ceiling), (recipe, key)
    shown = yaml.safe_load(resolve("recipe=paper").to_yaml())
    assert shown["runtime"] == {"threads": 2, "max_batch_size": 65536, "max_image_side": 2048, "max_images": 100000}
    assert shown["model"]["allow_torchscript"] is False
    for bad in ("runtime.max_images=0", "synthetic.captions_per_image=1000", "train.pairs_per_image=1000",
                "evaluate.bootstrap_resamples=10000000000"):
        with pytest.raises(ValueError, match=r"= \d+: must be"):
            resolve(bad)
