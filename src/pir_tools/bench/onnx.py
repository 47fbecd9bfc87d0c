"""Bench row ``onnx``: image embedding through onnxruntime against torch, on the same preprocessed batch.

For a preset (random init: the time does not depend on the values), ``pir export --onnx``'s library call
writes the two graphs (its seconds and the export check's max differences are recorded), then the same uint8
batch [B, 3, S, S] is embedded by the torch Encoder (pir.search.encoder, what ``pir index --checkpoint`` runs)
and by the OnnxEncoder (``pir index --onnx``), both on every core this process may use: images/s of each,
the median of a few runs after one warm-up run, and the largest difference between the two engines' vectors.
Preprocessing (decode, resize) is outside the timing: it is the same work for both, and the numpy resize
runs once per file in the index's reader threads.

The ``tiny`` preset (the ``cpu`` recipe's) runs inside ``pir bench``; the ``paper`` preset (Swin-T + BERT-base
+ ResNet-50: a longer export) with ``pir bench --only onnx``.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _median_images_per_s(encode, batch: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    vectors = encode(batch)   # warm-up: first-run allocations, onnxruntime's lazy kernel setup
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        encode(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times), vectors


def onnx_benchmark(preset: str, workdir: Path, batch: int = 32, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """The ``onnx`` row of one preset (module doc)."""
    import onnxruntime

    from pir.config import model_config
    from pir.data.text import train_wordpiece
    from pir.models import create_model
    from pir.models.onnx_export import write_onnx_export
    from pir.search.encoder import Encoder
    from pir.search.onnx_encoder import load_onnx_encoder
    from pir.threads import available_cores

    threads = available_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = model_config(preset)   # random weights: presets never download
    model = create_model(cfg).eval()
    workdir.mkdir(parents=True, exist_ok=True)
    if cfg.is_clip:
        from pir.data.text import ClipTokenizer
        tokenizer = ClipTokenizer()
    else:   # any tokenizer whose ids fit the preset's vocabulary: the check only needs valid ids
        from pir.data.text import load_tokenizer
        captions = [f"a {w} {scene} beside {n} grey buildings" for w in ("large", "small", "green")
                    for scene in ("forest", "airport", "river", "beach") for n in ("two", "many")]
        tokenizer = load_tokenizer(train_wordpiece(captions, min(cfg.vocab_size, 200), workdir / "tokenizer"))
    folder = workdir / f"onnx-{preset}"
    folder.mkdir()
    source = {"path": f"(random init {preset})", "sha256": "0" * 64, "preset": preset}
    written = write_onnx_export(folder, model, cfg, tokenizer, source, preset, log=lambda _: None)
    seconds, check = written["seconds"], written["check"]

    pixels = np.random.default_rng(seed).integers(0, 256, (batch, 3, cfg.image_size, cfg.image_size), dtype=np.uint8)
    torch_encoder = Encoder(model, cfg, tokenizer, torch.device("cpu"), {})
    ort_encoder = load_onnx_encoder(folder, threads=threads)
    torch_rate, torch_vectors = _median_images_per_s(torch_encoder.encode_images, pixels, repeats)
    ort_rate, ort_vectors = _median_images_per_s(ort_encoder.encode_images, pixels, repeats)
    return {"preset": preset, "batch": batch, "image_size": cfg.image_size, "threads": threads, "repeats": repeats,
            "torch_images_per_s": torch_rate, "onnxruntime_images_per_s": ort_rate, "speedup": ort_rate / torch_rate,
            "batch_max_abs_diff": float(np.abs(ort_vectors - torch_vectors).max()),
            "export_s": seconds["image"] + seconds["text"] + seconds["check"], "export_image_s": seconds["image"],
            "export_text_s": seconds["text"], "check_s": seconds["check"],
            "image_max_abs_diff": check["image_max_abs_diff"], "text_max_abs_diff": check["text_max_abs_diff"],
            "onnx_mb": sum(p.stat().st_size for p in folder.glob("*.onnx*")) / 1e6,
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
            "load_average_1min": os.getloadavg()[0]}


def onnx_rows(presets: tuple[str, ...], workdir: Path, batch: int = 32, repeats: int = 5, seed: int = 0,
              skipped: dict[str, str] | None = None, log=print) -> dict[str, Any]:
    """{preset: row} for ``presets``; ``skipped`` {preset: why} rows are recorded as skipped."""
    rows: dict[str, Any] = {name: {"skipped": why} for name, why in (skipped or {}).items()}
    for preset in presets:
        log(f"onnx {preset} (export, then images/s of torch and onnxruntime, batch {batch})")
        rows[preset] = onnx_benchmark(preset, workdir / preset, batch, repeats, seed)
    return rows


def table_rows(report: dict[str, Any], add) -> None:
    """The ``onnx`` lines of pir_tools.bench.table (``add(name, value, unit)``)."""
    for preset, row in (report.get("onnx") or {}).items():
        if "skipped" in row:
            add(f"onnx {preset}", "skipped", row["skipped"])
            continue
        add(f"embed {preset} images, onnxruntime", row["onnxruntime_images_per_s"],
            f"images/s (torch {row['torch_images_per_s']:.2f}; x{row['speedup']:.2f}; batch {row['batch']}, "
            f"{row['threads']} threads)")
        add(f"  export {preset} to ONNX", row["export_s"],
            f"s (max |diff| image {row['image_max_abs_diff']:.1e}, text {row['text_max_abs_diff']:.1e})")
