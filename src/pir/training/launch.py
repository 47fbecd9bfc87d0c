"""Launching: GPU count, torchrun re-launch, process group life cycle (trainer side).

The collectives the losses use (all-gather with gradients) live model-side, in
``pir.models.collectives``; device choice and precision in ``pir.device``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pir.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process trains: its device and its place among the ranks."""
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1



def gpus_to_use(preference: str = "auto", max_gpus: int = 0) -> int:
    """How many GPUs one run uses: every visible one (``max_gpus`` caps it, 0 = no cap); 0 on CPU."""
    if resolve_device(preference).type != "cuda":
        return 0
    count = torch.cuda.device_count()
    return min(count, max_gpus) if max_gpus > 0 else count


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def torchrun_command(script: str, nproc: int, args: list[str] | None = None) -> list[str]:
    """argv that re-runs ``script`` with ``nproc`` processes on this node (torch.distributed.run)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            script, *(args or [])]


def relaunch_under_torchrun(nproc: int) -> None:
    """Replace this process by its own command line run under torchrun with ``nproc`` ranks (never returns)."""
    print(f"train: {nproc} GPUs -> re-running under torchrun (DDP)", flush=True)
    os.execv(sys.executable, torchrun_command(sys.argv[0], nproc, sys.argv[1:]))


def setup(preference: str = "auto", backend: str | None = None, init_method: str | None = None,
          rank: int | None = None, world_size: int | None = None) -> DistContext:
    """Join the process group when launched by torchrun (or given rank/world_size), else single process.

    CUDA ranks use NCCL on ``cuda:LOCAL_RANK``; CPU ranks use gloo.
    """
    device = resolve_device(preference)
    if rank is None and not under_torchrun():
        return DistContext(device)
    rank = int(os.environ["RANK"]) if rank is None else rank
    world_size = int(os.environ["WORLD_SIZE"]) if world_size is None else world_size
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size)
    return DistContext(device, rank, world_size, local_rank)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
