"""The trainer's DDP path on CPU: 2 gloo processes train (gradient clipping on), gather losses, and end
with identical weights."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp

from pir.config import TrainConfig
from pir.files import load_torch
from pir.models import create_model
from pir.training import launch
from pir.training.state import TrainState
from pir.training.trainer import TrainOutputs, train

WORLD = 2


def _rank_main(rank: int, tmp_path, tiny_data, cfg) -> None:
    torch.set_num_threads(1)
    ctx = launch.setup("cpu", backend="gloo", init_method=f"file://{tmp_path / 'rendezvous'}",
                            rank=rank, world_size=WORLD)
    try:
        prepared, tokenizer = tiny_data
        torch.manual_seed(0)                     # same init on every rank (DDP also broadcasts rank 0's)
        model = create_model(cfg)
        if rank == 0:
            torch.save({k: v.clone() for k, v in model.state_dict().items()}, tmp_path / "init.pt")
        # grad_clip: clipping runs on the all-reduced gradients, so it must keep the ranks in step
        train_cfg = TrainConfig(epochs=1, global_batch_size=8, lr=1e-3, num_workers=0, precision="fp32",
                                grad_clip=0.05, pairs_per_image=0)   # every caption: the sample count below
        summary = train(model, prepared, tokenizer, cfg, train_cfg, seed=0, state=TrainState(tmp_path / "state", "k"),
                        outputs=TrainOutputs(tmp_path / "best.pt", tmp_path / "last.pt"), ctx=ctx)
        torch.save({"model": model.state_dict(), "samples": summary.curves[0]["samples"] if summary.curves else 0},
                   tmp_path / f"rank{rank}.pt")
    finally:
        launch.teardown()


def test_ddp_gloo_two_processes_agree_on_weights(tmp_path, tiny_data, tiny_model_cfg):
    mp.start_processes(_rank_main, args=(tmp_path, tiny_data, tiny_model_cfg), nprocs=WORLD, start_method="fork")
    rank0, rank1 = (load_torch(tmp_path / f"rank{r}.pt") for r in range(WORLD))
    initial = load_torch(tmp_path / "init.pt")
    assert all(torch.equal(rank0["model"][k], rank1["model"][k]) for k in rank0["model"])
    assert any(not torch.equal(rank0["model"][k], initial[k]) for k in initial)   # it did train
    # rank 0 alone wrote the outputs; its sample count covers both ranks' batches
    pairs = tiny_data[0].split("train").n_texts
    assert (tmp_path / "last.pt").is_file() and rank0["samples"] == pairs // (WORLD * 4) * 4 * WORLD
