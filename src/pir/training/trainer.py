"""PIR training loop: epochs of AdamW steps, validation-split model selection, exact resume.

Selection only ever sees the train and val splits: the test split belongs to the evaluate stage
and is looked at once (the official code selected its epoch on test). ``train.track_test`` also
scores test after each validation, after the selection step, for the report's ``as_published``
entry only (docs/evaluation.md, "Comparing with published numbers").
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from pir import files
from pir.config import ModelConfig, TrainConfig
from pir.data.loader import set_epoch, train_pairs_loader
from pir.data.prepared import PreparedDataset, SplitView
from pir.data.stream import ShardStream, stream_loader
from pir.data.transforms import image_stats, normalize_images
from pir.device import precision_context
from pir.evaluation.embed import embed_split
from pir.evaluation.published import TEST_PREFIX
from pir.models.checkpoint import save_checkpoint, unwrap
from pir.training.launch import DistContext, barrier, share_from_main
from pir.training.optim import make_optimizer, make_scheduler
from pir.training.state import TrainState, capture_rng, restore_rng

SELECTION_METRIC = "r_mean"


class EpochLogger(Protocol):
    """Where ``train`` reports each finished epoch, on rank 0 (pir.pipeline.train adapts an MLflow run).

    ``run_id`` names the place it logs to; the train state keeps it, so that a resumed run can report
    to the same place again (``TrainState.logger_run_id``). None: nothing to keep.
    """
    run_id: str | None

    def log_epoch(self, row: Mapping[str, float], step: int) -> None:
        """``row``: the epoch's curve row (losses, lr, timings, ``val_*``, ``test_*``), ``step``: its epoch."""


@dataclass(frozen=True)
class TrainOutputs:
    """Where the finished run's checkpoints go (the stage's DVC outs)."""
    best: Path
    last: Path


@dataclass
class TrainSummary:
    best_epoch: int
    best_val: dict[str, float]
    curves: list[dict[str, float]]
    resumed_from: int                    # completed epochs found in the state (0 = fresh run)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def train_seconds(self) -> float:
        return float(sum(row["epoch_seconds"] for row in self.curves))

    @property
    def samples_per_s(self) -> float:
        seconds = sum(row["epoch_seconds"] for row in self.curves)
        return float(sum(row["samples"] for row in self.curves) / seconds) if seconds else 0.0

    def report(self) -> dict[str, Any]:
        """reports/train.json: best epoch and its val metrics (no test numbers).

        Only numbers that the seed determines: a rerun (or a resumed run) with the same params
        rewrites the same file, so git and `dvc metrics diff` stay quiet. Timings go to MLflow.
        """
        return {"best_epoch": self.best_epoch, "selection": f"val_{SELECTION_METRIC}",
                "best_val": self.best_val, "epochs": len(self.curves), **self.extra}

    def timing(self) -> dict[str, float]:
        return {"train_seconds": round(self.train_seconds, 2), "samples_per_s": round(self.samples_per_s, 2),
                "resumed_from_epoch": self.resumed_from}


def split_metrics(model: nn.Module, prepared: PreparedDataset, view: SplitView, tokenizer: Any,
                  model_cfg: ModelConfig, train_cfg: TrainConfig, ctx: DistContext) -> dict[str, float]:
    """Retrieval metrics (percent) of the current weights on one split; the weights and every RNG stay as
    they were (eval mode, the loader's own generator), so scoring never changes what training does."""
    from pir.evaluation.metrics import retrieval_metrics
    image_emb, text_emb = embed_split(unwrap(model), prepared, view, tokenizer, model_cfg.image_size,
                                      model_cfg.max_tokens, train_cfg.per_process_batch(ctx.world_size), ctx.device,
                                      train_cfg.precision, cpu_bf16=train_cfg.cpu_bf16, progress=False,
                                      max_words=model_cfg.max_words)
    sims = (image_emb @ text_emb.T).numpy()
    return {k: float(v) for k, v in retrieval_metrics(sims, view.txt2img).items()}


