"""What every stage script shares: the repo root, params.yaml -> typed configs, seeding.

Stage scripts own paths and params; the library in ``src/pir`` only sees the
dataclasses built here.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from pir import config as C
from pir.models.presets import model_config
from pir.runtime import retain_freed_memory

# Stage processes are short-lived and allocate the same large batches every step: keeping freed
# memory spares a page fault per 4 KiB of every batch (see pir.runtime).
retain_freed_memory()

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
REPORTS = ROOT / "reports"
FIGURES = REPORTS / "figures"

# Each stage owns one output folder under data/ (DVC outs).
FETCH_DIR = DATA / "fetch"
# fetch always writes the tokenizer here (trained, or a copy of data.tokenizer), so training and
# evaluation tokenize with exactly the same vocabulary.
TOKENIZER_DIR = FETCH_DIR / "tokenizer"
PRIOR_DIR = DATA / "scene_prior"
TRAIN_DIR = DATA / "train"
TRAIN_STATE_DIR = DATA / "train_state"   # persist: true, resumable state (see stages/train.py)
EVAL_DIR = DATA / "evaluate"
ANALYZE_DIR = DATA / "analyze"


def repo_root() -> Path:
    """The real repository root, also inside a queued experiment's temp clone (DVC sets DVC_ROOT)."""
    return Path(os.environ.get("DVC_ROOT") or ROOT).resolve()


def load_params(path: Path | None = None) -> dict[str, Any]:
    path = path or ROOT / "params.yaml"
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        sys.exit(f"{path}: invalid YAML ({str(exc).splitlines()[0]})")
    if not isinstance(params, dict):
        sys.exit(f"{path}: expected a mapping of sections")
    return params


class Configs:
    """Typed view of params.yaml, built once per stage."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.seed: int = int(params.get("seed", 0))
        try:
            self.data = C.from_mapping(C.DataConfig, params.get("data"), "params.yaml: data")
            self.synthetic = C.from_mapping(C.SyntheticConfig, params.get("synthetic"), "params.yaml: synthetic")
            model_section = dict(params.get("model") or {})
            preset = model_section.pop("preset", "tiny")
            self.model_preset: str = preset
            self.model = model_config(preset, **{k: v for k, v in model_section.items() if v is not None})
            self.scene_prior = C.from_mapping(C.ScenePriorConfig, params.get("scene_prior"), "params.yaml: scene_prior")
            self.train = C.from_mapping(C.TrainConfig, params.get("train"), "params.yaml: train")
            self.evaluate = C.from_mapping(C.EvalConfig, params.get("evaluate"), "params.yaml: evaluate")
            self.analyze = C.from_mapping(C.AnalyzeConfig, params.get("analyze"), "params.yaml: analyze")
        except (TypeError, ValueError) as exc:
            sys.exit(f"params.yaml: {exc}")


def configs() -> Configs:
    return Configs(load_params())


def run_stage(name: str, body: Callable[[Configs], None]) -> None:
    """Entry point of a stage script: params -> seed -> body; bad input ends in one line naming the stage."""
    cfgs = configs()
    seed_everything(cfgs.seed)
    try:
        body(cfgs)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"{name}: {exc}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
