"""``pir index`` over several processes (torchrun): the files to embed shared out, one writer.

docs/scaling.md, "Distributed indexing". Rank 0 alone touches the index folder, as one process would
(pir.search.folder: ownership check, lock, generation, publish): it reads the previous generation, lists
and hashes SOURCE (the incremental plan), and writes the one new generation. The files to embed go out
in steps: each step rank 0 scatters to every rank a share of the next files (root-relative path,
sha256, and the window of a scene indexed with --tile), every rank reads and embeds its share on its own
device, and the vectors, image sizes, unreadable reasons and thumbnail JPEGs come back to rank 0
(gather), which puts each at its row. So the
generation is the one a single process writes, and rank 0 holds one step in memory, never the run.

The other ranks never open the index folder (it need not exist on their node); they read SOURCE
themselves, at the path the command line gives, so it must be the same folder on every node.
"""

from __future__ import annotations

import contextlib
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from pir import files
from pir.errors import first_line
from pir.search.encoder import Encoder
from pir.data.geo import is_geotiff_name
from pir.search.index import _Batch, _embed_batch, _save_thumbnail, _take, _work, unique
from pir.search.plan import Plan
from pir.training.launch import DistContext, under_torchrun

# How long a rank waits in one collective. Rank 0 lists and hashes SOURCE (a first build hashes every
# file) and may wait for another writer's lock while the others wait for their first share: torch's
# 30-minute default would end a large first build. A rank that dies is torchrun's to handle: it stops
# the others at once.
PATIENCE = timedelta(hours=24)


def join(device: str = "cpu") -> DistContext | None:
    """This process's place among torchrun's ranks (joined to the process group), on ``cuda:LOCAL_RANK``
    for ``device="cuda"``; None without torchrun or with one process, where nothing changes.

    gloo on GPUs too: what crosses processes lives on the CPU (vectors come back from the encoder as
    numpy, thumbnails and file rows are bytes) and ends on rank 0's disk; NCCL moves GPU tensors only,
    so it would add a copy to the GPU and back for each message (docs/scaling.md)."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) < 2:
        return None
    local = int(os.environ["LOCAL_RANK"])
    place = torch.device("cuda", local) if device == "cuda" else torch.device(device)
    if place.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"--device cuda takes one GPU per process: local rank {local} has none "
                             f"({torch.cuda.device_count()} visible on this node)")
        torch.cuda.set_device(place)
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=PATIENCE)
    return DistContext(place, dist.get_rank(), dist.get_world_size(), local)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _source_problem(source: Path) -> str:
    if source.is_dir() or (source.is_file() and is_geotiff_name(source)):   # a folder, or one scene (--tile)
        return ""
    return "not a folder" if source.exists() else "not found"


def check_ranks(ranks: DistContext, source: str | os.PathLike, encoder: Encoder) -> None:
    """Before rank 0 takes the index: every rank finds SOURCE a folder at the path given and loaded the
    same checkpoint bytes. Otherwise the same ValueError on every rank, naming the first one that differs
    and its host (a node without the shared folder, or with another checkpoint under the same name)."""
    source = Path(source)
    mine = (socket.gethostname(), _source_problem(source),
            files.sha256_path(encoder.source) if encoder.source is not None else "")
    everyone: list = [None] * ranks.world_size
    dist.all_gather_object(everyone, mine)
    for rank, (host, problem, checkpoint) in enumerate(everyone):
        if problem:
            raise ValueError(f"{source}: {problem} on rank {rank} ({host}); under torchrun every rank reads "
                             "SOURCE itself: a folder at this path on every node (extract an archive there first)")
        if checkpoint != everyone[0][2]:
            raise ValueError(f"{encoder.source}: rank {rank} ({host}) loaded other checkpoint bytes than rank 0 "
                             f"({everyone[0][0]}); every node must have the same checkpoint at that path")


@dataclass(frozen=True)
class _Stop:
    """Rank 0's last message: "" when the work is done, else why rank 0 stopped."""
    reason: str = ""


