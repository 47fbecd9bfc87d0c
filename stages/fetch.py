"""Stage ``fetch``: produce the canonical dataset, its tokenizer and reports/data.json.

synthetic -> generate; rsitmd | rsicd -> download (if data.source is a URL) and import.
Everything is validated before the first write, and every write is atomic, so a
bad input leaves the previous outputs untouched.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import common
from pir.paths import Paths
from pir import files
from pir.data import download, importers, synthetic, text
from pir.data.prepared import ImageRecord, resize_pixels, write_prepared
from pir.data.summary import dataset_summary, save_sample_grid

# Downloads and extracted archives live outside data/fetch (a DVC out that DVC deletes before each run)
# and under the real repo root, so queued experiments in temp clones reuse them instead of re-downloading.
DOWNLOADS = Paths(common.repo_root()).downloads


def load_dataset(cfg: common.Configs) -> tuple[list[str], list[ImageRecord], object]:
    """(classes, records, pixels at data.cache_res) for the configured dataset."""
    data = cfg.data
    if data.dataset == "synthetic":
        classes, records, pixels = synthetic.generate(cfg.synthetic, cfg.seed)
        return classes, records, resize_pixels(pixels, data.cache_res)
    if data.dataset not in ("rsitmd", "rsicd"):
        raise ValueError(f"params.yaml: data.dataset must be synthetic, rsitmd or rsicd, got {data.dataset!r}")
    root = download.resolve_source(data.source, DOWNLOADS, data.sha256)
    imported = importers.import_dataset(root, data.dataset, data.cache_res, cfg.seed, data.val_fraction,
                                        data.class_list, data.drop_empty_captions)
    for note in imported.notes:
        print(f"fetch: {note}")
    return imported.classes, imported.records, imported.pixels


def prepare_tokenizer(cfg: common.Configs, records: list[ImageRecord], out_dir: Path):
    """Train WordPiece on the train captions, or copy the configured pretrained tokenizer, into ``out_dir``."""
    data = cfg.data
    if cfg.tokenizer_source:   # a copy beside the dataset, so later stages always load data/fetch/tokenizer
        text.save_tokenizer(text.load_tokenizer(cfg.tokenizer_source), out_dir)
    else:
        captions = [text.normalize_caption(c, data.max_words) for r in records if r.split == "train" for c in r.captions]
        text.train_wordpiece(captions, data.vocab_size, out_dir)
    return text.load_tokenizer(out_dir)


def main() -> None:
    cfg = common.configs()
    common.seed_everything(cfg.seed)
    start = time.time()
    print(f"fetch: dataset {cfg.data.dataset}" + (f" from {cfg.data.source}" if cfg.data.source else ""))
    out = common.PATHS.fetch
    try:   # everything that can fail on bad input happens before the dataset files are written
        classes, records, pixels = load_dataset(cfg)
        tokenizer = prepare_tokenizer(cfg, records, out / "tokenizer")
    except importers.ImportProblems as exc:
        importers.print_problems(exc)
        sys.exit(f"fetch: {exc}")
    except (ValueError, OSError, download.DownloadError) as exc:
        sys.exit(f"fetch: {exc}")
    write_prepared(out, cfg.data.dataset, classes, records, pixels)
    summary = dataset_summary(cfg.data.dataset, classes, records, cfg.data.max_words, len(tokenizer))
    files.write_json(common.PATHS.data_report, summary)
    save_sample_grid(classes, records, pixels, common.PATHS.data_samples)
    print(f"fetch: {summary['images']} images, {summary['captions']} captions, {len(classes)} classes, "
          f"vocab {len(tokenizer)} -> {out} ({time.time() - start:.1f}s)")


if __name__ == "__main__":
    main()
