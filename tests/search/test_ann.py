"""The approximate index (pir.search.ann): same top hits as exact search on clustered vectors, exact
scores, incremental runs update it, pir search / pir serve use it, a tampered file is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from pir.search import ann
from pir.search.index import Index, build_index, load_index
from pir.search.manifest import Entry
from pir.search.query import Searcher, open_search
from pir_tools.search import index_main, search_main

from tests.search.conftest import write_images

DIM = 64


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    """One OpenMP thread, as torch gets one (tests/conftest.py): two test processes share two cores."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def clustered(n: int, seed: int, clusters: int = 30) -> np.ndarray:
    """Unit float16 vectors in ``clusters`` tight groups (embeddings of similar scenes), seeded."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((clusters, DIM)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def in_memory_index(vectors: np.ndarray, approx: ann.Ann | None, scenes: list[str] | None = None) -> Index:
    entries = [Entry(f"{i}.png", 0, 0, "", 0, 0, scenes[i] if scenes else "") for i in range(len(vectors))]
    return Index(Path("."), Path("."), {}, entries, vectors, approx)


def same_as_exact(approx: Searcher, exact: Searcher, queries: np.ndarray, top: int = 10, scene=None) -> None:
    for query in queries:
        got, want = approx.search(query, top, scene), exact.search(query, top, scene)
        assert [h.path for h in got] == [h.path for h in want]
        # the scores returned are the exact ones, not the codes' approximations
        assert np.allclose([h.score for h in got], [h.score for h in want], rtol=0, atol=1e-6)


def test_top_hits_and_scores_equal_exact_search_on_clustered_vectors():
    vectors = clustered(3000, seed=1)
    params = ann.choose_params(len(vectors), DIM)
    assert (params.nlist, params.m, params.nbits, params.nprobe) == (64, 8, 8, 16)
    scenes = ["rare" if i % 500 == 0 else ("a", "b")[i % 2] for i in range(len(vectors))]
    approx = Searcher(in_memory_index(vectors, ann.build(vectors, params), scenes))
    exact = Searcher(in_memory_index(vectors, None, scenes))
    assert approx.matrix is None   # nothing widened to float32: candidates are read from the rows
    queries = clustered(40, seed=2).astype(np.float32)
    same_as_exact(approx, exact, queries)                       # recall 1.0 at the default nprobe
    same_as_exact(approx, exact, queries[:10], scene="b")       # the scene as a faiss selector
    same_as_exact(approx, exact, queries[:5], scene="rare")     # 6 rows: fewer than top, scored exactly
    # seeded: the same vectors train the same bytes
    again = ann.build(vectors, params)
    assert bytes(faiss.serialize_index(again.index)) == bytes(faiss.serialize_index(approx.ann.index))


def test_an_update_removes_renumbers_and_adds_rows():
    old = clustered(2000, seed=3)
    previous = ann.build(old)
    new_rows = clustered(300, seed=4)
    # the new generation: old rows 100.. (0..99 removed), old row 500 twice (a copied file), 300 new
    sources = np.concatenate([np.arange(100, 2000), [500], -np.ones(300, np.int64)])
    vectors = np.concatenate([old[100:], old[500:501], new_rows])
    updated = ann.update(previous, vectors, sources)
    assert updated.index.ntotal == len(vectors) and updated.trained_on == 2000 and previous.index.ntotal == 2000
    exact = Searcher(in_memory_index(vectors, None))
    same_as_exact(Searcher(in_memory_index(vectors, updated)), exact, clustered(20, seed=5).astype(np.float32))
    # the stored ids are the new rows, each once; a row's own vector finds it
    invlists = updated.index.invlists
    ids = np.concatenate([faiss.rev_swig_ptr(invlists.get_ids(c), invlists.list_size(c)).copy()
                          for c in range(invlists.nlist) if invlists.list_size(c)])
    assert np.array_equal(np.sort(ids), np.arange(len(vectors)))
    searcher = Searcher(in_memory_index(vectors, updated))
    for row in (0, 1899, 2000, 2200):
        assert searcher.search(vectors[row], 1)[0].path == f"{row}.png"
    grown = ann.update(updated, clustered(4 * 2000 + 1, seed=6), -np.ones(8001, np.int64))
    assert grown.trained_on == 8001   # four times the training set: trained again


def test_threshold_logic():
    assert not ann.wanted(199_999, None, 200_000, had=False) and ann.wanted(200_000, None, 200_000, had=False)
    assert ann.wanted(10, None, 200_000, had=True)          # --ann once: later plain runs keep it
    assert ann.wanted(10, True, 200_000, had=False) and not ann.wanted(10**6, False, 200_000, had=True)
    assert not ann.wanted(1, True, 200_000, had=False)       # nothing to train on


def test_pir_index_writes_updates_and_drops_it_and_search_and_serve_use_it(tmp_path, encoder, checkpoint, capsys):
    from pir_tools.serve import create_app, loopback_hosts

    images = write_images(tmp_path / "images", 4)
    build_index(tmp_path / "images", tmp_path / "index", encoder, checkpoint, progress=False, ann_threshold=12)
    first = load_index(tmp_path / "index")
    meta = first.identity["ann"]
    assert meta["kind"] == "IVF-PQ" and meta["vectors"] == 12 and first.ann is not None
    assert meta["bytes"] == (first.generation / ann.ANN_FILE).stat().st_size and len(meta["sha256"]) == 64

    images[0].unlink()
    write_images(tmp_path / "images", 1, start=10)               # 11 + 3 rows, below the threshold: kept
    build_index(tmp_path / "images", tmp_path / "index", encoder, checkpoint, progress=False, ann_threshold=100)
    second = load_index(tmp_path / "index")
    assert second.identity["ann"]["vectors"] == 14 and second.identity["ann"]["trained_on"] == 12   # updated

    query = "a forest with many things"
    assert search_main([str(tmp_path / "index"), query, "--top", "5"]) == 0
    approx = capsys.readouterr().out
    assert search_main([str(tmp_path / "index"), query, "--top", "5", "--exact"]) == 0
    assert capsys.readouterr().out == approx
    app = create_app(tmp_path / "index", allowed_hosts=loopback_hosts(80))
    served = app.test_client().get("/api/search?q=a+forest+with+many+things&top=5").get_json()
    assert [f"{h['score']:.4f}\t{second.root / h['path']}" for h in served] == approx.strip().splitlines()

    assert index_main([str(tmp_path / "images"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index"),
                       "--no-ann"]) == 0
    dropped = load_index(tmp_path / "index")
    assert dropped.identity["ann"] is None and dropped.ann is None
    assert not (dropped.generation / ann.ANN_FILE).exists()


def test_a_tampered_ann_file_is_refused_before_faiss_reads_it(tmp_path, encoder, checkpoint, capsys):
    write_images(tmp_path / "images", 3)
    assert index_main([str(tmp_path / "images"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index"),
                       "--ann"]) == 0
    generation = load_index(tmp_path / "index").generation
    path = generation / ann.ANN_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                                  # same size, other bytes
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert search_main([str(tmp_path / "index"), "storage tanks"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the file index.json records" in err
    assert search_main([str(tmp_path / "index"), "storage tanks", "--exact"]) == 0   # never parsed
    with pytest.raises(ValueError, match="not the file index.json records"):
        open_search(tmp_path / "index")
    # the next run trains a new one from the vectors (which are whole) rather than updating it
    build_index(tmp_path / "images", tmp_path / "index", encoder, checkpoint, progress=False)
    assert load_index(tmp_path / "index").ann.index.ntotal == 9
    identity = json.loads((load_index(tmp_path / "index").generation / "index.json").read_text())
    assert identity["ann"]["vectors"] == 9