def validate(model: nn.Module, prepared: PreparedDataset, tokenizer: Any, model_cfg: ModelConfig,
             train_cfg: TrainConfig, ctx: DistContext) -> dict[str, float]:
    """Val-split retrieval metrics (percent) of the current weights."""
    val = prepared.split("val")
    if val.n_images == 0:
        raise ValueError("the prepared dataset has no val images: model selection needs a val split")
    return split_metrics(model, prepared, val, tokenizer, model_cfg, train_cfg, ctx)


def tracked_test_split(prepared: PreparedDataset) -> SplitView:
    """The whole test split ``train.track_test`` scores (no leak exclusion: the papers score all of it)."""
    test = prepared.split("test")
    if test.n_images == 0 or test.n_texts == 0:
        raise ValueError("train.track_test: the prepared dataset has no test images or captions to score")
    return test


def tracked_test_scores(model: nn.Module, prepared: PreparedDataset, test: SplitView, tokenizer: Any,
                        model_cfg: ModelConfig, train_cfg: TrainConfig, ctx: DistContext) -> dict[str, float]:
    """``test_<key>`` columns of the current weights: reporting only, called after the selection step."""
    return {TEST_PREFIX + k: v for k, v in
            split_metrics(model, prepared, test, tokenizer, model_cfg, train_cfg, ctx).items()}


