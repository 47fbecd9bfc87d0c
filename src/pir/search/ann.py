"""Approximate nearest-neighbour search: a faiss IVF-PQ index beside a generation's float16 vectors.

docs/scaling.md, "Approximate nearest-neighbour search". Above ``ANN_THRESHOLD`` vectors (or with
``pir index --ann``) a generation holds ``ann.faiss``: an inverted file of ``nlist`` spherical k-means
cells over product-quantized codes (``m`` bytes a vector), whose faiss ids are the generation's rows.
A query scans the ``nprobe`` cells nearest to it and keeps the best ``rerank`` candidates by their
approximate scores; pir.search.query scores those exactly from the memory-mapped float16 vectors, so the
scores it returns are exact and only the candidate set is approximate.

Training is seeded (the k-means sample and faiss's k-means seeds). An incremental run updates the
previous generation's index instead of training anew: rows gone are removed, kept rows renumbered to
their new rows, new rows added; it trains again once the index has grown ``RETRAIN_GROWTH`` times past
the vectors it was trained on (its cells would be overfull).

faiss parses the file in C++: index.json records its size and sha256, checked on the bytes before they
are parsed (docs/security.md).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pir import files
from pir.errors import first_line

if TYPE_CHECKING:   # faiss is imported where an ANN index is built or read: exact-only indexes never load it
    import faiss

ANN_FILE = "ann.faiss"
KIND = "IVF-PQ"
ANN_THRESHOLD = 200_000     # vectors; below it one float32 product is fast enough (docs/scaling.md)
RETRAIN_GROWTH = 4          # an index this many times larger than its training set is trained again
RERANK = 400                # candidates scored exactly per query, at least (RERANK_PER_HIT x top when more)
RERANK_PER_HIT = 10
SUBVECTOR_DIMS = 8          # dimensions per PQ sub-quantizer: 512-d vectors -> 64-byte codes
_TRAIN_PER_CELL = 48        # k-means sample: this many vectors per cell ...
_TRAIN_MIN = 10_000         # ... and at least this many (256-centroid PQ codebooks want ~39 x 256)
_NITER = 10                 # k-means iterations (IVF cells and PQ codebooks); 25 measured no better
_CHUNK = 65_536             # rows widened to float32 at a time


@dataclass(frozen=True)
class AnnParams:
    nlist: int              # k-means cells of the inverted file
    m: int                  # PQ sub-quantizers (code bytes a vector, nbits 8)
    nbits: int              # bits a sub-quantizer code
    nprobe: int             # cells scanned per query
    rerank: int             # candidates re-scored exactly per query (at least)
    train_vectors: int      # the seeded k-means sample
    seed: int = 0


def _power_of_two(x: float, rounding=np.floor) -> int:
    return 1 << max(0, int(rounding(np.log2(max(x, 1.0)))))


def choose_params(count: int, dim: int, seed: int = 0) -> AnnParams:
    """The parameters for ``count`` ``dim``-d vectors (measured: docs/scaling.md): about 2 sqrt(N) cells
    (2048 at a million), 8 dimensions a sub-quantizer, 1/32 of the cells probed (16 to 64), 400 candidates
    re-ranked. Small indexes get fewer cells, so that each has 39 training points, and below 256 vectors
    smaller codebooks."""
    if count < 2:
        raise ValueError(f"an approximate index needs at least 2 vectors, not {count}")
    nlist = min(_power_of_two(2 * np.sqrt(count), np.round), _power_of_two(count / 39))
    m = max(d for d in range(1, max(1, dim // SUBVECTOR_DIMS) + 1) if dim % d == 0)
    nbits = int(min(8, np.floor(np.log2(count))))
    train = min(count, max(_TRAIN_PER_CELL * nlist, _TRAIN_MIN))
    nprobe = min(nlist, int(np.clip(nlist // 32, 16, 64)))   # past 64 the scan, not recall, grows (docs/scaling.md)
    return AnnParams(nlist=nlist, m=m, nbits=nbits, nprobe=nprobe, rerank=RERANK,
                     train_vectors=train, seed=seed)


def wanted(count: int, ann: bool | None, threshold: int, had: bool) -> bool:
    """Whether a generation of ``count`` vectors gets an ANN index: ``ann`` True forces it (given 2 vectors
    to train on), False forbids it; None (the default) builds one from ``threshold`` vectors up, and keeps
    one the previous generation had (`pir index --ann` once is remembered until `--no-ann`)."""
    if count < 2 or ann is False:
        return False
    return ann is True or had or count >= threshold


@dataclass
class Ann:
    """A loaded ANN index: faiss's IVF-PQ over a generation's rows, and its parameters."""
    index: "faiss.Index"
    params: AnnParams
    trained_on: int

    def candidates(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """Rows of up to ``k`` approximate nearest neighbours of one float32 query [D], ascending;
        ``allowed``: a bitmap of the rows that may be returned (np.packbits, little bit order)."""
        import faiss

        selector = None if allowed is None else faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(allowed))
        params = faiss.SearchParametersIVF(nprobe=self.params.nprobe, sel=selector)
        k = max(1, min(int(k), self.index.ntotal))   # faiss allocates k results whatever the index holds
        _, ids = self.index.search(query.reshape(1, -1), k, params=params)
        return np.unique(ids[ids >= 0])


def _add_rows(index: "faiss.Index", vectors: np.ndarray, rows: np.ndarray) -> None:
    """Add ``vectors[rows]`` under their row numbers, a chunk at a time (a memmap stays on disk)."""
    for at in range(0, len(rows), _CHUNK):
        chunk = rows[at:at + _CHUNK]
        index.add_with_ids(np.ascontiguousarray(vectors[chunk], dtype=np.float32), chunk.astype(np.int64))


def build(vectors: np.ndarray, params: AnnParams | None = None) -> Ann:
    """Train an IVF-PQ index on a seeded sample of ``vectors`` (float16 [N, D] unit rows, a memmap is
    fine) and add every row under its row number."""
    import faiss

    count, dim = vectors.shape
    params = params or choose_params(count, dim)
    index = faiss.index_factory(dim, f"IVF{params.nlist},PQ{params.m}x{params.nbits}", faiss.METRIC_INNER_PRODUCT)
    # polysemous codes (a Hamming pre-filter pir does not use) cost most of the training time
    index.do_polysemous_training = False
    for cp, spherical in ((index.cp, True), (index.pq.cp, False)):
        # unit vectors: cell centroids on the sphere; the sample is already drawn, sized so that no
        # centroid lacks points (faiss would subsample again, or warn on stderr)
        cp.seed, cp.niter, cp.spherical = params.seed, _NITER, spherical
        cp.min_points_per_centroid, cp.max_points_per_centroid = 1, 1 << 30
    rng = np.random.default_rng(params.seed)
    sample = np.sort(rng.choice(count, min(count, params.train_vectors), replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    _add_rows(index, vectors, np.arange(count))
    index.nprobe = params.nprobe
    return Ann(index, params, trained_on=count)


def _renumber(index: "faiss.Index", old_to_new: np.ndarray) -> None:
    """Replace every stored id (an old row) by ``old_to_new[id]``, in place, list by list."""
    import faiss

    invlists = faiss.extract_index_ivf(index).invlists
    for cell in range(invlists.nlist):
        size = invlists.list_size(cell)
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(cell), size)
        codes = faiss.rev_swig_ptr(invlists.get_codes(cell), size * invlists.code_size).copy()
        new = np.ascontiguousarray(old_to_new[ids], dtype=np.int64)
        invlists.update_entries(cell, 0, size, faiss.swig_ptr(new), faiss.swig_ptr(codes))


def update(previous: Ann, vectors: np.ndarray, sources: np.ndarray) -> Ann:
    """The index of a new generation from the previous one's: ``sources[row]`` is the previous row the new
    row reuses (-1: embedded in this run). Rows no longer used are removed, reused ones renumbered, the rest
    added from ``vectors`` (the new generation's). Trains a new index instead when it has grown past
    RETRAIN_GROWTH times its training set, or the dimension changed."""
    import faiss

    count, dim = vectors.shape
    if previous.index.d != dim or count > RETRAIN_GROWTH * previous.trained_on:
        return build(vectors, choose_params(count, dim, previous.params.seed))
    sources = np.asarray(sources, dtype=np.int64)
    reused = np.flatnonzero(sources >= 0)
    # a previous row reused by two new rows (a copied file) keeps its code for the first; the second is added
    _, first = np.unique(sources[reused], return_index=True)
    keep = reused[first]
    old_to_new = np.full(previous.index.ntotal, -1, np.int64)
    old_to_new[sources[keep]] = keep
    index = faiss.clone_index(previous.index)
    gone = np.flatnonzero(old_to_new < 0)
    if len(gone):
        index.remove_ids(faiss.IDSelectorBatch(gone))
    _renumber(index, old_to_new)
    added = np.setdiff1d(np.arange(count), keep)
    _add_rows(index, vectors, added)
    index.nprobe = previous.params.nprobe
    return Ann(index, previous.params, previous.trained_on)


def write(ann: Ann, generation: Path) -> dict:
    """Write ``ann.faiss`` into a generation being built (fsynced when it is published); returns what
    index.json records of it: kind, parameters, vectors, and the file's size and sha256."""
    import faiss

    data = faiss.serialize_index(ann.index).tobytes()
    files.write_bytes(Path(generation) / ANN_FILE, data)
    return {"kind": KIND, "file": ANN_FILE, "metric": "inner_product", **asdict(ann.params),
            "vectors": int(ann.index.ntotal), "trained_on": ann.trained_on, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "faiss": faiss.__version__}


def _params_of(meta: dict, where: Path) -> AnnParams:
    try:
        values = {f.name: int(meta[f.name]) for f in fields(AnnParams)}
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: its \"ann\" entry lacks the parameters of an ANN index; rebuild it with "
                         "`pir index`") from None
    return AnnParams(**values)


