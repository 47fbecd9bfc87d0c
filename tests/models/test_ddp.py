"""DDP on CPU (gloo, 2 processes): loss and gradients equal one process on the same global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.models.model_helpers import build_tiny, random_batch

WORLD = 2


def global_batch(cfg):
    images, input_ids, mask, _, _ = random_batch(cfg, batch=6)
    image_ids = torch.tensor([0, 1, 2, 0, 1, 3])       # positives cross the rank boundary
    labels = torch.tensor([1, -1, 0, 1, 1, 0])          # one unknown scene
    return images, input_ids, mask, image_ids, labels


def _worker(rank: int, store_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=WORLD)
    try:
        model = build_tiny(seed=0).eval()                # eval: no dropout, same numbers on both sides
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        batch = global_batch(model.cfg)
        local = [t.chunk(WORLD)[rank] for t in batch]
        out = ddp(*local)
        out["loss"].backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        torch.save({"losses": {k: v.detach() for k, v in out.items()}, "grads": grads}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_loss_and_gradients_equal_single_process(tmp_path):
    # fork: the children inherit the imported libraries (spawn would re-import torch, timm and
    # transformers per process, ~10 s on a busy machine); torch threads are 1 (conftest), fork-safe
    mp.start_processes(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="fork")

    model = build_tiny(seed=0).eval()
    out = model(*global_batch(model.cfg))
    out["loss"].backward()
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert set(result["losses"]) == {"loss", "loss_contrastive", "loss_affiliation"}
        for key, value in result["losses"].items():
            torch.testing.assert_close(value, out[key].detach(), atol=1e-6, rtol=1e-5)
        for name, param in model.named_parameters():
            if param.requires_grad:
                torch.testing.assert_close(result["grads"][name], param.grad, atol=1e-6, rtol=1e-4,
                                           msg=lambda m, n=name: f"{n}: {m}")
