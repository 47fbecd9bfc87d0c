"""Exact search: one matrix product over the whole index, top-k by partial sort.

At 100,000 x 512 the product takes a few milliseconds on two cores (reports/bench.json, "search"),
so an approximate index (FAISS, HNSW) would add a dependency and recall loss for nothing at the
sizes this tool is for (docs/design.md, "Search"). The float16 matrix is widened to float32 once,
when the searcher is made, and kept: numpy has no fast float16 product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pir.search.index import Entry, Index


@dataclass(frozen=True)
class Hit:
    path: str
    score: float
    entry: Entry


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first; ties by index (the order a stable full sort gives)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # argpartition may cut inside a run of equal scores: take every index tied with the k-th score
    kth = scores[part].min()
    part = np.union1d(part[scores[part] > kth], np.flatnonzero(scores == kth))
    return part[np.lexsort((part, -scores[part]))][:k]


class Searcher:
    """Queries over one loaded :class:`Index`: vectors in, hits out (encoding is the caller's, see pir.search.encoder)."""

    def __init__(self, index: Index):
        self.index = index
        self.matrix = np.asarray(index.vectors, dtype=np.float32)   # [N, D], widened once
        self._scenes = np.array([e.scene for e in index.entries], dtype=object)
        self._row_of = {e.path: i for i, e in enumerate(index.entries)}

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of one unit query vector [D] with every indexed image: float32 [N]."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.matrix.shape[1]:
            raise ValueError(f"{self.index.generation}: query has {query.shape[0]} dims, the index {self.matrix.shape[1]}")
        return self.matrix @ query

    def search(self, query: np.ndarray, top: int = 20, scene: str | None = None) -> list[Hit]:
        scores = self.scores(query)
        if scene:
            scores = np.where(self._scenes == scene, scores, -np.inf).astype(np.float32)
            top = min(top, int(np.count_nonzero(self._scenes == scene)))
        return [Hit(self.index.entries[i].path, float(scores[i]), self.index.entries[i]) for i in top_k(scores, top)]

    def vector_of(self, path: str) -> np.ndarray:
        """The stored embedding of an indexed image (search by an image already in the index)."""
        if path not in self._row_of:
            raise KeyError(path)
        return self.matrix[self._row_of[path]]


def open_search(index_dir, checkpoint=None, device: str = "cpu", index: Index | None = None):
    """(Searcher, Encoder) for an index folder: the checkpoint recorded in its index.json (or ``checkpoint``;
    either may be a Hub id, pir.hub) with the tokenizer saved in the generation. Refuses a checkpoint whose sha256 differs from the one the
    index was built with: its vectors would live in another space. ``index``: the folder already loaded."""
    from pir import files, hub
    from pir.search.encoder import load_encoder
    from pir.search.index import TOKENIZER, load_index

    index = load_index(index_dir) if index is None else index
    recorded = index.identity["checkpoint"]
    named = checkpoint or (recorded if hub.is_hub_id(recorded) else index.folder / recorded)
    path = hub.local_path(named, "checkpoint")   # a Hub id: its place in the cache (pir.hub)
    if not path.exists():
        raise ValueError(f"{path}: the index's checkpoint is not there; pass --checkpoint with its new place")
    if files.sha256_path(path) != index.identity["checkpoint_sha256"]:
        raise ValueError(f"{named}: not the checkpoint {index.folder} was built with (sha256 differs); "
                         "rebuild the index with `pir index`")
    return Searcher(index), load_encoder(path, index.generation / TOKENIZER, device)
