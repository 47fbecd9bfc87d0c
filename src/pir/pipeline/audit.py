"""Stage ``audit``: leakage between the splits (and, optionally, against a second dataset).

Perceptual hashes of every image of the prepared dataset, every pair at or under
``audit.threshold`` (across splits, within a split), each image's closest pair across splits,
caption strings shared across splits: ``reports/audit.json``, a figure of the closest
cross-split pairs, and MLflow metrics (docs/evaluation.md, "Leakage audit"). With
``data.exclude_leaked`` the evaluate stage drops the test images this finds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pir import files

from pir.pipeline import reports, tracking
from pir.config import AuditConfig, to_dict
from pir.data import download, importers, leakage
from pir.data.prepared import ImageRecord, load_prepared
from pir.data.text import default_caption_key
from pir.device import numerics_record
from pir.pipeline.params import PipelineConfig
from pir.pipeline.paths import Paths


def load_against(cfg: AuditConfig, cache_res: int, seed: int, downloads: Path
                 ) -> tuple[str, list[ImageRecord], np.ndarray]:
    """(name, records, pixels) of ``audit.against``: a prepared folder (dataset.json + pixels.npy) as it is,
    else a dataset folder, archive or URL read by the importers, like ``data.source``."""
    setting = cfg.against
    path = Path(setting).expanduser()
    if not download.is_url(setting) and not path.exists():
        raise FileNotFoundError(f"{path}: audit.against not found (a dataset folder, archive, URL or prepared folder)")
    if path.is_dir() and (path / "dataset.json").is_file() and (path / "pixels.npy").is_file():
        prepared = load_prepared(path)
        return prepared.name, prepared.records, prepared.pixels
    root = download.resolve_source(setting, downloads)
    imported = importers.import_dataset(root, cfg.against_dataset, cache_res, seed)
    return cfg.against_dataset, imported.records, imported.pixels


def against_report(cfg: AuditConfig, cfgs: PipelineConfig, paths: Paths, records: list[ImageRecord],
                   bits: np.ndarray) -> dict:
    name, other_records, other_pixels = load_against(cfg, cfgs.data.cache_res, cfgs.seed, paths.downloads)
    other_bits = leakage.phash_bits(other_pixels, cfg.hash_size)
    pairs = leakage.against_pairs([r.file for r in records], [r.split for r in records], bits,
                                  [r.file for r in other_records], [r.split for r in other_records], other_bits,
                                  cfg.threshold, name)
    own = {default_caption_key(c) for r in records for c in r.captions}
    theirs = {default_caption_key(c) for r in other_records for c in r.captions}
    return {"source": cfg.against, "dataset": name, "images": len(other_records),
            "near_duplicate_pairs": pairs, "images_with_a_duplicate": len({p["a"] for p in pairs}),
            "shared_caption_strings": len(own & theirs)}


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    cfg = cfgs.audit
    start = time.time()
    prepared = load_prepared(paths.fetch)
    runtime = numerics_record()
    with tracking.stage_run(paths.store, "audit", {"audit": to_dict(cfg)},
                            compared=cfgs.compared_params("audit"), runtime=runtime) as tracker:
        bits = leakage.phash_bits(prepared.pixels, cfg.hash_size)
        report = leakage.audit_report(prepared.records, bits, cfg.threshold, closest=max(cfg.figure_pairs, 10))
        report["dataset"] = prepared.name
        report["against"] = against_report(cfg, cfgs, paths, prepared.records, bits) if cfg.against else None
        report["runtime"] = runtime

        row_of = {r.file: i for i, r in enumerate(prepared.records)}
        shown = report["closest_cross_split_pairs"][:cfg.figure_pairs]
        fig = leakage.pairs_figure(shown, [prepared.pixels[row_of[p["a"]]] for p in shown],
                                   [prepared.pixels[row_of[p["b"]]] for p in shown], cfg.threshold, bits.shape[1])
        files.write_json(paths.audit, report)
        files.save_figure(fig, paths.audit_pairs, dpi=100)

        metrics = reports.finite_numbers(report["counts"], "audit_")
        metrics["audit_shared_caption_strings"] = report["shared_captions"]["strings"]
        if report["closest_cross_split_pairs"]:
            metrics["audit_closest_cross_split_distance"] = report["closest_cross_split_pairs"][0]["distance"]
        if report["against"]:
            metrics["audit_against_pairs"] = len(report["against"]["near_duplicate_pairs"])
        tracker.log_metrics(metrics)
        for path in (paths.audit, paths.audit_pairs):
            tracker.log_artifact(path, "audit")
    counts = report["counts"]
    print(f"audit: {counts['cross_split_pairs']} near-duplicate pairs across splits "
          f"(<= {cfg.threshold}/{bits.shape[1]} bits; {counts['leaked_test_images']} test images), "
          f"{counts['within_split_pairs']} within a split, {report['shared_captions']['strings']} caption strings "
          f"shared across splits" + (f", {len(report['against']['near_duplicate_pairs'])} pairs against "
                                     f"{report['against']['dataset']}" if report["against"] else "")
          + f" ({time.time() - start:.1f}s)")
