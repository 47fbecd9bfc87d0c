"""Training pairs streamed from tar shards (pir.data.shards), never the whole corpus in memory.

An epoch (docs/scaling.md, "Sharded corpora"):

- it is ``samples_per_epoch`` pairs over all ranks (``data.samples_per_epoch``, 0 = the manifest's train
  count: every caption, or ``train.pairs_per_image`` per image), so ``samples_per_epoch //
  global_batch_size`` steps on every rank alike: no rank waits in a collective for another that ran dry;
- the shard list is permuted from ``(seed, epoch)`` and dealt out over the ranks x loader workers
  (``slots``); a worker reads its shards one sample at a time through webdataset, turns each image into
  its pairs (every caption, or ``pairs_per_image`` cycling through them by epoch as the map-style loader
  does), shuffles them in a bounded buffer (``data.shuffle_buffer`` pairs of encoded bytes), and
  decodes and augments each pair as it leaves the buffer. A worker that reaches the end of its shards
  before its share of batches goes on into the next pass (permuted from ``(seed, epoch, pass)``), so a
  single rank with no workers sees every pair exactly once in an epoch of the manifest's count;
- with fewer shards than slots some workers would get no shard at all (webdataset then hangs or
  stops a rank early), so every worker draws shards with replacement from ``(seed, epoch, slot)``
  instead, and the loader says so once.

Images are decoded like fetch decodes them (``pir.data.images.decode_image`` at ``data.cache_res``, the
pixel cap applied) and augmented by the map-style loader's own transform with a generator seeded
from (seed, epoch, the pair's identity), so a sample trains as it would from the prepared cache. The
order depends on the number of ranks and workers (the map-style loader's does not).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count, islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from pir.config import DataConfig, ModelConfig, TrainConfig
from pir.data import shards as S
from pir.data.images import decode_image
# the map-style loader's own collate, per-item augmentation and worker set-up: one way to make a pair
from pir.data.loader import PairCollate, augment_item, worker_init
from pir.data.prepared import PreparedDataset
from pir.data.transforms import train_transform
from pir.errors import first_line
from pir.threads import resolve_workers

# The shuffle buffer fills to this fraction before the first pair leaves it (webdataset's `initial`).
_INITIAL_FILL = 0.5


@dataclass(frozen=True)
class ShardStream:
    """What the trainer streams: the train shards fetch recorded (dataset.json ``train_shards``) and the
    data settings that decide how."""
    source: str
    shards: tuple[str, ...]
    images: int | None                 # train images per the manifest; None for a bare pattern
    captions: int | None               # train captions per the manifest; None for a bare pattern
    classes: tuple[str, ...]           # scene names -> labels (the prepared dataset's classes)
    samples_per_epoch: int = 0
    shuffle_buffer: int = 2000
    cache_res: int = 128
    max_pixels: int | None = None

    def epoch_pairs(self, pairs_per_image: int) -> int:
        """Pairs per epoch over all ranks: data.samples_per_epoch, else the manifest's count."""
        if self.samples_per_epoch > 0:
            return self.samples_per_epoch
        if self.images is None or self.captions is None:
            raise ValueError(f"data.source {self.source}: a shard pattern has no shards.json to count its train "
                             "pairs; set data.samples_per_epoch")
        return self.captions if pairs_per_image <= 0 else self.images * pairs_per_image

    def settings(self) -> dict[str, int]:
        """The settings beyond dataset.json that change the trained weights (the train state's key)."""
        return {"samples_per_epoch": self.samples_per_epoch, "shuffle_buffer": self.shuffle_buffer,
                "cache_res": self.cache_res}


def train_stream(prepared: PreparedDataset, data: DataConfig) -> ShardStream | None:
    """The stream of a prepared dataset whose train split is in shards; None for a cached train split."""
    record = prepared.train_shards
    if not record:
        return None
    return ShardStream(record["source"], tuple(record["shards"]), record.get("images"), record.get("captions"),
                       tuple(prepared.classes), data.samples_per_epoch, data.shuffle_buffer, data.cache_res,
                       data.max_image_pixels)


