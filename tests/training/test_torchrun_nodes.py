"""The train stage as torchrun starts it on two nodes, each with its own copy of the project (no shared
filesystem): two real gloo processes on loopback, each given the environment torchrun gives a worker
(RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_WORLD_SIZE, MASTER_ADDR/PORT) and running the
stage scripts' entry point. Forked rather than started through torchrun itself: two fresh interpreters
importing the stage take ~12 s on 2 cores. scripts/torchrun_nodes.py runs the real torchrun, c10d
rendezvous included (docs/scaling.md, "Training on many GPUs and nodes")."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import sqlite3
import tempfile
from pathlib import Path

import pytest
import torch.multiprocessing as mp
import yaml

import pir.pipeline.train as train_stage
from pir.pipeline.entry import main
from tests.prepared_fixture import make_prepared

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ramdisk(monkeypatch):
    """A folder in memory where there is one: a fresh MLflow store runs ~50 schema migrations that each
    sync to disk (6 s on this disk, 1 s in memory), and the checkpoints sync too."""
    monkeypatch.delenv("DVC_ROOT", raising=False)       # every project folder is its own repository
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as folder:
        yield Path(folder)


def _project(root: Path, fetch: Path) -> Path:
    """A project folder: params.yaml and data/fetch. CLIP tiny without dropout or VIR: DDP and one process
    then compute the same numbers (dropout, BERT's own too, draws other masks on each rank)."""
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["model"].update(preset="clip-tiny", use_vir=False, dropout=0.0)
    params["train"].update(epochs=1, global_batch_size=4, pairs_per_image=1, device="cpu", precision="fp32",
                           num_workers=0)
    params["runtime"]["threads"] = 1
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(fetch, root / "data" / "fetch")
    return root


def _node(rank: int, roots: list[Path], port: int) -> None:
    """One torchrun worker: global rank ``rank`` of 2, the only process (local rank 0) of node ``rank``."""
    os.environ.update(RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2", LOCAL_WORLD_SIZE="1", GROUP_RANK=str(rank),
                      GROUP_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        main(train_stage, roots[rank])
        outcome = ""
    except SystemExit as exc:
        outcome = str(exc.code)
    (roots[rank].parent / f"outcome{rank}.txt").write_text(outcome)


def _two_nodes(roots: list[Path]) -> list[str]:
    """Each rank's one-line exit message ("" on success)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # fork: the ranks inherit the imported stage and MLflow (a fresh interpreter imports them for seconds)
    mp.start_processes(_node, args=(roots, port), nprocs=2, start_method="fork")
    return [(roots[r].parent / f"outcome{r}.txt").read_text() for r in range(2)]


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


def _epoch_loss(root: Path) -> float:
    with open(root / "reports" / "train_curves.csv") as f:
        return float(next(csv.DictReader(f))["loss"])


def test_two_nodes_train_like_one_process_and_only_rank_0_writes(ramdisk):
    fetch = ramdisk / "fetch"   # 12 train images: 3 steps of 4 pairs
    make_prepared(fetch, images=24, image_size=32, classes=3, captions_per_image=2, split=(0.5, 0.25, 0.25),
                  vocab_size=120)
    single, node0, node1 = (_project(ramdisk / name, fetch) for name in ("single", "node0", "node1"))
    # first, so that the forked ranks inherit every module the stage imports on its way
    assert main(train_stage, single) is None
    assert json.loads((single / "reports" / "train.json").read_text())["nnodes"] == 1

    # node 1 without the prepared dataset: both ranks stop with the same line naming it, before any work
    (node1 / "data" / "fetch" / "dataset.json").rename(ramdisk / "dataset.json")
    outcomes = _two_nodes([node0, node1])
    assert outcomes[0] == outcomes[1] and "\n" not in outcomes[0]
    assert "train: rank 1 of 2 (host " in outcomes[0] and "dataset.json: prepared dataset not found" in outcomes[0]
    (ramdisk / "dataset.json").rename(node1 / "data" / "fetch" / "dataset.json")

    before = _tree(node1)
    assert _two_nodes([node0, node1]) == ["", ""]
    assert _tree(node1) == before                      # rank 1 wrote nothing into its project
    report = json.loads((node0 / "reports" / "train.json").read_text())
    assert (report["world_size"], report["nnodes"]) == (2, 2)
    with sqlite3.connect(node0 / "mlflow.db") as db:
        tags = dict(db.execute("select key, value from tags where key like 'runtime.train.%'").fetchall())
    assert (tags["runtime.train.world_size"], tags["runtime.train.nnodes"]) == ("2", "2")
    # the same global batches, gathered: the one-process epoch loss up to float reduction order (measured:
    # equal to the 8 digits the curves keep, loss terms 2e-7 apart; scripts/torchrun_nodes.py: 1.2e-7)
    assert abs(_epoch_loss(node0) - _epoch_loss(single)) <= 1e-5 * abs(_epoch_loss(single))
