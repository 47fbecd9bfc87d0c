"""DVC stage `train`: train PIR (or the baseline), select the epoch on val, write checkpoints and curves.

Device `auto`: CUDA when present, else CPU. With more than one visible GPU
(capped by train.max_gpus) this script re-executes itself under torchrun (DDP).
Killed runs resume from data/train_state (persist: true) when the params match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys

import common
from common import PATHS

from pir import files, tracking
from pir.config import to_dict
from pir.data.prepared import load_prepared
from pir.data.text import load_tokenizer
from pir.models import create_model
from pir.models.checkpoint import load_scene_prior_weights
from pir.training import launch
from pir.training.state import TrainState, file_digest, run_key
from pir.training.trainer import TrainOutputs, train, write_curves_csv

# Runtime knobs that do not change the numbers: a resume may use other values.
NOT_IN_RUN_KEY = ("num_workers", "log_interval")


def training_params(cfgs: common.Configs, model_cfg) -> dict:
    """Everything that decides the trained weights (also logged to MLflow and stored in checkpoints)."""
    train = {k: v for k, v in to_dict(cfgs.train).items() if k not in NOT_IN_RUN_KEY}
    return {"seed": cfgs.seed, "recipe": cfgs.recipe, "model_preset": cfgs.model_preset, "model": to_dict(model_cfg),
            "train": train}


def input_digests(model_cfg) -> dict[str, str]:
    digests = {"dataset": file_digest(PATHS.dataset_json),
               "tokenizer": file_digest(PATHS.tokenizer / "tokenizer.json")}
    if model_cfg.use_vir:
        digests["scene_prior"] = file_digest(PATHS.prior)
    return digests


def write_reports(summary, ctx: launch.DistContext) -> None:
    write_curves_csv(PATHS.train_curves, summary.curves)
    summary.extra.update({"device": str(ctx.device.type), "world_size": ctx.world_size})
    files.write_json(PATHS.train_report, summary.report())


def main() -> None:
    cfgs = common.configs()
    gpus = launch.gpus_to_use(cfgs.train.device, cfgs.train.max_gpus)
    cfgs.train.per_process_batch(max(1, gpus))   # a global batch that does not split fails here, not later
    if gpus > 1 and not launch.under_torchrun():
        print(f"train: {gpus} GPUs -> re-running under torchrun (DDP)", flush=True)
        os.execv(sys.executable, launch.torchrun_command(__file__, gpus))
    ctx = launch.setup(cfgs.train.device)
    common.seed_everything(cfgs.seed)
    prepared = load_prepared(PATHS.fetch)
    tokenizer = load_tokenizer(PATHS.tokenizer)
    model_cfg = dataclasses.replace(cfgs.model, vocab_size=len(tokenizer))
    model = create_model(model_cfg)
    if model_cfg.use_vir:
        load_scene_prior_weights(model, PATHS.prior)

    params = training_params(cfgs, model_cfg)
    state = TrainState(PATHS.train_state, run_key(params, input_digests(model_cfg)))
    root = common.repo_root()
    if ctx.is_main:
        stale = state.prune_stale()
        if stale:
            print(f"train: removed train state of other params ({', '.join(stale)})")
        tracking.ensure_experiment(root)
    launch.barrier(ctx)
    # MLflow shows every resolved value the run used (recipe applied), runtime knobs included.
    logged = {**params, "train": to_dict(cfgs.train), "data": to_dict(cfgs.data)}
    run = (tracking.stage_run(root, "train", logged,
                              run_id=state.mlflow_run_id(), model_key=state.key) if ctx.is_main else contextlib.nullcontext())
    with run as tracker:
        summary = train(model, prepared, tokenizer, model_cfg, cfgs.train, seed=cfgs.seed, state=state,
                        outputs=TrainOutputs(PATHS.best, PATHS.last), ctx=ctx,
                        params=params, tracker=tracker)
        if ctx.is_main:
            write_reports(summary, ctx)
            tracker.log_metrics({**{f"best_val_{k}": v for k, v in summary.best_val.items()}, **summary.timing()})
            for path in (PATHS.train_curves, PATHS.train_report, PATHS.best):
                tracker.log_artifact(path)
            state.clear()
            print(f"train: best epoch {summary.best_epoch} (val r_mean {summary.best_val['r_mean']:.2f}), "
                  f"{summary.samples_per_s:.1f} samples/s -> {PATHS.train}")
    launch.teardown()


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(str(exc))