@dataclass(frozen=True)
class _Pair:
    image: bytes          # shared by the pairs of one image: the buffer holds encoded bytes once per image
    caption: str
    image_id: int         # stable over epochs and ranks: positives in the contrastive loss
    label: int
    seed_index: int       # the pair's identity in its augmentation seed
    where: str


def _image_id(url: str, key: str) -> int:
    """A 62-bit id from the shard's path and the sample's key (which no two samples of a shard share)."""
    digest = hashlib.sha256(f"{url}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


@dataclass
class _Idle:
    """Shards opened since the last pair: shards with no usable sample would otherwise spin forever."""
    limit: int
    opened: int = 0

    def tick(self, source: str) -> None:
        self.opened += 1
        if self.opened > self.limit:
            raise S.ShardError(f"data.source {source}: {self.limit} shards read in a row without one training "
                               "pair (each sample needs an image member and a .txt caption)")


class ShardPairs(IterableDataset):
    """Collated batches of streamed pairs: each rank's loader yields ``batches`` of them an epoch, its
    workers ``batches // workers`` each (the first ``batches % workers`` one more)."""

    def __init__(self, stream: ShardStream, transform: torch.nn.Module, collate: PairCollate, *, seed: int,
                 batch_size: int, batches: int, pairs_per_image: int, rank: int, world_size: int, workers: int):
        self.stream, self.transform, self.collate = stream, transform, collate
        self.seed, self.batch_size, self.batches = seed, batch_size, batches
        self.pairs_per_image, self.rank, self.world_size, self.workers = pairs_per_image, rank, world_size, workers
        self.label_of = {name: i for i, name in enumerate(stream.classes)}
        self.epoch = 0

    @property
    def slots(self) -> int:
        return self.world_size * max(1, self.workers)

    @property
    def resampled(self) -> bool:
        return len(self.stream.shards) < self.slots

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        slot = self.rank * workers + worker
        quota = self.batches // workers + (worker < self.batches % workers)
        pairs = self._pairs(slot)
        for _ in range(quota):
            yield self.collate([self._item(pair) for pair in islice(pairs, self.batch_size)])

    # ------------------------------------------------------------------ pairs

    def _pairs(self, slot: int) -> Iterator[_Pair]:
        shards = self.stream.shards
        idle = _Idle(max(16, 2 * len(shards)))
        if self.resampled:
            draws = np.random.default_rng([self.seed, self.epoch, slot, 1])
            chosen = (shards[int(draws.integers(len(shards)))] for _ in count())
            yield from self._shuffled(self._expand(self._opened(chosen, idle), idle), [slot, 1])
            return
        for repeat in count():
            order = np.random.default_rng([self.seed, self.epoch, repeat]).permutation(len(shards))
            mine = [shards[i] for i in order[slot::self.slots]]
            yield from self._shuffled(self._expand(self._opened(iter(mine), idle), idle), [slot, repeat, 0])

    def _opened(self, chosen: Iterator[str], idle: _Idle) -> Iterator[dict[str, Any]]:
        for shard in chosen:
            idle.tick(self.stream.source)
            yield {"url": shard}

    def _shuffled(self, pairs: Iterator[_Pair], stream_id: list[int]) -> Iterator[_Pair]:
        from webdataset.filters import shuffle

        rng = random.Random(int(np.random.default_rng([self.seed, self.epoch, *stream_id]).integers(2 ** 62)))
        size = self.stream.shuffle_buffer
        return shuffle(bufsize=size, initial=max(1, int(size * _INITIAL_FILL)), rng=rng)(pairs)

    def _expand(self, shards: Iterator[dict[str, Any]], idle: _Idle) -> Iterator[_Pair]:
        skipped = 0
        for sample in S.iter_samples(shards):
            image, captions = S.sample_image(sample), S.sample_captions(sample)
            if image is None or not captions:
                skipped += 1
                if skipped == 1:   # once per worker and pass: img2dataset shards may hold failed downloads
                    print(f"note: {S.where(sample)}: skipped (no image member or no caption); later ones are "
                          "skipped silently", file=sys.stderr)
                continue
            idle.opened = 0
            image_id = _image_id(sample["__url__"], sample["__key__"])
            label = self.label_of.get(S.sample_meta(sample).get("scene"), -1)
            k = self.pairs_per_image
            chosen = range(len(captions)) if k <= 0 else [(self.epoch * k + s) % len(captions) for s in range(k)]
            for number in chosen:
                yield _Pair(image, captions[number], image_id, label, (image_id * 127 + number) % 2 ** 62,
                            S.where(sample))

    def _item(self, pair: _Pair) -> dict[str, Any]:
        try:
            pixels = decode_image(pair.image, self.stream.cache_res, self.stream.max_pixels)
        except Exception as exc:  # PIL raises several types for corrupt data; one line naming the sample
            raise S.ShardError(f"{pair.where}: unreadable image ({first_line(exc)})") from None
        image = augment_item(self.transform, torch.from_numpy(np.array(pixels)).permute(2, 0, 1), self.seed, self.epoch,
                         pair.seed_index)
        return {"image": image, "caption": pair.caption, "image_id": pair.image_id, "label": pair.label}


class StreamLoader(DataLoader):
    """A DataLoader whose shard errors stay one line: a worker's exception comes back to the main process
    as "Caught ShardError in DataLoader worker process 0." with the traceback below it, and the
    message that names the shard and sample is its last line."""

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        batches = super().__iter__()
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except S.ShardError as exc:
                last = str(exc).strip().splitlines()[-1]
                raise S.ShardError(last.split("ShardError: ", 1)[-1]) from None
            yield batch


def stream_loader(stream: ShardStream, tokenizer: Any, train_cfg: TrainConfig, model_cfg: ModelConfig, *,
                  seed: int, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1) -> StreamLoader:
    """The streaming counterpart of ``pir.data.loader.train_pairs_loader``: same transform, collate and
    per-process batch; ``pir.data.loader.set_epoch`` points it at an epoch."""
    transform = train_transform(model_cfg.image_size, train_cfg.crop_scale, train_cfg.hflip, train_cfg.randaug_ops,
                                train_cfg.randaug_magnitude)
    pairs = stream.epoch_pairs(train_cfg.pairs_per_image)
    batches = pairs // train_cfg.global_batch_size
    if batches == 0:
        raise ValueError(f"data.source {stream.source}: {pairs} pairs an epoch, fewer than one global batch of "
                         f"{train_cfg.global_batch_size}: lower train.global_batch_size or raise "
                         "data.samples_per_epoch")
    workers = resolve_workers(train_cfg.num_workers, device)
    if workers > 0:   # HF fast tokenizers in forked workers warn (and may deadlock) unless told not to thread
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    dataset = ShardPairs(stream, transform, PairCollate(tokenizer, model_cfg.max_tokens, model_cfg.max_words),
                         seed=seed, batch_size=train_cfg.per_process_batch(world_size), batches=batches,
                         pairs_per_image=train_cfg.pairs_per_image, rank=rank, world_size=world_size,
                         workers=workers)
    if dataset.resampled and rank == 0:
        print(f"data: {len(stream.shards)} train shard(s) for {world_size} rank(s) x {max(1, workers)} loader "
              "worker(s): each worker draws shards with replacement, so an epoch is "
              f"{batches * train_cfg.global_batch_size} pairs drawn at random rather than one pass; write more "
              "shards (pir shards --shard-size) for exact passes", file=sys.stderr)
    # Workers are started afresh each epoch (not persistent): each gets the dataset pickled with the
    # epoch set_epoch gave it.
    return StreamLoader(dataset, batch_size=None, num_workers=workers, pin_memory=torch.device(device).type == "cuda",
                      worker_init_fn=worker_init, generator=torch.Generator().manual_seed(seed),
                      persistent_workers=False)
