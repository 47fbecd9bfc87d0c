"""DDP on CPU (gloo, 2 processes): loss and gradients equal one process on the same global batch,
with every rank computing the whole loss and with ``local_loss`` (each rank scores its own rows)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pir.config import model_config
from pir.models import create_model, losses
from tests.models.model_helpers import random_batch

WORLD = 2

# name: (model config, local_loss). PIR tiny with the affiliation loss, whole and local; CLIP tiny
# local, its contrastive temperature open_clip's logit_scale.
CASES = {"full": (model_config("tiny"), False), "local": (model_config("tiny"), True),
         "clip_local": (model_config("clip-tiny"), True)}


def build(cfg):
    torch.manual_seed(0)
    return create_model(cfg).eval()                  # eval: no dropout, same numbers on both sides


def global_batch(cfg):
    images, input_ids, mask, _, _ = random_batch(cfg, batch=6)
    image_ids = torch.tensor([0, 1, 2, 0, 1, 3])       # positives cross the rank boundary
    labels = torch.tensor([1, -1, 0, 1, 1, 0])          # one unknown scene: 2 known on rank 0, 3 on rank 1
    return images, input_ids, mask, image_ids, labels


def _worker(rank: int, store_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=WORLD)
    try:
        for name, (cfg, local_loss) in CASES.items():
            model = build(cfg)
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            out = ddp(*[t.chunk(WORLD)[rank] for t in global_batch(cfg)], local_loss=local_loss)
            out["loss"].backward()
            grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            torch.save({"losses": {k: v.detach() for k, v in out.items()}, "grads": grads},
                       f"{out_dir}/{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_loss_and_gradients_equal_single_process(tmp_path):
    # fork: the children inherit the imported libraries (spawn would re-import torch, timm and
    # transformers per process, ~10 s on a busy machine); torch threads are 1 (conftest), fork-safe
    mp.start_processes(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="fork")

    for name, (cfg, local_loss) in CASES.items():
        model = build(cfg)
        out = model(*global_batch(cfg))
        out["loss"].backward()
        ranks = [torch.load(tmp_path / f"{name}-rank{r}.pt", weights_only=True) for r in range(WORLD)]
        assert all(set(result["losses"]) == {"loss", "loss_contrastive", "loss_affiliation"} for result in ranks)
        for key, whole in out.items():
            values = [result["losses"][key] for result in ranks]
            # every rank the whole loss; with local_loss each rank its share, their mean the whole loss
            for value in ([torch.stack(values).mean()] if local_loss else values):
                torch.testing.assert_close(value, whole.detach(), atol=1e-6, rtol=1e-5, msg=f"{name} {key}")
        if local_loss:   # the shares differ: each rank scored only its own rows
            assert abs(float(ranks[0]["losses"]["loss"] - ranks[1]["losses"]["loss"])) > 1e-3
        # DDP's averaged gradients are the single process's, to float32 noise: measured at most 5e-7 of
        # the largest gradient entry for the whole and the local loss alike; allowed 1e-6 of it
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        atol = 1e-6 * max(float(g.abs().max()) for g in grads.values())
        for result in ranks:
            assert set(result["grads"]) == set(grads), name
            for param, grad in grads.items():
                torch.testing.assert_close(result["grads"][param], grad, atol=atol, rtol=1e-4,
                                           msg=lambda m, n=f"{name} {param}": f"{n}: {m}")


def test_local_shares_average_to_the_whole_loss_for_every_term():
    """In float64, without processes: the mean over 3 ranks' shares (rows) is the whole-batch value and
    gradient of each loss, unknown scenes and summed triplet terms included."""
    gen = torch.Generator().manual_seed(0)
    images, texts = (torch.nn.functional.normalize(torch.randn(12, 8, generator=gen, dtype=torch.float64), dim=1)
                     .requires_grad_() for _ in range(2))
    temp = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 7])
    labels = torch.tensor([1, 1, 0, -1, -1, 2, 0, 1, 1, -1, 3, 3])
    unknown = torch.full_like(labels, -1)
    # "+ 0 * temp": every term's graph reaches the three inputs, so one autograd.grad call fits all
    terms = {"contrastive": lambda rows: losses.contrastive_loss(images, texts, ids, temp, rows),
             "affiliation": lambda rows: losses.affiliation_loss(images, texts, labels, temp, rows),
             "no scene known": lambda rows: losses.affiliation_loss(images, texts, unknown, temp, rows),
             "triplet": lambda rows: losses.triplet_loss(images, texts, ids, 0.2, False, rows) + 0 * temp,
             "hardest triplet": lambda rows: losses.triplet_loss(images, texts, ids, 0.2, True, rows) + 0 * temp}
    for name, term in terms.items():
        whole = term(None)
        shares = torch.stack([term(losses.local_rows(rank, 4)) for rank in range(3)]).mean()
        torch.testing.assert_close(shares, whole, atol=1e-12, rtol=1e-12, msg=name)
        for got, want in zip(torch.autograd.grad(shares, (images, texts, temp)),
                             torch.autograd.grad(whole, (images, texts, temp))):
            torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12, msg=name)
