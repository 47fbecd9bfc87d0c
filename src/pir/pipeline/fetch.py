"""Stage ``fetch``: the canonical dataset, its tokenizer, reports/data.json and a sample figure.

synthetic -> generate; rsitmd | rsicd -> download (if data.source is a URL) and import.
Everything is validated before the first write, and every write is atomic, so a bad input
leaves the previous outputs untouched.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pir import files, hub
from pir.data import download, importers, synthetic, text
from pir.data.prepared import ImageRecord, resize_pixels, write_prepared
from pir.data.summary import dataset_summary, save_sample_grid
from pir.device import numerics_record
from pir.params import PipelineConfig
from pir.paths import Paths


def load_dataset(cfgs: PipelineConfig, downloads: Path) -> tuple[list[str], list[ImageRecord], np.ndarray]:
    """(classes, records, pixels at data.cache_res) for the configured dataset."""
    data = cfgs.data
    if data.dataset == "synthetic":
        classes, records, pixels = synthetic.generate(cfgs.synthetic, cfgs.seed)
        return classes, records, resize_pixels(pixels, data.cache_res)
    if data.dataset not in ("rsitmd", "rsicd"):
        raise ValueError(f"params.yaml: data.dataset must be synthetic, rsitmd or rsicd, got {data.dataset!r}")
    root = download.resolve_source(data.source, downloads, data.sha256, max_bytes=data.max_archive_bytes,
                                   max_ratio=data.max_archive_ratio)
    imported = importers.import_dataset(root, data.dataset, data.cache_res, cfgs.seed, data.val_fraction,
                                        data.class_list, data.drop_empty_captions, max_pixels=data.max_image_pixels)
    for note in imported.notes:
        print(f"fetch: {note}")
    return imported.classes, imported.records, imported.pixels


def prepare_tokenizer(cfgs: PipelineConfig, records: list[ImageRecord], out_dir: Path):
    """Train WordPiece on the train captions, or copy the configured pretrained tokenizer, into ``out_dir``."""
    data = cfgs.data
    if cfgs.tokenizer_source:   # a copy beside the dataset, so later stages always load data/fetch/tokenizer
        setting = "data.tokenizer" if data.tokenizer else "model.text_model"
        text.save_tokenizer(text.load_tokenizer(cfgs.tokenizer_source, setting), out_dir)
    else:
        captions = [text.normalize_caption(c, data.max_words) for r in records if r.split == "train" for c in r.captions]
        text.train_wordpiece(captions, data.vocab_size, out_dir)
    return text.load_tokenizer(out_dir)


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    start = time.time()
    print(f"fetch: dataset {cfgs.data.dataset}" + (f" from {cfgs.data.source}" if cfgs.data.source else ""))
    # Everything that can fail on bad input happens before the dataset files are written. Downloads
    # live outside data/fetch (which DVC deletes before each run), in the real repository, so queued
    # experiments in temporary clones reuse them instead of downloading again.
    classes, records, pixels = load_dataset(cfgs, paths.downloads)
    with hub.recording() as resolved:   # a tokenizer named by a Hub id: its commit goes in the report
        tokenizer = prepare_tokenizer(cfgs, records, paths.tokenizer)
    write_prepared(paths.fetch, cfgs.data.dataset, classes, records, pixels)
    summary = dataset_summary(cfgs.data.dataset, classes, records, cfgs.data.max_words, len(tokenizer))
    if cfgs.data.dataset == "synthetic":   # the answer the audit stage is checked against
        summary["planted_duplicates"] = synthetic.planted_duplicates(cfgs.synthetic, cfgs.seed, records)
    if resolved:
        summary["hub"] = hub.report(resolved)
    summary["runtime"] = numerics_record()
    files.write_json(paths.data_report, summary)
    save_sample_grid(classes, records, pixels, paths.data_samples)
    print(f"fetch: {summary['images']} images, {summary['captions']} captions, {len(classes)} classes, "
          f"vocab {len(tokenizer)} -> {paths.fetch} ({time.time() - start:.1f}s)")
