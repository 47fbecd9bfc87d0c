"""Search an index: exact (one matrix product, top-k by partial sort), or through its ANN index.

At 100,000 x 512 the product takes a few milliseconds on two cores (reports/bench.json, "search"); the
float16 matrix is widened to float32 once, when the searcher is made, and kept: numpy has no fast float16
product. Past that size (docs/scaling.md, "Approximate nearest-neighbour search") a generation may hold a
faiss IVF-PQ index (pir.search.ann): then the matrix is not widened, the ANN index proposes candidates and
they are scored exactly from the memory-mapped float16 rows, so a returned score is the exact one and
only a true neighbour missing from the candidates can differ from exact search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pir.search.ann import RERANK_PER_HIT
from pir.search.index import Index
from pir.search.manifest import Entry


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


_CHUNK = 65_536   # rows widened to float32 at a time when scoring from the memmap


class Searcher:
    """Queries over one loaded :class:`Index`: vectors in, hits out (encoding is the caller's, see pir.search.encoder).
    Uses the index's ANN index when it has one loaded, unless ``exact``."""

    def __init__(self, index: Index, exact: bool = False):
        self.index = index
        self.ann = None if exact else index.ann
        # [N, D] widened once for exact search; with an ANN index only candidates are read, from the memmap
        self.matrix = np.asarray(index.vectors, dtype=np.float32) if self.ann is None else None
        self._scenes = np.array([e.scene for e in index.entries], dtype=object)
        self._row_of = {e.path: i for i, e in enumerate(index.entries)}
        self._allowed: dict[str, tuple[np.ndarray, int]] = {}   # scene -> (bitmap of its rows, count): ANN

    def _query(self, query: np.ndarray) -> np.ndarray:
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        dim = self.index.vectors.shape[1]
        if query.shape[0] != dim:
            raise ValueError(f"{self.index.generation}: query has {query.shape[0]} dims, the index {dim}")
        return query

    def _scores_of(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact scores of ``rows`` (ascending: the memmap is read forward), float32."""
        return np.concatenate([np.asarray(self.index.vectors[rows[at:at + _CHUNK]], dtype=np.float32) @ query
                               for at in range(0, len(rows), _CHUNK)] or [np.zeros(0, np.float32)])

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of one unit query vector [D] with every indexed image: float32 [N]."""
        query = self._query(query)
        if self.matrix is None:
            return self._scores_of(np.arange(len(self.index.entries)), query)
        return self.matrix @ query

    def search(self, query: np.ndarray, top: int = 20, scene: str | None = None) -> list[Hit]:
        if self.ann is not None:
            rows, scores = self._approximate(self._query(query), top, scene)
            return [Hit(self.index.entries[i].path, float(s), self.index.entries[i]) for i, s in zip(rows, scores)]
        scores = self.scores(query)
        if scene:
            scores = np.where(self._scenes == scene, scores, -np.inf).astype(np.float32)
            top = min(top, int(np.count_nonzero(self._scenes == scene)))
        return [Hit(self.index.entries[i].path, float(scores[i]), self.index.entries[i]) for i in top_k(scores, top)]

    def _approximate(self, query: np.ndarray, top: int, scene: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, exact scores) of the best ``top``: the ANN index's candidates (RERANK of them at least,
        RERANK_PER_HIT a hit), scored exactly. When it returns fewer than ``top`` (a rare scene, more hits
        asked than the probed cells hold) every eligible row is scored: the answer is then exact."""
        allowed, eligible = None, len(self.index.entries)
        if scene:
            if scene not in self._allowed:
                mask = self._scenes == scene
                self._allowed[scene] = (np.packbits(mask, bitorder="little"), int(np.count_nonzero(mask)))
            allowed, eligible = self._allowed[scene]
        top = min(top, eligible)
        if top <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows = self.ann.candidates(query, max(self.ann.params.rerank, RERANK_PER_HIT * top), allowed)
        if len(rows) < top:
            rows = np.flatnonzero(self._scenes == scene) if scene else np.arange(len(self.index.entries))
        scores = self._scores_of(rows, query)
        best = top_k(scores, top)   # rows ascending: ties go to the lower row, as in exact search
        return rows[best], scores[best]

    def vector_of(self, path: str) -> np.ndarray:
        """The stored embedding of an indexed image (search by an image already in the index)."""
        if path not in self._row_of:
            raise KeyError(path)
        return np.asarray(self.index.vectors[self._row_of[path]], dtype=np.float32)


def open_search(index_dir, checkpoint=None, device: str = "cpu", index: Index | None = None, exact: bool = False):
    """(Searcher, Encoder) for an index folder: the checkpoint recorded in its index.json (or ``checkpoint``;
    either may be a Hub id, pir.hub) with the tokenizer saved in the generation. Refuses a checkpoint whose sha256 differs from the one the
    index was built with: its vectors would live in another space. ``index``: the folder already loaded.
    ``exact``: never read or use the index's ANN index (it is C++-parsed input: docs/security.md)."""
    from pir import files, hub
    from pir.search.encoder import load_encoder
    from pir.search.index import TOKENIZER, load_index

    index = load_index(index_dir, ann=not exact) if index is None else index
    recorded = index.identity["checkpoint"]
    named = checkpoint or (recorded if hub.is_hub_id(recorded) else index.folder / recorded)
    path = hub.local_path(named, "checkpoint")   # a Hub id: its place in the cache (pir.hub)
    if not path.exists():
        raise ValueError(f"{path}: the index's checkpoint is not there; pass --checkpoint with its new place")
    if files.sha256_path(path) != index.identity["checkpoint_sha256"]:
        raise ValueError(f"{named}: not the checkpoint {index.folder} was built with (sha256 differs); "
                         "rebuild the index with `pir index`")
    return Searcher(index, exact=exact), load_encoder(path, index.generation / TOKENIZER, device)
