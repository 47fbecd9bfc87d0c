"""Launching: GPU count, torchrun re-launch, process group life cycle (trainer side).

Two ways in (docs/scaling.md, "Training on many GPUs and nodes"): the train stage re-runs itself
under ``torchrun --standalone`` when one node has several GPUs, or the user starts it under
torchrun on N nodes. Either way the global rank (``RANK``) decides who writes (rank 0 alone),
the local rank (``LOCAL_RANK``) which GPU a process uses.

The collectives the losses use (all-gather with gradients) live model-side, in
``pir.models.collectives``; device choice and precision in ``pir.device``.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from pir.device import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process trains: its device and its place among the ranks."""
    device: torch.device
    rank: int = 0          # global: 0 alone writes outputs, reports, checkpoints, train state and MLflow
    world_size: int = 1
    local_rank: int = 0    # on this node: the GPU index
    nnodes: int = 1

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


def planned_world_size(gpus: int) -> int:
    """Processes the run will have: torchrun's WORLD_SIZE under torchrun, else one per GPU used (at least 1)."""
    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else max(1, gpus)


def node_count(world_size: int) -> int:
    """Nodes of a torchrun job: GROUP_WORLD_SIZE (torchrun's agents), else world / LOCAL_WORLD_SIZE."""
    if "GROUP_WORLD_SIZE" in os.environ:
        return int(os.environ["GROUP_WORLD_SIZE"])
    return max(1, world_size // int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))


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
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} on {socket.gethostname()}, which has "
                             f"{torch.cuda.device_count()} GPUs: give torchrun --nproc-per-node at most that")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size)
    return DistContext(device, rank, world_size, local_rank, node_count(world_size))


def gather_objects(ctx: DistContext, value: T) -> list[T]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not ctx.distributed:
        return [value]
    values: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def share_from_main(ctx: DistContext, value: T) -> T:
    """Rank 0's ``value`` on every rank: other nodes may not see rank 0's files (a resume's train state)."""
    if not ctx.distributed:
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
