"""params.yaml -> one validated, typed view of the whole pipeline, with a recipe applied.

Layers, later wins: the dataclass defaults in ``pir.config`` < the model preset <
the recipe file (``src/pir/recipes/<name>.yaml``) < every non-null value in
params.yaml (where ``dvc exp run -S key=value`` writes). ``null`` in params.yaml
means "the recipe's value". One home per default: the fields a recipe sets are
set by every recipe and left null in params.yaml, and their dataclass defaults
mirror the ``cpu`` recipe (``pir.config.values.recipe``; tests/test_recipe_defaults.py).
Stage scripts build a ``PipelineConfig`` before any work, so a bad value ends in
one line naming the key, the value and what is allowed (see docs/recipes-and-data.md, "How a run's values are resolved").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from pir import config as C
from pir import hub
from pir.clip_known import is_resnet_arch, with_resolved_activation
from pir.config import PRESETS, model_config
from pir.errors import first_line

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"   # src/pir/recipes: the library ships them
DEFAULT_RECIPE = "cpu"
# Top-level sections of params.yaml and the dataclass each one builds (model is special: preset + overrides).
SECTIONS: dict[str, type] = {"data": C.DataConfig, "synthetic": C.SyntheticConfig, "scene_prior": C.ScenePriorConfig,
                             "train": C.TrainConfig, "evaluate": C.EvalConfig, "analyze": C.AnalyzeConfig,
                             "audit": C.AuditConfig, "runtime": C.RuntimeConfig}
TOP_LEVEL = ("seed", "recipe", "model", *SECTIONS)
SEED_MAX = 2 ** 32 - 1   # np.random.seed refuses more (pir.pipeline.entry.seed_everything)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name: str) -> dict[str, Any]:
    """The recipe file's values (sections of params), as written."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        raise ValueError(f"recipe = {name!r}: choose from {', '.join(recipe_names())}")
    values = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(values) - set(TOP_LEVEL) - {"recipe"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {', '.join(unknown)}")
    return values


def merge_set(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by the non-null values of ``extra``, one level of sections deep."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key].update({k: v for k, v in value.items() if v is not None})
        elif value is not None:
            out[key] = value
    return out


@dataclass(frozen=True)
class PipelineConfig:
    """Every stage's typed configuration, resolved from a recipe and overrides."""
    seed: int
    recipe: str
    model_preset: str
    data: C.DataConfig
    synthetic: C.SyntheticConfig
    model: C.ModelConfig
    scene_prior: C.ScenePriorConfig
    train: C.TrainConfig
    evaluate: C.EvalConfig
    analyze: C.AnalyzeConfig
    audit: C.AuditConfig
    runtime: C.RuntimeConfig

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str = "params.yaml") -> "PipelineConfig":
        """Validate and resolve a params.yaml mapping; ValueError (one line) on the first bad value."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(TOP_LEVEL))
        if unknown:
            raise ValueError(f"{where}: unknown section(s) {', '.join(unknown)}; known: {', '.join(TOP_LEVEL)}")
        for section in ("model", *SECTIONS):
            if not isinstance(params.get(section) or {}, Mapping):
                raise ValueError(f"{where}: {section} = {params[section]!r}: expected a mapping of keys")
        recipe = C.coerce(params.get("recipe") or DEFAULT_RECIPE, str, f"{where}: recipe")
        resolved = merge_set(load_recipe(recipe), params)
        seed = C.coerce(resolved.get("seed", 0), int, f"{where}: seed")
        C.check(seed >= 0, f"{where}: seed", seed, "must be >= 0")
        C.check(seed <= SEED_MAX, f"{where}: seed", seed, f"must be <= {SEED_MAX} (NumPy's seed range)")
        model_values = dict(resolved.get("model") or {})
        preset = C.coerce(model_values.pop("preset", None) or "tiny", str, f"{where}: model.preset")
        C.check(preset in PRESETS, f"{where}: model.preset", preset, f"choose from {', '.join(PRESETS)}")
        sections = {name: C.from_mapping(kind, resolved.get(name), f"{where}: {name}")
                    for name, kind in SECTIONS.items()}
        # The text input spec travels with the model (and its checkpoints): data decides it.
        model_values.update(max_words=sections["data"].max_words, max_tokens=sections["data"].max_tokens)
        model = model_config(preset, where=f"{where}: model", **model_values)
        # "auto" becomes the activation the weights need, here, so params YAML, MLflow and checkpoints record
        # it: from model.clip_weights, else from the released file evaluate scores (docs/clip-family.md, "CLIP towers")
        model = with_resolved_activation(model, model.clip_weights or sections["evaluate"].checkpoint)
        built = cls(seed=seed, recipe=recipe, model_preset=preset, model=model, **sections)
        built._check_across_sections(where)
        return built

    @classmethod
    def from_recipe(cls, name: str = DEFAULT_RECIPE, **overrides: Mapping[str, Any]) -> "PipelineConfig":
        """litgpt-style ``from_name``: ``PipelineConfig.from_recipe("paper", train={"lr": 1e-4})``."""
        return cls.from_params({"recipe": name, **overrides}, where=f"recipe {name}")

    def _check_across_sections(self, where: str) -> None:
        # The runtime ceilings first: a size past one would otherwise surface as some other complaint.
        for key, value, ceiling in self._bounded_sizes():
            limit = getattr(self.runtime, ceiling)
            C.check(value <= limit, f"{where}: {key}", value,
                    f"above runtime.{ceiling} ({limit}); raise runtime.{ceiling} to allow it")
        C.check(self.data.cache_res >= self.model.image_size, f"{where}: data.cache_res", self.data.cache_res,
                f"must be >= the model's image size ({self.model.image_size})")

    def _bounded_sizes(self) -> list[tuple[str, int, str]]:
        """(key, value, the runtime ceiling over it) of every param whose size is memory."""
        return [("train.global_batch_size", self.train.global_batch_size, "max_batch_size"),
                ("evaluate.batch_size", self.evaluate.batch_size, "max_batch_size"),
                ("scene_prior.batch_size", self.scene_prior.batch_size, "max_batch_size"),
                ("model.image_size", self.model.image_size, "max_image_side"),
                ("data.cache_res", self.data.cache_res, "max_image_side"),
                ("synthetic.image_size", self.synthetic.image_size, "max_image_side"),
                ("synthetic.images", self.synthetic.images, "max_images")]

    def problems(self) -> list[str]:
        """What stops the pipeline from running with these values, beyond types and ranges (one line each)."""
        found = []
        uses_prior = self.model.use_vir   # without VIR the scene_prior stage only writes placeholders
        if uses_prior and self.scene_prior.epochs == 0 and not self.scene_prior.pretrained:
            found.append("scene_prior.epochs = 0 uses the prior as it is and needs scene_prior.pretrained=<file> "
                         "(the released aid_28-rsp-resnet-50-ckpt.pth)")
        if self.model.is_clip and self.model.use_vir and is_resnet_arch(self.model.clip_model):
            found.append(f"model.use_vir needs image patch tokens, and {self.model.clip_model}'s image tower is a ResNet; "
                         "set model.use_vir=false (CLIP-CL, zero-shot)")
        # A Hub id is checked as written here; whether it is in the cache (or on the Hub) is for the stage
        # that resolves it (pir.hub): looking it up may take the network.
        found += [problem for problem in map(_hub_id_problem, self._hub_settings()) if problem]
        for key, value in (("scene_prior.pretrained", self.scene_prior.pretrained if uses_prior else ""),
                           ("model.vision_pretrained", self.model.vision_pretrained)):
            if _looks_like_path(value) and not hub.is_hub_id(value) and not Path(value).expanduser().is_file():
                found.append(f"{key} = {value!r}: file not found")
        if self.train.epochs == 0 and not self.model.is_clip:
            found.append(f"train.epochs = 0 (zero-shot) needs a CLIP preset (model.preset: {', '.join(C.CLIP_PRESETS)}); "
                         f"preset {self.model_preset!r} has no pretrained image-text weights to start from")
        if (self.model.clip_weights and not hub.is_hub_id(self.model.clip_weights)
                and not Path(self.model.clip_weights).expanduser().exists()):
            found.append(f"model.clip_weights = {self.model.clip_weights!r}: file or folder not found")
        if self.data.dataset != "synthetic" and not self.data.source:
            found.append(f"data.dataset = {self.data.dataset!r} needs data.source (a folder, archive or URL)")
        return found

    def _hub_settings(self) -> list[tuple[str, str]]:
        """(key, value) of every setting that may name weights by a Hub id (pir.hub)."""
        model = self.model
        return [("model.clip_weights", model.clip_weights), ("model.vision_pretrained", model.vision_pretrained),
                ("model.text_model", model.text_model if model.text_pretrained else ""),
                ("data.tokenizer", self.data.tokenizer), ("scene_prior.pretrained", self.scene_prior.pretrained),
                ("evaluate.checkpoint", self.evaluate.checkpoint)]

    @property
    def tokenizer_source(self) -> str:
        """What fetch tokenizes with: data.tokenizer, else a pretrained text model's own, else "" (train one)."""
        if self.data.tokenizer:
            return self.data.tokenizer
        return self.model.text_model if self.model.text_pretrained else ""

    def resolved_params(self) -> dict[str, Any]:
        """The values every stage uses, as a params.yaml-shaped mapping (for YAML, MLflow, checkpoints)."""
        model = C.to_dict(self.model, permissions=True)   # model.allow_torchscript shows here, not in checkpoints
        for derived in ("vocab_size", "max_tokens", "max_words"):   # set from data/tokenizer by the stages
            model.pop(derived)
        return {"seed": self.seed, "recipe": self.recipe, "data": C.to_dict(self.data),
                "synthetic": C.to_dict(self.synthetic), "model": {"preset": self.model_preset, **model},
                **{name: C.to_dict(getattr(self, name)) for name in ("scene_prior", "train", "evaluate", "analyze", "audit", "runtime")}}

    def compared_params(self, stage: str, device_type: str | None = None) -> dict[str, Any]:
        """The values people compare runs by, under short top-level keys (MLflow columns; see
        pir.pipeline.tracking.COMPARED_COLUMNS), as ``stage`` used them: epochs, lr and batch are the scene
        prior's own in its runs. With ``device_type``, precision is what autocast really ran."""
        common = {"recipe": self.recipe, "dataset": self.data.dataset, "seed": self.seed}
        if stage == "scene_prior":
            prior = self.scene_prior
            return {**common, "preset": self.model_preset, "epochs": prior.epochs, "global_batch": prior.batch_size,
                    "lr": prior.lr}
        if stage == "train":
            model, train = self.model, self.train
            precision = (C.effective_precision(train.precision, device_type, train.cpu_bf16) if device_type
                         else train.precision)
            return {**common, "preset": self.model_preset, "use_vir": model.use_vir, "use_lca": model.use_lca,
                    "use_affiliation": model.use_affiliation, "epochs": train.epochs,
                    "global_batch": train.global_batch_size, "lr": train.lr, "precision": precision}
        if stage == "evaluate":
            precision = (C.effective_precision(self.evaluate.precision, device_type) if device_type
                         else self.evaluate.precision)
            return {**common, "precision": precision}
        return common

    def to_yaml(self) -> str:
        return yaml.dump(self.resolved_params(), Dumper=_ParamsDumper, sort_keys=False)

    def replace(self, **changes: Any) -> "PipelineConfig":
        return dataclasses.replace(self, **changes)


class _ParamsDumper(yaml.SafeDumper):
    """Block mappings with inline lists, as params.yaml is written (``betas: [0.9, 0.98]``)."""


_ParamsDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def _hub_id_problem(setting: tuple[str, str]) -> str | None:
    """The one-line problem of a malformed Hub id, None for a good one or any other value."""
    key, value = setting
    if not hub.is_hub_id(value):
        return None
    try:
        hub.parse(value, key)
    except ValueError as exc:
        return str(exc)
    return None


def _looks_like_path(value: str) -> bool:
    """A local file setting (not "", "timm" or a timm tag such as swin_tiny_patch4_window7_224.ms_in22k)."""
    return bool(value) and ("/" in value or value.endswith((".pth", ".pt", ".bin", ".safetensors", ".ckpt")))


def _yaml_value_error(exc: Exception) -> str:
    """The first line of a YAML error, without Python's advice to raise its own int-to-str limit."""
    return first_line(exc).split("; use sys.set_int_max_str_digits")[0]


def load_params(path: str | Path) -> dict[str, Any]:
    """params.yaml as a mapping; ValueError (one line) when it is not valid YAML or not a mapping."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    # ValueError: a value PyYAML cannot build (int() of a number past 4300 digits, a bad date)
    except (yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"{path}: invalid YAML ({_yaml_value_error(exc)})") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections")
    return params


def apply_overrides(params: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["recipe=paper", "train.lr=1e-4"]`` applied to ``params`` (values parsed as YAML, like DVC's -S)."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in params.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value, e.g. train.lr=1e-4")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except (yaml.YAMLError, ValueError) as exc:
            raise ValueError(f"override {C.shown(item)}: invalid YAML ({_yaml_value_error(exc)})") from None
        section, _, leaf = key.partition(".")
        if leaf:
            out.setdefault(section, {})
            if not isinstance(out[section], dict):
                raise ValueError(f"override {item!r}: {section} is not a section")
            out[section][leaf] = value
        else:
            out[section] = value
    return out
