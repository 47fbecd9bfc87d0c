"""Stage ``train``: train PIR (or the baseline), select the epoch on val, write checkpoints and curves.

Device ``auto``: CUDA when present, else CPU. With more than one visible GPU (capped by
train.max_gpus) the stage process re-executes itself under torchrun (DDP); started under torchrun
(N nodes, docs/scaling.md) it runs as it is, and global rank 0 alone writes. Killed runs resume
from the train state (DVC ``persist: true``) when the params match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any, Mapping

from pir import files, hub, processes

from pir.pipeline import seed_runs, tracking
from pir.config import ModelConfig, to_dict
from pir.data.prepared import PreparedDataset, load_prepared
from pir.data.stream import train_stream
from pir.data.text import model_tokenizer
from pir.device import numerics_record
from pir.evaluation.published import TEST_PREFIX
from pir.models import create_model
from pir.models.checkpoint import load_scene_prior_weights
from pir.pipeline.params import PipelineConfig
from pir.pipeline.paths import Paths
from pir.training import launch
from pir.training.state import TrainState, file_digest, run_key
from pir.training.trainer import TrainOutputs, TrainSummary, train, write_curves_csv, zero_shot

# Knobs that do not change the weights: a resume may use other values, and the checkpoints (which
# store the params) keep their bytes. track_test only adds report columns (docs/evaluation.md,
# "Comparing with published numbers").
NOT_IN_RUN_KEY = ("num_workers", "log_interval", "track_test")


def mlflow_row(row: Mapping[str, Any]) -> dict[str, float]:
    """An epoch's curve row as MLflow metrics. The test columns become ``tracked_test_<key>``:
    ``test_<key>`` in the same run is evaluate's headline, and the seed groups look for it."""
    return {("tracked_" + k if k.startswith(TEST_PREFIX) else k): v for k, v in row.items() if k != "epoch"}


class MlflowEpochs:
    """The trainer's ``EpochLogger`` (pir.training.trainer) on the stage's MLflow run: one metrics batch
    an epoch, at step = the epoch."""

    def __init__(self, tracker: tracking.Tracker):
        self.tracker = tracker
        self.run_id = tracker.run_id

    def log_epoch(self, row: Mapping[str, float], step: int) -> None:
        self.tracker.log_metrics(mlflow_row(row), step=step)


def training_params(cfgs: PipelineConfig, model_cfg: ModelConfig) -> dict:
    """Everything that decides the trained weights (also logged to MLflow and stored in checkpoints)."""
    train_params = {k: v for k, v in to_dict(cfgs.train).items() if k not in NOT_IN_RUN_KEY}
    # the thread count changes the weights (pir.threads): a resume with another count starts afresh
    return {"seed": cfgs.seed, "recipe": cfgs.recipe, "model_preset": cfgs.model_preset, "model": to_dict(model_cfg),
            "train": train_params, "threads": cfgs.runtime.threads}


def declared_params(cfgs: PipelineConfig) -> dict:
    """The resolved params as declared, before anything is read off the data (vocab size, caption
    length): seeds generate different data, and their runs must still share one configuration."""
    return {"recipe": cfgs.recipe, "model_preset": cfgs.model_preset, "model": to_dict(cfgs.model),
            "train": {k: v for k, v in to_dict(cfgs.train).items() if k not in NOT_IN_RUN_KEY},
            "data": to_dict(cfgs.data)}


def input_digests(paths: Paths, model_cfg: ModelConfig) -> dict[str, str]:
    """The bytes a run's weights depend on besides its params: a resume needs them unchanged."""
    digests = {"dataset": file_digest(paths.dataset_json), "tokenizer": file_digest(paths.tokenizer / "tokenizer.json")}
    if model_cfg.use_vir:
        digests["scene_prior"] = file_digest(paths.prior)
    return digests


def read_inputs(cfgs: PipelineConfig, paths: Paths, ctx: launch.DistContext) -> tuple[PreparedDataset, Any]:
    """(prepared dataset, tokenizer), which every rank reads from its own node's project folder.

    Under DDP a rank that lacks them, or whose copy (or scene prior) has other bytes than rank 0's,
    stops every rank with the same one line: the others would otherwise wait in the next collective
    until it timed out (docs/scaling.md, "Training on many GPUs and nodes").
    """
    if not ctx.distributed:
        return load_prepared(paths.fetch), model_tokenizer(cfgs.model, paths.tokenizer)
    loaded, problem, digests = None, None, {}
    try:
        loaded = load_prepared(paths.fetch), model_tokenizer(cfgs.model, paths.tokenizer)
        digests = input_digests(paths, cfgs.model)
    except (OSError, ValueError) as exc:
        problem = str(exc)
    reports = launch.gather_objects(ctx, (problem, digests, processes.this_host()))
    main = reports[0][1]   # every rank walks the same list, so every rank raises the same line
    for rank, (message, theirs, host) in enumerate(reports):
        differs = [f"{key} {'not found' if theirs[key] == 'absent' else 'has other bytes'}"
                   for key in theirs if theirs[key] != main.get(key)]
        if message or differs:
            raise ValueError(f"rank {rank} of {ctx.world_size} (host {host}): {message or ', '.join(differs)} "
                             "(every node needs rank 0's data/fetch, and data/scene_prior with VIR: docs/scaling.md)")
    return loaded


