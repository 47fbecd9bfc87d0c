"""One home per default: a field a recipe sets has its value in the recipe file.

The rule (pir.config.values.recipe): the recipes set the fields marked ``recipe(...)``, every recipe
sets all of them, params.yaml leaves them null, and the dataclass default mirrors the ``cpu`` recipe
(the default run's), so that a config built directly (``TrainConfig()``) is what ``dvc repro`` runs
with. Model fields are the preset's (pir.config.presets): a recipe names a preset and overrides some
of its fields.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pir.clip_known import with_resolved_activation
from pir.config import PRESETS, from_mapping, model_config
from pir.config.values import recipe_fields
from pir.pipeline.params import SECTIONS, PipelineConfig, apply_overrides, load_params, load_recipe, recipe_names

ROOT = Path(__file__).resolve().parents[1]
# model.max_words/max_tokens come from data, vocab_size from the tokenizer: never a recipe's
DERIVED_MODEL_FIELDS = {"max_words", "max_tokens", "vocab_size"}
# which starting weights a recipe loads: its choice, not the preset's architecture
WEIGHTS_FIELDS = {"vision_pretrained", "text_pretrained", "clip_weights"}


def _typed(section: str, values: dict) -> dict:
    """The recipe file's values as the config holds them (lists as tuples, numbers coerced)."""
    config = from_mapping(SECTIONS[section], values, section)
    return {key: getattr(config, key) for key in values}


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_the_marked_fields_are_the_ones_every_recipe_sets(section):
    marked = set(recipe_fields(SECTIONS[section]))
    for name in recipe_names():
        assert set(load_recipe(name).get(section) or {}) == marked, (name, section)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_a_recipe_field_defaults_to_the_cpu_recipe(section):
    cls = SECTIONS[section]
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.name in recipe_fields(cls)}
    assert defaults == _typed(section, load_recipe("cpu").get(section) or {})


def test_the_default_model_is_the_cpu_recipes():
    cpu = load_recipe("cpu")["model"]
    preset = cpu.pop("preset")
    assert model_config() == model_config(preset)          # model_config's default preset
    assert {key: getattr(model_config(preset), key) for key in cpu} == cpu   # overrides that restate the preset


def test_params_yaml_leaves_every_recipe_field_to_the_recipe():
    params = load_params(ROOT / "params.yaml")
    set_there = {(section, key): value for section in ("model", *SECTIONS)
                 for key, value in (params.get(section) or {}).items() if value is not None}
    recipe_set = {(section, key) for name in recipe_names() for section, values in load_recipe(name).items()
                  if isinstance(values, dict) for key in values}
    assert {k: v for k, v in set_there.items() if k in recipe_set} == {}


@pytest.mark.parametrize("name", recipe_names())
def test_each_recipe_resolves_to_its_file(name):
    recipe = load_recipe(name)
    cfg = PipelineConfig.from_params(apply_overrides(load_params(ROOT / "params.yaml"), [f"recipe={name}"]))
    for section in SECTIONS:
        values = recipe.get(section) or {}
        assert {key: getattr(getattr(cfg, section), key) for key in values} == _typed(section, values), section
    model = dict(recipe["model"])
    assert cfg.model_preset == model.pop("preset")
    # clip_activation "auto" resolves from the weights' name, as params do (pir.clip_known)
    expected = dataclasses.asdict(with_resolved_activation(model_config(cfg.model_preset, **model),
                                                           cfg.model.clip_weights or cfg.evaluate.checkpoint))
    resolved = dataclasses.asdict(cfg.model)
    assert {k: v for k, v in resolved.items() if k not in DERIVED_MODEL_FIELDS} == \
        {k: v for k, v in expected.items() if k not in DERIVED_MODEL_FIELDS}


def test_the_paper_recipe_restates_the_paper_preset():
    # recipes/paper.yaml writes the released architecture out, with its sources: it is the paper preset's
    model = {k: v for k, v in load_recipe("paper")["model"].items() if k not in WEIGHTS_FIELDS}
    preset = model.pop("preset")
    written = model_config(preset, **model)
    assert {key: getattr(PRESETS[preset], key) for key in model} == {key: getattr(written, key) for key in model}
