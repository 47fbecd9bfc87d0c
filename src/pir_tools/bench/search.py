"""The ``search`` section: ``pir index`` throughput and its incremental rerun, and the latency of a text
query (encoding included) over 100,000 vectors, through the library code the commands call."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pir_tools.bench.ann import ann_benchmark
from pir_tools.bench.dataset import make_bench_dataset

SEARCH_TARGET_MS = 50.0                  # median text query over 100,000 vectors, encoding included
SEARCH_QUERIES = ("many planes parked near a runway", "a green forest beside a river", "storage tanks",
                  "a bridge over the water", "dense residential buildings with roads")


def search_benchmark(workdir: Path, images: int, vectors: int, queries: int, seed: int = 0,
                     dim: int = 512, ann_vectors: int = 0, ann_queries: int = 200) -> dict[str, Any]:
    """`pir index` throughput (images/s, tiny preset, CPU) over ``images`` 256 px PNG tiles, its incremental
    rerun, and the median latency of a text query (encoding + exact top-20) over ``vectors`` random unit
    ``dim``-d float16 vectors, through the library code the commands call; with ``ann_vectors``, the
    approximate index too (:func:`ann_benchmark`, under "ann")."""
    tokenizer_dir = workdir / "prepared_search" / "tokenizer"
    folder, checkpoints = _tiles_and_checkpoints(workdir, images, dim, seed)
    return {"preset": "tiny", "device": "cpu", "index_images": images, "tile_px": 256,
            **_index_row(folder, workdir / "index", checkpoints["tiny"], tokenizer_dir),
            "vectors": vectors, "dim": dim, "queries": queries, "top": 20,
            **_query_row(workdir, checkpoints["tiny_512"], tokenizer_dir, vectors, dim, queries, seed),
            "target_query_ms": SEARCH_TARGET_MS,
            # the product is memory-bound (205 MB of float32 per query): other processes' load shows in it
            "load_average_1min": os.getloadavg()[0],
            **({"ann": ann_benchmark(workdir / "ann", ann_vectors, ann_queries, seed, dim)} if ann_vectors else {})}


def _tiles_and_checkpoints(workdir: Path, images: int, dim: int, seed: int) -> tuple[Path, dict[str, Path]]:
    """A folder of ``images`` 256 px PNG tiles, and two random-init tiny checkpoints: "tiny" (the
    preset's embedding width, for indexing) and "tiny_512" (``dim``-d, the width of the query row's vectors)."""
    from PIL import Image

    from pir.config import model_config
    from pir.models import create_model
    from pir.models.checkpoint import save_checkpoint

    prepared, tokenizer = make_bench_dataset(workdir / "prepared_search", max(images, 16), 256, seed)
    folder = workdir / "tiles"
    folder.mkdir(parents=True)
    for i in range(images):
        Image.fromarray(np.asarray(prepared.pixels[i])).save(folder / f"{prepared.records[i].file.rsplit('.', 1)[0]}.png")
    checkpoints = {}
    for name, overrides in (("tiny", {}), ("tiny_512", {"embed_dim": dim})):
        torch.manual_seed(seed)
        cfg = model_config("tiny", vocab_size=len(tokenizer), **overrides)
        checkpoints[name] = workdir / f"{name}.pt"
        save_checkpoint(checkpoints[name], create_model(cfg), cfg)
    return folder, checkpoints


def _index_row(folder: Path, index: Path, checkpoint: Path, tokenizer_dir: Path) -> dict[str, Any]:
    """`pir index` over ``folder``, then again with nothing changed (what an incremental rerun costs)."""
    from pir.search.encoder import load_encoder
    from pir.search.index import build_index

    encoder = load_encoder(checkpoint, tokenizer_dir)
    start = time.perf_counter()
    first = build_index(folder, index, encoder, checkpoint, progress=False)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    again = build_index(folder, index, encoder, checkpoint, progress=False)
    rerun_s = time.perf_counter() - start
    return {"index_images_per_s": first.new / index_s, "index_s": index_s,
            "rerun_embedded": again.new, "rerun_s": rerun_s}


def _query_row(workdir: Path, checkpoint: Path, tokenizer_dir: Path, vectors: int, dim: int, queries: int,
               seed: int) -> dict[str, float]:
    """Median milliseconds of a text query over ``vectors`` random unit vectors: in all, encoding, search."""
    from pir.search.encoder import load_encoder
    from pir.search.index import Index
    from pir.search.manifest import Entry
    from pir.search.query import Searcher

    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((vectors, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    entries = [Entry(f"{i}.png", 0, 0, "", 0, 0) for i in range(vectors)]
    searcher = Searcher(Index(workdir, workdir, {}, entries, matrix.astype(np.float16)))
    encoder = load_encoder(checkpoint, tokenizer_dir)
    total, encode, search = [], [], []
    for q in range(queries + 3):              # the first three warm up
        text = SEARCH_QUERIES[q % len(SEARCH_QUERIES)]
        t0 = time.perf_counter()
        vector = encoder.query_text(text)
        t1 = time.perf_counter()
        searcher.search(vector, 20)
        t2 = time.perf_counter()
        if q >= 3:
            total.append(t2 - t0), encode.append(t1 - t0), search.append(t2 - t1)
    return {"query_median_ms": 1000 * statistics.median(total), "encode_median_ms": 1000 * statistics.median(encode),
            "search_median_ms": 1000 * statistics.median(search)}