def read(generation: Path, meta: dict, count: int, dim: int) -> Ann:
    """The ANN index of a generation, after its bytes were checked against the size and sha256 index.json
    (``meta``: its "ann" entry) records; ValueError in one line when they differ or faiss refuses them.
    The bytes are read once, checked and parsed from memory: the file cannot change in between."""
    import faiss

    where = Path(generation) / "index.json"
    if not isinstance(meta, dict) or meta.get("kind") != KIND or meta.get("file") != ANN_FILE:
        raise ValueError(f"{where}: an \"ann\" entry this pir does not read (kind {KIND}, file {ANN_FILE} expected)")
    params = _params_of(meta, where)
    path = Path(generation) / ANN_FILE
    size, sha256 = meta.get("bytes"), meta.get("sha256")
    refused = (f"{path}: not the file index.json records (size {size}, sha256 {str(sha256)[:12]}...): damaged or "
               "replaced; rebuild the index with `pir index`, or search it with --exact")
    # O_NONBLOCK and a regular file only: a FIFO or device named ann.faiss must not hang or feed the reader
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not isinstance(size, int) or info.st_size != size:
            raise ValueError(refused)
        data = fh.read(size + 1)
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(refused)
    try:
        index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
    except RuntimeError as exc:
        raise ValueError(f"{path}: faiss cannot read it ({first_line(exc, 200)})") from None
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or index.d != dim or index.ntotal != count or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path}: holds {index.ntotal} vectors of {index.d} dims, the generation {count} of {dim}; "
                         "rebuild the index with `pir index`")
    if params.nlist != ivf.nlist or not (1 <= params.nprobe <= params.nlist and params.rerank >= 1):
        raise ValueError(f"{where}: its \"ann\" parameters do not fit {path.name} ({ivf.nlist} cells); "
                         "rebuild the index with `pir index`")
    ivf.nprobe = params.nprobe
    trained_on = meta.get("trained_on")
    return Ann(index, params, trained_on if isinstance(trained_on, int) and trained_on > 0 else count)