class Leader:
    """Rank 0's side of the exchange: ``embed_new`` is what build_index takes to share the work out."""

    def __init__(self, ranks: DistContext):
        self.ranks = ranks
        self.waiting = True      # the other ranks wait for their next message (not embedding, not sending)

    def _send(self, messages: list) -> None:
        dist.scatter_object_list([None], messages, src=0)
        self.waiting = False

    def _collect(self, own: _Batch) -> list[_Batch]:
        batches: list = [None] * self.ranks.world_size
        dist.gather_object(own, batches, dst=0)
        self.waiting = True
        return batches

    def stop(self, reason: str = "") -> None:
        """Tell the other ranks to return (with rank 0's error when ``reason``); a no-op once they were
        told, or while they embed (rank 0 then exits, and torchrun stops them)."""
        if self.waiting:
            self._send([_Stop(reason)] * self.ranks.world_size)

    def embed_new(self, plan: Plan, fresh: np.ndarray, encoder: Encoder, out: Path,
                  bands: tuple[int, ...] | None, batch_size: int, workers: int, progress: bool,
                  on_batch: Callable[[int], None] | None, max_pixels: int | None = None
                  ) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """pir.search.index._embed_new over all ranks: ``batch_size`` files per rank and step, the
        others' thumbnails written here; the same rows, sizes and unreadable list as one process."""
        todo, size = plan.todo, self.ranks.world_size
        embedded = np.zeros(len(plan.entries), bool)
        unreadable: list[tuple[str, str]] = []
        bar = tqdm(total=len(todo), desc=f"index images ({size} ranks)", unit="img", disable=not progress,
                   mininterval=1.0)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, len(todo), batch_size * size):
                slots = range(start, min(start + batch_size * size, len(todo)))
                # interleaved, not in blocks: neighbours in the listing (one folder's big tiles) spread out
                shares = [slots[r::size] for r in range(size)]
                self._send([[]] + [[(k, plan.entries[todo[k]].path, plan.entries[todo[k]].sha256,
                                     plan.entries[todo[k]].window) for k in share] for share in shares[1:]])
                own = _embed_batch(_work(plan, todo, shares[0]), encoder, out, bands, max_pixels, pool)
                for batch in self._collect(own):
                    _take(batch, plan, todo, fresh, embedded, unreadable)
                    list(pool.map(lambda shot: _save_thumbnail(out, *shot), batch.thumbnails))
                bar.update(len(slots))
                if on_batch is not None:
                    on_batch(slots.stop)
        self.stop()   # their part is done: free their devices while rank 0 writes the generation
        bar.close()
        return embedded, unique(unreadable)


@contextlib.contextmanager
def leading(ranks: DistContext | None) -> Iterator[Leader | None]:
    """Rank 0's side for a block that builds the index (None without torchrun). When the block ends
    before the others were told to stop (rank 0 refused the folder, or failed), they are told, with the
    error's first line."""
    if ranks is None:
        yield None
        return
    leader = Leader(ranks)
    try:
        yield leader
    except Exception as exc:
        leader.stop(first_line(exc))
        raise
    leader.stop()


def follow(source: str | os.PathLike, encoder: Encoder, *, bands: tuple[int, ...] | None = None, workers: int = 2,
           max_pixels: int | None = None) -> None:
    """A rank other than 0: embed the shares rank 0 sends (files under this rank's ``source``) and send
    back what came of them, until rank 0 says stop; ValueError when rank 0 stopped on an error. Writes
    nothing anywhere (thumbnails travel as JPEG bytes)."""
    root = Path(source).resolve()
    root = root.parent if root.is_file() else root   # one scene (--tile): paths are relative to its folder
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while True:
            message: list = [None]
            dist.scatter_object_list(message, None, src=0)
            work = message[0]
            if isinstance(work, _Stop):
                if work.reason:
                    raise ValueError(f"rank 0 stopped: {work.reason}")
                return
            batch = _embed_batch([(slot, root / rel, sha, window) for slot, rel, sha, window in work], encoder,
                                 None, bands, max_pixels, pool)
            dist.gather_object(batch, None, dst=0)
