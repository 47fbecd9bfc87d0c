"""Two torchrun "nodes" on loopback against one process: the check behind docs/scaling.md's numbers.

    python scripts/torchrun_nodes.py [--keep]

Builds three copies of this project in a temp folder (stages/ and a params.yaml: CLIP tiny without
dropout or VIR, so a DDP step and a one-process step see the same numbers, 2 epochs, a global batch
of 32, CPU, one thread per process), runs the fetch stage once and copies data/fetch into each, then
runs the train stage
  1. as one process,
  2. as two torchrun invocations, --nnodes 2 --nproc-per-node 1 each, c10d rendezvous on
     127.0.0.1 and a free port, each node in its own copy (nothing shared but the network),
  3. the same with train.local_loss=true.
It prints one JSON object: every run's curves, the largest relative difference of the per-epoch
losses and validation scores from the one-process run, which copy global rank 0 wrote into, and
whether the other copy was left untouched. Takes about 75 s on 2 cores. tests/training/
test_torchrun_nodes.py checks the same on a smaller scale in the test suite.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPARED = ("loss", "loss_contrastive", "loss_affiliation", "val_r_mean")


def make_project(folder: Path, local_loss: bool = False) -> Path:
    shutil.copytree(ROOT / "stages", folder / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthetic"].update(images=400, planted_duplicates=0)
    params["model"].update(preset="clip-tiny", use_vir=False, dropout=0.0)
    params["train"].update(epochs=2, global_batch_size=32, pairs_per_image=1, device="cpu", precision="fp32",
                           num_workers=0, local_loss=local_loss)
    params["runtime"]["threads"] = 1
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def run(cmd: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DVC_ROOT"}   # each copy is its own repository
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, what: str) -> None:
    output, _ = proc.communicate()
    if proc.returncode:
        sys.exit(f"{what} failed:\n{output[-4000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def curves(folder: Path) -> list[dict[str, float]]:
    with open(folder / "reports" / "train_curves.csv") as f:
        return [{k: float(v) for k, v in row.items() if k in COMPARED} for row in csv.DictReader(f)]


def two_nodes(work: Path, name: str, fetch: Path, local_loss: bool) -> dict:
    """Two torchrun agents, one worker each, each in its own project copy."""
    nodes = [make_project(work / f"{name}-node{r}", local_loss) for r in range(2)]
    for node in nodes:
        shutil.copytree(fetch, node / "data" / "fetch")
    before = [tree(node) for node in nodes]
    port, start = free_port(), time.perf_counter()
    procs = [run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(r),
                  "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                  "--rdzv-id", name, "stages/train.py"], nodes[r]) for r in range(2)]
    for r, proc in enumerate(procs):
        finish(proc, f"{name} node {r}")
    # c10d orders the agents by host name, then process id: rank 0 is not --node-rank 0 (docs/scaling.md)
    wrote = [r for r, node in enumerate(nodes) if (node / "reports" / "train.json").is_file()]
    assert len(wrote) == 1, wrote
    other = 1 - wrote[0]
    report = json.loads((nodes[wrote[0]] / "reports" / "train.json").read_text())
    return {"seconds": round(time.perf_counter() - start, 1), "rank0_copy": f"node{wrote[0]}",
            "other_copy_untouched": tree(nodes[other]) == before[other],
            "world_size": report["world_size"], "nnodes": report["nnodes"], "curves": curves(nodes[wrote[0]])}


def largest_relative_difference(got: list[dict], want: list[dict]) -> float:
    return max(abs(g[k] - w[k]) / abs(w[k]) for g, w in zip(got, want) for k in w if w[k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pir-torchrun-"))
    try:
        single = make_project(work / "single")
        finish(run([sys.executable, "stages/fetch.py"], single), "fetch")
        start = time.perf_counter()
        finish(run([sys.executable, "stages/train.py"], single), "one-process train")
        result = {"one_process": {"seconds": round(time.perf_counter() - start, 1), "curves": curves(single)}}
        for name, local_loss in (("two_nodes", False), ("two_nodes_local_loss", True)):
            result[name] = two_nodes(work, name, single / "data" / "fetch", local_loss)
            result[name]["largest_relative_difference"] = largest_relative_difference(
                result[name]["curves"], result["one_process"]["curves"])
        result["folder"] = str(work) if args.keep else None
        print(json.dumps(result, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
