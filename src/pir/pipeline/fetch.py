"""Stage ``fetch``: the canonical dataset, its tokenizer, reports/data.json and a sample figure.

synthetic -> generate; rsitmd | rsicd -> download (if data.source is a URL) and import.
A sharded data.source (a shard folder or a brace pattern of tar shards) is not cached for train:
val and test are prepared (from its val-/test- shards, or from data.eval_source) and dataset.json
records the train shards, which the train stage streams (docs/scaling.md, "Sharded corpora").
Everything is validated before the first write, and every write is atomic, so a bad input
leaves the previous outputs untouched.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pir import files, hub
from pir.data import download, importers, shards, synthetic, text
from pir.data.prepared import ImageRecord, resize_pixels, write_prepared
from pir.data.summary import dataset_summary, save_sample_grid
from pir.device import numerics_record
from pir.pipeline.params import PipelineConfig
from pir.pipeline.paths import Paths


def load_dataset(cfgs: PipelineConfig, downloads: Path) -> tuple[list[str], list[ImageRecord], np.ndarray]:
    """(classes, records, pixels at data.cache_res) for the configured dataset."""
    data = cfgs.data
    if data.dataset == "synthetic":
        classes, records, pixels = synthetic.generate(cfgs.synthetic, cfgs.seed)
        return classes, records, resize_pixels(pixels, data.cache_res)
    if data.dataset not in ("rsitmd", "rsicd"):
        raise ValueError(f"params.yaml: data.dataset must be synthetic, rsitmd or rsicd, got {data.dataset!r}")
    return import_source(cfgs, data.source, data.sha256, downloads)


def import_source(cfgs: PipelineConfig, source: str, sha256: str, downloads: Path
                  ) -> tuple[list[str], list[ImageRecord], np.ndarray]:
    """A folder, archive or URL of data.dataset's layout, imported (data.source, or data.eval_source)."""
    data = cfgs.data
    root = download.resolve_source(source, downloads, sha256, max_bytes=data.max_archive_bytes,
                                   max_ratio=data.max_archive_ratio)
    imported = importers.import_dataset(root, data.dataset, data.cache_res, cfgs.seed, data.val_fraction,
                                        data.class_list, data.drop_empty_captions, max_pixels=data.max_image_pixels)
    for note in imported.notes:
        print(f"fetch: {note}")
    return imported.classes, imported.records, imported.pixels


# --------------------------------------------------------------------------- sharded sources

# Train captions fetch reads from the train shards (their .txt members only, in order) for a WordPiece
# vocabulary: a bounded sample. pir shards writes train in a seeded order, so the first shards are a
# fair sample; a pretrained tokenizer (every CLIP preset) reads none.
TOKENIZER_CAPTIONS = 50_000


def eval_splits(cfgs: PipelineConfig, manifest: dict | None, downloads: Path
                ) -> tuple[list[str], list[ImageRecord], np.ndarray]:
    """Val and test of a sharded source: data.eval_source (a shard folder's val/test shards, or a dataset
    whose train split is left out), else the shard folder's own val-/test- shards."""
    data = cfgs.data
    source = data.eval_source or data.source
    if data.eval_source and shards.is_shard_pattern(source):
        raise ValueError(f"data.eval_source {source!r}: a shard pattern holds no val/test splits; give a dataset "
                         "folder, archive or URL, or a shard folder")
    if shards.is_shard_folder(source):
        read = shards.read_splits(source, manifest if not data.eval_source else shards.read_manifest(source),
                                  ("val", "test"), data.cache_res, max_pixels=data.max_image_pixels)
        classes, records, pixels = read.classes, read.records, read.pixels
    else:
        classes, records, pixels = import_source(cfgs, source, "", downloads)
        keep = [i for i, r in enumerate(records) if r.split != "train"]
        print(f"fetch: data.eval_source: {len(keep)} val/test images; its {len(records) - len(keep)} train images "
              "are not used (train streams from data.source)")
        records, pixels = [records[i] for i in keep], pixels[keep]
    for split in ("val", "test"):
        if not any(r.split == split for r in records):
            raise ValueError(f"{source}: no {split} images (train selects its epoch on val, evaluate scores test); "
                             "set data.eval_source to a dataset with both")
    return classes, records, pixels


