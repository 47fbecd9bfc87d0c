"""The ``train`` stage's configuration (``TrainConfig``)."""

from __future__ import annotations

from dataclasses import dataclass

from pir.config.runtime import DEVICES, PRECISIONS
from pir.config.values import check, check_choice, recipe

SCHEDULES = ("linear", "cosine")   # learning-rate decay after the warm-up (docs/recipes-and-data.md, "How a run's values are resolved")


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` stage: the recipe (AdamW, warm-up + linear or cosine decay, augmentations) and runtime.

    ``recipe(...)`` fields: the recipes set them, and the default is the ``cpu`` recipe's (pir.config.values.recipe);
    the released values, with their sources, are in recipes/paper.yaml."""
    # optimisation
    lr: float = recipe(5e-4)                   # cpu: a from-scratch tiny model; the paper fine-tunes at 6e-5
    weight_decay: float = recipe(0.01)         # not applied to biases and norm weights
    betas: tuple[float, float] = recipe((0.9, 0.98))
    eps: float = recipe(1e-8)
    warmup_fraction: float = recipe(0.1)       # of all steps (used when warmup_steps is 0), then decay to 0
    warmup_steps: int = recipe(0)              # > 0: warm-up length in optimizer steps, wins over warmup_fraction
    schedule: str = recipe("linear")           # decay to 0 after the warm-up: linear (released PIR) | cosine
                                               # (open_clip's cosine_lr)
    epochs: int = recipe(8)                    # 0 = zero-shot (CLIP presets only): the starting weights become
                                               # the checkpoint
    global_batch_size: int = recipe(64)        # pairs per optimizer step over all processes; split evenly over the
                                               # GPUs in use, and the losses gather the whole of it (paper: 2 GPUs
                                               # x 128 = 256)
    pairs_per_image: int = recipe(1)           # captions per image per epoch (0 = every caption, the released
                                               # recipe; k > 0 cycles through each image's captions, k per epoch)
    grad_clip: float = recipe(0.0)             # max global gradient L2 norm (after the DDP all-reduce); 0 = off
    local_loss: bool = False        # each rank scores only its own rows against the gathered batch (open_clip's
                                    # local_loss): O(local x global) loss memory, the same gradients
                                    # (docs/scaling.md, "Training on many GPUs and nodes")
    # train-time augmentation (docs/recipes-and-data.md, "Augmentation")
    crop_scale: tuple[float, float] = recipe((0.5, 1.0))
    hflip: bool = recipe(True)
    randaug_ops: int = recipe(2)
    randaug_magnitude: int = recipe(7)
    # runtime
    device: str = "auto"            # auto | cpu | cuda
    precision: str = recipe("bf16")            # bf16 | fp32; bf16 autocast on CUDA, on CPU only with cpu_bf16
    cpu_bf16: bool = False
    max_gpus: int = 0               # 0 = every visible GPU
    eval_interval: int = 1          # validate (and maybe select) every N epochs
    track_test: bool = False        # also score test after each validation, for reporting only (never selects;
                                    # docs/evaluation.md, "Comparing with published numbers")
    num_workers: int = -1           # DataLoader worker processes; -1 = auto (0 on CPU, up to 8 beside a GPU)
    compile: bool = False           # torch.compile the model
    log_interval: int = 20          # steps between host syncs for logging

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        check(all(0 <= b < 1 for b in self.betas), "betas", list(self.betas), "two values in [0, 1)")
        check(self.eps > 0, "eps", self.eps, "must be > 0")
        check(0 <= self.warmup_fraction <= 1, "warmup_fraction", self.warmup_fraction, "must be in [0, 1]")
        check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0 (0 = use warmup_fraction)")
        check_choice("schedule", self.schedule, SCHEDULES)
        check(self.epochs >= 0, "epochs", self.epochs, "must be >= 1, or 0 (CLIP presets) for zero-shot")
        check(self.global_batch_size >= 1, "global_batch_size", self.global_batch_size, "must be >= 1")
        check(0 <= self.pairs_per_image <= 100, "pairs_per_image", self.pairs_per_image,
              "must be in [0, 100] (0 = every caption each epoch; the datasets have 5 an image)")
        check(self.grad_clip >= 0, "grad_clip", self.grad_clip, "must be >= 0 (0 = off)")
        check(0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, "crop_scale", list(self.crop_scale),
              "two fractions with 0 < low <= high <= 1")
        check(self.randaug_ops >= 0, "randaug_ops", self.randaug_ops, "must be >= 0")
        check(0 <= self.randaug_magnitude <= 10, "randaug_magnitude", self.randaug_magnitude, "must be in [0, 10]")
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check(self.max_gpus >= 0, "max_gpus", self.max_gpus, "must be >= 0 (0 = every visible GPU)")
        check(self.eval_interval >= 1, "eval_interval", self.eval_interval, "must be >= 1")
        check(self.num_workers >= -1, "num_workers", self.num_workers, "must be >= 0, or -1 for auto")
        check(self.log_interval >= 1, "log_interval", self.log_interval, "must be >= 1")

    def per_process_batch(self, world_size: int) -> int:
        """Pairs each process steps on: the global batch split evenly over ``world_size`` processes."""
        if self.global_batch_size % world_size:
            raise ValueError(f"train.global_batch_size = {self.global_batch_size} does not split evenly over "
                             f"{world_size} processes (GPUs); use a multiple of {world_size} or set train.max_gpus")
        return self.global_batch_size // world_size