class _LossMeter:
    """Running sums of the loss terms kept on the device: no host sync until ``means``/``peek``."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def add(self, out: Mapping[str, torch.Tensor]) -> None:
        for key, value in out.items():
            if key.startswith("loss"):
                value = value.detach().float()
                self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {key: float(total) / max(1, self.steps) for key, total in self.sums.items()}

    def average_over_ranks(self, world_size: int) -> None:
        """train.local_loss: each rank summed its own share of every step's loss; the global-batch
        loss is their mean over the ranks (pir.models.losses), so the curves show the same value."""
        if world_size > 1 and self.sums:
            keys = list(self.sums)   # the model's order, the same on every rank
            stacked = torch.stack([self.sums[key] for key in keys])
            dist.all_reduce(stacked)
            self.sums = dict(zip(keys, stacked / world_size))


def forward_batch(model: nn.Module, batch: Mapping[str, torch.Tensor], device: torch.device,
                  local_loss: bool = False) -> dict[str, torch.Tensor]:
    """The model on a collated batch: uint8 images normalised on ``device``, the rest moved there."""
    return model(normalize_images(batch["images"], device, *image_stats(unwrap(model))),
                 batch["input_ids"].to(device, non_blocking=True),
                 batch["attention_mask"].to(device, non_blocking=True),
                 batch["image_ids"].to(device, non_blocking=True),
                 batch["labels"].to(device, non_blocking=True), local_loss=local_loss)


def train_step(model: nn.Module, batch: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer,
               device: torch.device, precision: str, cpu_bf16: bool = False,
               grad_clip: float = 0.0, local_loss: bool = False) -> dict[str, torch.Tensor]:
    """One optimizer step: forward under the precision context, backward, optional clipping, AdamW.

    Returns the model's outputs (losses still on the device: no host sync; with ``local_loss``
    this rank's share). The benchmark times this very function (pir_tools.bench.steps.make_step).
    """
    with precision_context(device, precision, cpu_bf16):
        out = forward_batch(model, batch, device, local_loss)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return out


def train_epoch(model: nn.Module, loader, optimizer, scheduler, train_cfg: TrainConfig, ctx: DistContext,
                epoch: int, desc: str) -> dict[str, float]:
    """One pass over the loader; mean losses, last lr, samples and wall time."""
    model.train()
    set_epoch(loader, epoch)
    meter = _LossMeter()
    samples = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not ctx.is_main, leave=False, dynamic_ncols=True)
    for step, batch in enumerate(bar, 1):
        out = train_step(model, batch, optimizer, ctx.device, train_cfg.precision, cpu_bf16=train_cfg.cpu_bf16,
                         grad_clip=train_cfg.grad_clip, local_loss=train_cfg.local_loss)
        scheduler.step()
        meter.add(out)
        samples += len(batch["image_ids"]) * ctx.world_size
        if step % train_cfg.log_interval == 0:   # the only host sync inside the epoch
            bar.set_postfix(loss=f"{float(meter.sums['loss']) / meter.steps:.4f}")
    if train_cfg.local_loss:
        meter.average_over_ranks(ctx.world_size)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    row = meter.means()
    if not math.isfinite(row.get("loss", 0.0)):
        raise FloatingPointError(f"epoch {epoch + 1}: training loss is {row['loss']} (lower train.lr?)")
    seconds = time.perf_counter() - start
    return {**row, "lr": float(scheduler.get_last_lr()[0]), "samples": float(samples),
            "epoch_seconds": seconds, "samples_per_s": samples / seconds if seconds else 0.0}


def _checkpoint_extra(epoch: int, params: Mapping[str, Any], val: Mapping[str, float],
                      model_key: str) -> dict[str, Any]:
    # No logger run id here: checkpoints must be byte-identical across reruns (dvc.lock); the pipeline
    # finds the run again through model_key.
    return {"epoch": epoch, "params": dict(params), "val_metrics": dict(val), "model_key": model_key}


def _copy_atomic(src: Path, dst: Path) -> None:
    with files.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _is_due(epoch: int, train_cfg: TrainConfig) -> bool:
    """Validate every eval_interval epochs, and always after the last one (so a best exists)."""
    return (epoch + 1) % max(1, train_cfg.eval_interval) == 0 or epoch + 1 == train_cfg.epochs


def train(model: nn.Module, prepared: PreparedDataset, tokenizer: Any, model_cfg: ModelConfig,
          train_cfg: TrainConfig, *, seed: int, state: TrainState, outputs: TrainOutputs,
          ctx: DistContext, params: Mapping[str, Any] | None = None, logger: EpochLogger | None = None,
          log: Callable[[str], None] = print, stream: ShardStream | None = None) -> TrainSummary:
    """Train ``model`` (resuming ``state`` when it holds completed epochs) and write best/last checkpoints.

    Rank 0 validates, logs and writes; other ranks only train. ``logger`` (optional) receives each epoch's
    row. ``stream``: the train pairs come from tar shards (pir.data.stream) instead of the prepared train split.
    """
    params = dict(params or {})
    run_id = logger.run_id if logger is not None else None
    loader = (stream_loader(stream, tokenizer, train_cfg, model_cfg, seed=seed, device=ctx.device, rank=ctx.rank,
                            world_size=ctx.world_size) if stream is not None else
              train_pairs_loader(prepared, prepared.split("train"), tokenizer, train_cfg, model_cfg, seed=seed,
                                 device=ctx.device, rank=ctx.rank, world_size=ctx.world_size))
    if len(loader) == 0:
        raise ValueError(f"train split has {len(loader.dataset)} pairs, fewer than one global batch of "
                         f"{train_cfg.global_batch_size}: lower train.global_batch_size")
    tracked_test = tracked_test_split(prepared) if train_cfg.track_test and ctx.is_main else None
    model.to(ctx.device)
    optimizer = make_optimizer(model, train_cfg)
    scheduler = make_scheduler(optimizer, train_cfg.epochs * len(loader), train_cfg)

    # rank 0's state on every rank: other nodes may not share the state folder (docs/scaling.md)
    saved = share_from_main(ctx, state.load() if ctx.is_main else None)
    start_epoch, curves, best = 0, [], {"epoch": 0, "val": {}}
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved["rng"], loader.generator)
        start_epoch, curves, best = int(saved["epoch"]), list(saved["curves"]), dict(saved["best"])
        if ctx.is_main:
            log(f"resuming from epoch {start_epoch} (of {train_cfg.epochs}; state {state.key})")

    step_model = model
    if ctx.distributed:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    if train_cfg.compile:
        step_model = torch.compile(step_model)

    for epoch in range(start_epoch, train_cfg.epochs):
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update(train_epoch(step_model, loader, optimizer, scheduler, train_cfg, ctx, epoch,
                               desc=f"epoch {epoch + 1}/{train_cfg.epochs}"))
        if ctx.is_main:
            if _is_due(epoch, train_cfg):
                val = validate(model, prepared, tokenizer, model_cfg, train_cfg, ctx)
                row.update({f"val_{k}": v for k, v in val.items()})
                if not best["val"] or val[SELECTION_METRIC] > best["val"][SELECTION_METRIC]:
                    best = {"epoch": epoch + 1, "val": val}
                    save_checkpoint(state.best_path, unwrap(model), model_cfg,
                                    **_checkpoint_extra(epoch + 1, params, val, state.key))
                if tracked_test is not None:   # after selection, so it can never take part in it
                    row.update(tracked_test_scores(model, prepared, tracked_test, tokenizer, model_cfg, train_cfg, ctx))
            curves.append(row)
            log(_epoch_line(row, best["epoch"]))
            if logger is not None:
                logger.log_epoch(row, step=epoch + 1)
            state.save({"epoch": epoch + 1, "model": unwrap(model).state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": capture_rng(loader.generator), "curves": curves, "best": best,
                        "logger_run_id": run_id})
        barrier(ctx)

    if ctx.is_main:
        save_checkpoint(outputs.last, unwrap(model), model_cfg,
                        **_checkpoint_extra(train_cfg.epochs, params, _val_of(curves[-1]) if curves else {},
                                          state.key))
        _copy_atomic(state.best_path, outputs.best)
    barrier(ctx)
    return TrainSummary(best_epoch=int(best["epoch"]), best_val=dict(best["val"]), curves=curves,
                        resumed_from=start_epoch)


def zero_shot(model: nn.Module, prepared: PreparedDataset, tokenizer: Any, model_cfg: ModelConfig,
              train_cfg: TrainConfig, *, state: TrainState, outputs: TrainOutputs, ctx: DistContext,
              params: Mapping[str, Any] | None = None, log: Callable[[str], None] = print) -> TrainSummary:
    """``train.epochs: 0``: validate the starting weights once and write them as the best and last
    checkpoints (epoch 0), so that evaluate and analyze run on them unchanged."""
    model.to(ctx.device)
    best_val: dict[str, float] = {}
    if ctx.is_main:
        best_val = validate(model, prepared, tokenizer, model_cfg, train_cfg, ctx)
        extra = _checkpoint_extra(0, dict(params or {}), best_val, state.key)
        save_checkpoint(outputs.best, unwrap(model), model_cfg, **extra)
        save_checkpoint(outputs.last, unwrap(model), model_cfg, **extra)
        log(f"zero-shot: no training (train.epochs = 0); val r_mean {best_val[SELECTION_METRIC]:.2f}")
    barrier(ctx)
    return TrainSummary(best_epoch=0, best_val=best_val, curves=[], resumed_from=0)


def _val_of(row: Mapping[str, Any]) -> dict[str, float]:
    return {k[4:]: v for k, v in row.items() if k.startswith("val_")}


def _epoch_line(row: Mapping[str, Any], best_epoch: int) -> str:
    val = f" val r_mean {row['val_r_mean']:.2f}" if "val_r_mean" in row else ""
    val += f" (test {row[TEST_PREFIX + 'r_mean']:.2f}, not used)" if TEST_PREFIX + "r_mean" in row else ""
    return (f"epoch {row['epoch']}: loss {row['loss']:.4f} lr {row['lr']:.2e}{val} "
            f"({row['epoch_seconds']:.1f}s, {row['samples_per_s']:.1f} samples/s; best epoch {best_epoch})")


# Wall-clock columns vary run to run: given to the EpochLogger, kept out of the curves CSV.
TIMING_KEYS = ("epoch_seconds", "samples_per_s")


def write_curves_csv(path: str | Path, curves: list[Mapping[str, Any]]) -> None:
    """reports/train_curves.csv: one row per epoch, a column per key seen in any epoch (blank if absent)."""
    columns: list[str] = []
    for row in curves:
        columns += [k for k in row if k not in columns and k not in TIMING_KEYS]
    lines = [",".join(columns)]
    for row in curves:
        lines.append(",".join("" if k not in row else _csv_value(row[k]) for k in columns))
    files.write_text(path, "\n".join(lines) + "\n")


def _csv_value(value: Any) -> str:
    return format(value, ".8g") if isinstance(value, float) else str(value)