def load_sharded(cfgs: PipelineConfig, downloads: Path
                 ) -> tuple[list[str], list[ImageRecord], np.ndarray, dict]:
    """(classes, val/test records, their pixels, the train_shards record) of a sharded data.source."""
    data = cfgs.data
    if shards.is_shard_pattern(data.source):
        if not data.eval_source:
            raise ValueError(f"data.source {data.source!r} is a shard pattern (train only): set data.eval_source to "
                             "the dataset whose val and test splits select and score the model")
        if data.samples_per_epoch == 0:
            raise ValueError(f"data.source {data.source!r} is a shard pattern, with no shards.json to count its train "
                             "pairs: set data.samples_per_epoch")
        train = shards.existing_shards(shards.expand_pattern(data.source), "data.source")
        manifest, digests = None, None
    else:
        manifest = shards.read_manifest(data.source)
        train = shards.split_shards(data.source, manifest, "train")
        digests = [s["sha256"] for s in manifest["splits"]["train"]["shards"]]
        if not train:
            raise ValueError(f"{data.source}: its {shards.MANIFEST} lists no train shards")
    classes, records, pixels = eval_splits(cfgs, manifest, downloads)
    return classes, records, pixels, shards.stream_record(data.source, train, manifest, digests)


def prepare_tokenizer(cfgs: PipelineConfig, records: list[ImageRecord], out_dir: Path,
                      train_captions: list[str] | None = None):
    """Train WordPiece on the train captions (``train_captions``, else the train records'), or copy the
    configured pretrained tokenizer, into ``out_dir``."""
    data = cfgs.data
    if cfgs.tokenizer_source:   # a copy beside the dataset, so later stages always load data/fetch/tokenizer
        setting = "data.tokenizer" if data.tokenizer else "model.text_model"
        text.save_tokenizer(text.load_tokenizer(cfgs.tokenizer_source, setting), out_dir)
    else:
        if train_captions is None:
            train_captions = [c for r in records if r.split == "train" for c in r.captions]
        captions = [text.normalize_caption(c, data.max_words) for c in train_captions]
        text.train_wordpiece(captions, data.vocab_size, out_dir)
    return text.load_tokenizer(out_dir)


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    start = time.time()
    print(f"fetch: dataset {cfgs.data.dataset}" + (f" from {cfgs.data.source}" if cfgs.data.source else ""))
    # Everything that can fail on bad input happens before the dataset files are written. Downloads
    # live outside data/fetch (which DVC deletes before each run), in the real repository, so queued
    # experiments in temporary clones reuse them instead of downloading again.
    stream, train_captions = None, None
    if cfgs.data.dataset != "synthetic" and shards.is_shard_source(cfgs.data.source):
        classes, records, pixels, stream = load_sharded(cfgs, paths.downloads)
        if not cfgs.tokenizer_source:
            train_captions = shards.shard_captions(stream["shards"], TOKENIZER_CAPTIONS)
            if not train_captions:
                raise ValueError(f"data.source {cfgs.data.source}: no caption in the train shards' .txt members to "
                                 "train the WordPiece vocabulary on")
    else:
        classes, records, pixels = load_dataset(cfgs, paths.downloads)
    with hub.recording() as resolved:   # a tokenizer named by a Hub id: its commit goes in the report
        tokenizer = prepare_tokenizer(cfgs, records, paths.tokenizer, train_captions)
    write_prepared(paths.fetch, cfgs.data.dataset, classes, records, pixels, train_shards=stream)
    summary = dataset_summary(cfgs.data.dataset, classes, records, cfgs.data.max_words, len(tokenizer))
    if stream is not None:   # the train split streams: what it is, beside the val/test counts
        summary["train_shards"] = {"source": stream["source"], "shards": len(stream["shards"]),
                                   "images": stream["images"], "captions": stream["captions"],
                                   **({"tokenizer_captions": len(train_captions)} if train_captions is not None
                                      else {})}
    if cfgs.data.dataset == "synthetic":   # the answer the audit stage is checked against
        summary["planted_duplicates"] = synthetic.planted_duplicates(cfgs.synthetic, cfgs.seed, records)
    if resolved:
        summary["hub"] = hub.report(resolved)
    summary["runtime"] = numerics_record()
    files.write_json(paths.data_report, summary)
    save_sample_grid(classes, records, pixels, paths.data_samples)
    print(f"fetch: {summary['images']} images, {summary['captions']} captions, {len(classes)} classes, "
          f"vocab {len(tokenizer)} -> {paths.fetch} ({time.time() - start:.1f}s)")