def write_reports(paths: Paths, summary: TrainSummary, ctx: launch.DistContext, runtime: dict,
                  hub_commits: dict[str, str] | None = None) -> None:
    """``hub_commits``: {Hub id: commit} of the starting weights named by Hub ids (pir.hub), if any."""
    write_curves_csv(paths.train_curves, summary.curves)
    summary.extra.update({"device": str(ctx.device.type), "world_size": ctx.world_size, "nnodes": ctx.nnodes,
                          "runtime": runtime,
                          **({"hub": hub_commits} if hub_commits else {})})
    files.write_json(paths.train_report, summary.report())


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    gpus = launch.gpus_to_use(cfgs.train.device, cfgs.train.max_gpus)
    # a global batch that does not split fails here, not later (on every rank alike under torchrun)
    cfgs.train.per_process_batch(launch.planned_world_size(gpus))
    if gpus > 1 and not launch.under_torchrun():
        launch.relaunch_under_torchrun(gpus)
    if cfgs.train.epochs == 0 and not cfgs.model.is_clip:
        raise ValueError(f"train.epochs = 0 (zero-shot) is for CLIP presets only; model.preset = {cfgs.model_preset!r} "
                         "has no pretrained image-text weights to start from")
    ctx = launch.setup(cfgs.train.device)
    if ctx.is_main and ctx.nnodes > 1:   # torchrun's c10d rendezvous picks rank 0's node (docs/scaling.md)
        print(f"train: {ctx.world_size} processes on {ctx.nnodes} nodes; rank 0 on {processes.this_host()} "
              f"writes {paths.root}", flush=True)
    prepared, tokenizer = read_inputs(cfgs, paths, ctx)
    model_cfg = dataclasses.replace(cfgs.model, vocab_size=len(tokenizer))
    with hub.recording() as resolved:   # starting weights named by Hub ids: their commits go in the run
        model = create_model(model_cfg)
    if model_cfg.use_vir:
        load_scene_prior_weights(model, paths.prior)

    params = training_params(cfgs, model_cfg)
    stream = train_stream(prepared, cfgs.data)   # None unless fetch left train in shards (docs/scaling.md)
    digests = input_digests(paths, model_cfg)
    if stream is not None:   # how it streams changes the weights too (the shards are in dataset.json)
        digests["train_shards"] = json.dumps(stream.settings(), sort_keys=True)
    state = TrainState(paths.train_state, run_key(params, digests))
    if ctx.is_main:
        stale = state.prune_stale()
        if stale:
            print(f"train: removed train state of other params ({', '.join(stale)})")
        tracking.ensure_experiment(paths.store)
    launch.barrier(ctx)
    # MLflow shows every resolved value the run used (recipe applied), runtime knobs included.
    logged = {**params, "train": to_dict(cfgs.train), "data": to_dict(cfgs.data)}
    compared = cfgs.compared_params("train", device_type=ctx.device.type)
    runtime = numerics_record(ctx.device)
    mlflow_run = (tracking.stage_run(paths.store, "train", logged, run_id=state.logger_run_id(), model_key=state.key,
                                     compared=compared,
                                     runtime={**runtime, "world_size": ctx.world_size, "nnodes": ctx.nnodes})
                  if ctx.is_main else contextlib.nullcontext())
    with mlflow_run as tracker:
        if ctx.is_main:  # the seed's siblings share this key: evaluate nests them under one parent run
            tracker.set_tags({seed_runs.CONFIG_KEY_TAG: seed_runs.config_key(declared_params(cfgs)),
                              **tracking.hub_tags(resolved)})
        outputs = TrainOutputs(paths.best, paths.last)
        if cfgs.train.epochs == 0:   # zero-shot: the starting weights are the selected checkpoint
            summary = zero_shot(model, prepared, tokenizer, model_cfg, cfgs.train, state=state, outputs=outputs,
                                ctx=ctx, params=params)
        else:   # tracker is None on the other ranks (they only train)
            summary = train(model, prepared, tokenizer, model_cfg, cfgs.train, seed=cfgs.seed, state=state,
                            outputs=outputs, ctx=ctx, params=params,
                            logger=MlflowEpochs(tracker) if tracker is not None else None, stream=stream)
        if ctx.is_main:
            write_reports(paths, summary, ctx, runtime, hub.report(resolved))
            tracker.log_metrics({**{f"best_val_{k}": v for k, v in summary.best_val.items()}, **summary.timing()})
            for path in (paths.train_curves, paths.train_report, paths.best):
                tracker.log_artifact(path)
            state.clear()
            print(f"train: best epoch {summary.best_epoch} (val r_mean {summary.best_val['r_mean']:.2f}), "
                  f"{summary.samples_per_s:.1f} samples/s -> {paths.train}")
    launch.teardown()
