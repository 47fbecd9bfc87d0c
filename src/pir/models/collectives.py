"""Collectives the model's losses use (gathers across DDP ranks); process setup is ``pir.training.launch``.

Everything degrades to the single-process case when no process group is
initialised, so library code can call these unconditionally.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True when a default process group is up (torchrun / DDP)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient into the local slice.

    Each rank computes the same global-batch loss L. The gradient of L with
    respect to this rank's features therefore arrives on every rank; summing
    them (all_reduce) and DDP's later averaging of parameter gradients gives
    exactly the single-process gradient of L. (Returning only the local slice
    without the sum, as the official code does, yields 1/world_size of it for
    every parameter except the temperatures.) all_reduce + slice is used
    instead of reduce_scatter because gloo (CPU) has no reduce_scatter.

    The same backward serves ``train.local_loss``, where rank r computes only its
    share L_r of the loss, with L = mean_r L_r (pir.models.losses). Rank s's
    features e_s reach every L_r through the gather (and its own L_s also
    directly), so the sum over ranks hands rank s the gradient of sum_r L_r =
    W * L with respect to e_s; DDP's 1/W average then gives dL/dtheta for every
    parameter, the temperatures included (each rank holds dL_r/dtau, averaged).
    This is open_clip's gather_with_grad (its all_gather backward is a
    reduce_scatter sum) with local_loss.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, rank_: int, world_size_: int) -> torch.Tensor:
        ctx.rank, ctx.batch = rank_, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world_size_)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start:start + ctx.batch], None, None


def all_gather_with_grad(tensor: torch.Tensor, rank_: int, world_size_: int) -> torch.Tensor:
    """Concatenate ``tensor`` [B, ...] from every rank in rank order; gradients flow back.

    Every rank must hold the same local batch size (DistributedSampler ensures it).
    """
    if world_size_ == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor, rank_, world_size_)


def all_gather_no_grad(tensor: torch.Tensor, world_size_: int) -> torch.Tensor:
    """Concatenate ``tensor`` [B, ...] from every rank (ids, labels: no gradient)."""
    if world_size_ == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size_)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, 0)
