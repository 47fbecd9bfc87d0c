"""Build or update a search index: every image under a folder embedded once, in atomic generations.

An index folder (docs/search-and-geo.md, "Index folder"):

    pir-index.json     the marker: {"format": 2, "generations": [...], "folders": [...]}, what this index
                       created; pir index writes only into a folder that is absent, empty, or has one
    pir-index.lock     the writers' lock (flock); holds the writer's pid while one runs, empty otherwise
    CURRENT            the name of the live generation ("gen-3"), replaced atomically, last
    gen-<n>/
      embeddings.npy   float16 [N, D], row i = manifest row i, unit rows
      manifest.csv     path (relative to the root, '/'), size, mtime_ns, sha256, width, height, scene,
                       window ("col,row,width,height" of a scene's window with --tile), and for georeferenced
                       files (pir.data.geo) crs, bounds (in the crs), lonlat (pir.search.manifest)
      index.json       identity: checkpoint (path or Hub id, sha256, preset; a Hub id's commit), git commit,
                       bands, tiling (--tile, --stride), root, counts, unreadable files
      tokenizer/       the model's tokenizer, so text queries need only the index and the checkpoint
      ann.faiss        an approximate (faiss IVF-PQ) index of the rows, above a size or with --ann; its
                       kind, parameters, size and sha256 in index.json["ann"] (pir.search.ann)
    thumbs/<aa>/<sha256>.jpg   thumbnails, written while indexing, shared by generations (content-addressed);
                       a window's: <sha256>-<col>-<row>-<width>-<height>.jpg
    source/            images the index keeps itself: an extracted archive (pir index), the DVC stage's PNGs

The folder's ownership marker, lock and generation switch are pir.search.folder's: this module writes
only inside a folder that module holds. A run writes a whole new generation into a temporary folder and
publishes it (renamed into place, then CURRENT switched, all fsynced), so a run killed at any moment
leaves the previous generation live and whole. Readers take no lock: the previous generation is kept,
and a reader that finds its generation gone mid-read reads CURRENT again.

A file is embedded again only when it is new or changed (pir.search.plan): unchanged (size, mtime) reuses
its rows without reading the file; a changed stamp hashes it, and an unchanged sha256 (a touched or moved
file) still reuses its rows. With a tiling (``pir index --tile``) a TIFF is a scene read window by window
(pir.search.windows): one row per window, memory bounded by the window. Files that cannot be read (dangling
links, link loops, permissions, decode errors) and folders that cannot be listed are reported as
unreadable; the rest is indexed.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import numpy as np
from PIL import Image
from tqdm import tqdm

from pir import files, hub
from pir.data.geo import is_geotiff_name
from pir.data.images import read_rgb
from pir.data.text import save_tokenizer
from pir.search import ann as ann_index
from pir.search.folder import (CURRENT, FORMAT, GENERATION, IDENTITY, THUMBS, clean_stale, index_writer,
                               new_generation, own_folder, publish, read_pointer)
from pir.search.manifest import Entry, manifest_text, read_manifest
from pir.search.plan import Plan, Tiling, make_plan, read_problem
from pir.search.windows import SceneReads, map_reads

if TYPE_CHECKING:   # no torch here: `pir index --onnx` builds an index where torch is not installed
    from pir.search.encoder import Encoder   # or a pir.search.onnx_encoder.OnnxEncoder

EMBEDDINGS = "embeddings.npy"
MANIFEST = "manifest.csv"
TOKENIZER = "tokenizer"
THUMB_SIDE = 192            # px, longest side: a results grid shows them at about 160 px
_LOAD_TRIES = 5             # generations switched under one reader in a row before it gives up


@dataclass
class Index:
    """A loaded generation: its manifest rows and their embeddings (a read-only memmap)."""
    folder: Path
    generation: Path
    identity: dict
    entries: list[Entry]
    vectors: np.ndarray     # float16 [N, D]
    ann: ann_index.Ann | None = None   # the generation's approximate index, when it has one and it was loaded

    @property
    def root(self) -> Path:
        """The indexed folder (index.json stores it relative to the index folder when it can)."""
        return (self.folder / self.identity["root"]).resolve()

    @property
    def scenes(self) -> list[str]:
        return sorted({e.scene for e in self.entries if e.scene})

    def thumbnail(self, entry: Entry) -> Path:
        """The row's thumbnail: the file's, or its window's."""
        return thumbnail_path(self.folder, entry.sha256, entry.window)


@dataclass
class IndexResult:
    new: int
    unchanged: int
    unreadable: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    generation: Path | None = None

    def summary(self) -> str:
        """The last line `pir index` prints (an interface: scripts parse it)."""
        return f"indexed {self.new} new, {self.unchanged} unchanged, {len(self.unreadable)} unreadable"


def thumbnail_path(folder: Path, sha256: str, window: str = "") -> Path:
    """Content-addressed: ``<sha256>.jpg`` of a whole file, ``<sha256>-<col>-<row>-<width>-<height>.jpg``
    of a window ("col,row,width,height") of it."""
    name = f"{sha256}-{window.replace(',', '-')}" if window else sha256
    return folder / THUMBS / sha256[:2] / f"{name}.jpg"


def relative_or_absolute(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` when both are on one tree (so a moved project keeps working), else absolute."""
    try:
        return os.path.relpath(path.resolve(), start.resolve())
    except ValueError:   # another drive on Windows
        return str(path.resolve())


# --------------------------------------------------------------------------- reading an index

def load_index(folder: str | os.PathLike, ann: bool = True) -> Index:
    """The live generation of the index at ``folder``; ValueError naming the folder when there is none.
    ``ann``: also read its ANN index, when it has one (ValueError when its bytes are not the ones
    index.json records: docs/security.md); False leaves faiss out (exact search, the writer).

    Takes no lock: a writer keeps the previous generation, and when the generation read here vanishes
    mid-read (two writer runs finished meanwhile), CURRENT is read again (docs/search-and-geo.md).
    """
    folder = Path(folder).resolve()   # absolute: servers hand these paths to code with another base folder
    for _ in range(_LOAD_TRIES):
        name = read_pointer(folder)
        if name is None:
            raise ValueError(f"{folder}: not an index (no {CURRENT} file); build one with `pir index`")
        generation = folder / name
        try:
            if not GENERATION.match(name) or not generation.is_dir():
                raise FileNotFoundError(generation)
            identity = json.loads((generation / IDENTITY).read_text())
            entries = read_manifest(generation / MANIFEST)
            vectors = np.load(generation / EMBEDDINGS, mmap_mode="r")   # an open memmap outlives a delete
            meta = identity.get("ann") if ann else None
            approx = ann_index.read(generation, meta, len(entries), vectors.shape[-1]) if meta else None
        except FileNotFoundError:
            if read_pointer(folder) != name:
                continue                  # a writer switched generations during this read: read the new one
            raise ValueError(f"{folder / CURRENT}: names {name!r}, which is not a whole generation of this index") \
                from None
        if vectors.shape[0] != len(entries):
            raise ValueError(f"{generation}: {vectors.shape[0]} embeddings for {len(entries)} manifest rows")
        return Index(folder, generation, identity, entries, vectors, approx)
    raise ValueError(f"{folder}: its generation changed {_LOAD_TRIES} times while being read; try again")


# --------------------------------------------------------------------------- building one

def _checkpoint_identity(checkpoint: Path | str, encoder: Encoder, out: Path) -> dict:
    """Where the checkpoint is (a Hub id as it is: it resolves on any machine with the cache) and the
    sha256 of its bytes (a folder's files: pir.files.sha256_path), plus {id: commit} for a Hub id, and the
    engine that computes the rows. An encoder that is not the checkpoint itself (an ONNX export:
    pir.search.onnx_encoder) says all this itself, from what its export recorded."""
    own = getattr(encoder, "index_identity", None)
    if own is not None:
        return own(out)
    if not hub.is_hub_id(checkpoint):
        return {"checkpoint": relative_or_absolute(checkpoint, out),
                "checkpoint_sha256": files.sha256_path(checkpoint), "engine": "torch"}
    local = encoder.source or hub.local_path(checkpoint, "checkpoint")
    return {"checkpoint": str(checkpoint), "checkpoint_sha256": files.sha256_path(local),
            **({"hub": encoder.hub} if encoder.hub else {}), "engine": "torch"}


def _reusable(previous: Index | None, identity: dict) -> Index | None:
    """The previous generation when its rows were made the way this run would make them: by the same
    weights and by the same engine (torch, or onnxruntime on the same ONNX graph). The engines agree to
    about 1e-7 (docs/search-and-geo.md, "ONNX export ..."), yet a generation never mixes rows of two: every row
    is what index.json says made it, and switching engines re-embeds once. Indexes from before the
    engine was recorded were made by torch."""
    if previous is None:
        return None
    same = ("checkpoint_sha256", "bands", "tiling", "image_size", "dim", "root", "engine", "onnx_sha256")
    old, new = {"engine": "torch", **previous.identity}, {"engine": "torch", **identity}
    return previous if all(old.get(k) == new.get(k) for k in same) else None


def _thumbnail_jpeg(rgb: np.ndarray) -> bytes:
    image = Image.fromarray(rgb)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _save_thumbnail(folder: Path, sha256: str, jpeg: bytes, window: str = "") -> None:
    path = thumbnail_path(folder, sha256, window)
    if not path.is_file():
        with files.atomic_path(path) as tmp:
            tmp.write_bytes(jpeg)


@dataclass
class _Read:
    pixels: np.ndarray | None      # uint8 [3, S, S] (the encoder's preprocess)
    width: int = 0
    height: int = 0
    problem: str = ""
    thumbnail: bytes = b""         # the JPEG, when read for another process to write (pir.search.distributed)


def _read_one(path: Path, sha256: str, encoder: Encoder, folder: Path | None, bands: tuple[int, ...] | None,
              max_pixels: int | None = None, window: str = "", scenes: SceneReads | None = None) -> _Read:
    """Decode ``path`` (its ``window`` through ``scenes``, when one is given) for the encoder and make its
    thumbnail: written into the index ``folder``, or with ``folder=None`` (a torchrun rank other than 0,
    which never writes there) returned as JPEG bytes."""
    try:   # above the cap: ImageRefused, listed unreadable; decoders raise many types for corrupt files
        rgb = scenes.read(path, sha256, window) if window else read_rgb(path, bands, max_pixels=max_pixels)
    except Exception as exc:
        return _Read(None, problem=read_problem(path, exc))
    if folder is None:
        return _Read(encoder.preprocess(rgb), rgb.shape[1], rgb.shape[0], thumbnail=_thumbnail_jpeg(rgb))
    if not thumbnail_path(folder, sha256, window).is_file():
        _save_thumbnail(folder, sha256, _thumbnail_jpeg(rgb), window)
    return _Read(encoder.preprocess(rgb), rgb.shape[1], rgb.shape[0])


@dataclass
class _Batch:
    """What one process made of some of the rows to embed (files, or windows of scenes). A slot is a position
    in ``plan.todo``, which is the row's row of ``fresh``; a batch crosses processes under torchrun
    (pir.search.distributed)."""
    slots: list[int]                        # the rows that were embedded
    vectors: np.ndarray                     # float16 [len(slots), D]
    sizes: list[tuple[int, int]]            # (width, height) per slot
    problems: list[tuple[int, str]]         # (slot, reason) of the rows that could not be read
    thumbnails: list[tuple[str, bytes, str]]   # (sha256, JPEG, window) still to write: read with folder=None


def _work(plan: Plan, todo: list[int], slots: Iterable[int]) -> list[tuple[int, Path, str, str]]:
    """(slot, file, sha256, window) of the given slots of ``todo``, what :func:`_embed_batch` takes."""
    return [(k, plan.sources[todo[k]], plan.entries[todo[k]].sha256, plan.entries[todo[k]].window) for k in slots]


def _embed_batch(work: list[tuple[int, Path, str, str]], encoder: Encoder, folder: Path | None,
                 bands: tuple[int, ...] | None, max_pixels: int | None, pool: ThreadPoolExecutor) -> _Batch:
    """Read (in ``pool``: PIL, tifffile and GDAL decode outside the GIL; a run of one scene's windows per
    task, pir.search.windows.map_reads) and embed the (slot, file, sha256, window) ``work`` as one batch;
    thumbnails go into ``folder``, or into the batch when it is None."""
    reads = map_reads(work, lambda w, scenes: _read_one(w[1], w[2], encoder, folder, bands, max_pixels, w[3], scenes),
                      bands, max_pixels, pool)
    good = [(slot, r) for (slot, *_), r in zip(work, reads) if r.pixels is not None]
    vectors = (encoder.encode_images(np.stack([r.pixels for _, r in good])).astype(np.float16) if good
               else np.zeros((0, encoder.dim), np.float16))
    return _Batch([slot for slot, _ in good], vectors, [(r.width, r.height) for _, r in good],
                  [(slot, r.problem) for (slot, *_), r in zip(work, reads) if r.pixels is None],
                  [(sha, r.thumbnail, window) for (_, _, sha, window), r in zip(work, reads) if r.thumbnail])


def _take(batch: _Batch, plan: Plan, todo: list[int], fresh: np.ndarray, embedded: np.ndarray,
          unreadable: list[tuple[str, str]]) -> None:
    """Put ``batch`` into the generation being built: its vectors at their rows of ``fresh``, the image
    sizes into the manifest rows, ``embedded`` marked, the files that could not be read appended (a scene
    that cannot be opened fails each of its windows the same way: see :func:`unique`)."""
    fresh[batch.slots] = batch.vectors
    for slot, (width, height) in zip(batch.slots, batch.sizes):
        i = todo[slot]
        plan.entries[i] = Entry(**{**asdict(plan.entries[i]), "width": width, "height": height})
        embedded[i] = True
    unreadable += [(plan.entries[todo[slot]].path, reason) for slot, reason in batch.problems]


def _embed_new(plan: Plan, fresh: np.ndarray, encoder: Encoder, out: Path, bands: tuple[int, ...] | None,
               batch_size: int, workers: int, progress: bool, on_batch: Callable[[int], None] | None,
               max_pixels: int | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Embed the plan's new files into ``fresh`` (row k = k-th row to embed), filling in their sizes;
    (bool mask over the plan's rows that were embedded, [(path, reason)] of the unreadable ones).
    pir.search.distributed.Leader.embed_new does the same over torchrun's ranks."""
    todo = plan.todo
    embedded = np.zeros(len(plan.entries), bool)
    unreadable: list[tuple[str, str]] = []
    bar = tqdm(total=len(todo), desc="index images", unit="img", disable=not progress, mininterval=1.0)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(todo), batch_size):
            slots = range(start, min(start + batch_size, len(todo)))
            _take(_embed_batch(_work(plan, todo, slots), encoder, out, bands, max_pixels, pool),
                  plan, todo, fresh, embedded, unreadable)
            bar.update(len(slots))
            if on_batch is not None:
                on_batch(slots.stop)
    bar.close()
    return embedded, unique(unreadable)


def unique(unreadable: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (path, reason) list sorted, each pair once: one line for a scene none of whose windows opened."""
    return sorted(set(unreadable))


EmbedNew = Callable[..., "tuple[np.ndarray, list[tuple[str, str]]]"]   # the signature of _embed_new


def _copy_rows(target: np.ndarray, target_rows: list[int], source: np.ndarray, source_rows: list[int],
               chunk: int = 65536) -> None:
    """target[target_rows] = source[source_rows], a chunk at a time (memmaps on both sides stay on disk)."""
    for at in range(0, len(target_rows), chunk):
        target[target_rows[at:at + chunk]] = source[source_rows[at:at + chunk]]


def _ann_index(tmp: Path, previous: Index | None, reusable: Index | None, sources: list[int], ann: bool | None,
               threshold: int, progress: bool) -> dict | None:
    """The new generation's approximate index, written into ``tmp`` (pir.search.ann.wanted says whether
    it has one); what index.json records of it, None for none. ``sources[row]``: the row of ``reusable``
    the new row reuses, -1 for a new one. The previous generation's index is updated when its rows are
    reusable and its file reads back as recorded; otherwise one is trained (docs/scaling.md)."""
    vectors = np.load(tmp / EMBEDDINGS, mmap_mode="r")
    had = bool(previous is not None and previous.identity.get("ann"))
    if not ann_index.wanted(len(vectors), ann, threshold, had):
        return None
    prior = None
    if reusable is not None and reusable.identity.get("ann"):
        try:
            prior = ann_index.read(reusable.generation, reusable.identity["ann"], len(reusable.entries),
                                   reusable.vectors.shape[-1])
        except (ValueError, OSError):
            prior = None   # damaged or replaced: trained afresh from the vectors, which are whole
    if prior is None and progress:
        print(f"training an approximate index ({ann_index.KIND}) of {len(vectors)} vectors", file=sys.stderr,
              flush=True)
    made = ann_index.update(prior, vectors, np.asarray(sources, np.int64)) if prior else ann_index.build(vectors)
    return ann_index.write(made, tmp)


def build_index(source: str | os.PathLike, out: str | os.PathLike, encoder: Encoder, checkpoint: str | os.PathLike,
                *, bands: tuple[int, ...] | None = None, scenes: Mapping[str, str] | Callable[[str], str] | None = None,
                batch_size: int = 32, workers: int = 2, progress: bool = True, git_commit: str = "unknown",
                on_batch: Callable[[int], None] | None = None, stamp_time: bool = True,
                lock_timeout: float | None = None, max_pixels: int | None = None,
                embed_new: EmbedNew | None = None, ann: bool | None = None,
                ann_threshold: int = ann_index.ANN_THRESHOLD, tiling: Tiling | None = None) -> IndexResult:
    """Index every image under ``source`` into ``out`` (created or updated); see the module docstring.
    Images above ``max_pixels`` (None = pir.data.images.DEFAULT_MAX_PIXELS) are listed unreadable.
    ``tiling``: TIFFs are indexed as windows (pir.search.plan.Tiling; the pixel cap then holds per window),
    other images whole; ``source`` may then also be one TIFF, indexed with its folder as the root.

    ``out`` must be absent, empty or an index made here, and must not overlap ``source`` (except that
    ``source`` may be the index's own ``source/`` folder): else IndexFolderRefused, with nothing touched.
    One writer at a time: a second one waits for the index's lock, at most ``lock_timeout`` seconds
    (None = as long as it takes; then IndexBusy).
    ``scenes`` gives the scene label of a root-relative path (a mapping or a function; "" = unknown).
    ``on_batch(done)`` is called after each embedded batch (progress hooks, tests). ``stamp_time=False``
    writes ``created: null``, so the same inputs give the same bytes (the DVC stage: its outputs are
    reproducible). ``embed_new`` embeds the files the run needs (default: here, in batches); under
    torchrun, rank 0 passes pir.search.distributed.Leader.embed_new, which shares them out over the ranks
    (docs/scaling.md, "Distributed indexing").
    ``ann``: True gives the generation an approximate index (pir.search.ann), False none; None (default)
    one from ``ann_threshold`` vectors up, or when the previous generation had one.
    """
    root, only = Path(source).resolve(), None
    checkpoint = checkpoint if hub.is_hub_id(checkpoint) else Path(checkpoint)
    if root.is_file() and tiling is not None and is_geotiff_name(root):
        root, only = root.parent, root   # one scene: the folder is the root, the scene its only file
    elif not root.is_dir():
        raise ValueError(f"{source}: not a folder of images" + ("" if tiling else " (one TIFF scene: give a tiling)"))
    # the overlap checks hold for what is indexed: one scene's index folder may lie beside it
    with index_writer(out, source=only or root, lock_timeout=lock_timeout) as folder:
        return _build(root, folder, Path(out), encoder, checkpoint, bands=bands, scenes=scenes,
                      batch_size=batch_size, workers=workers, progress=progress, git_commit=git_commit,
                      on_batch=on_batch, stamp_time=stamp_time, max_pixels=max_pixels, embed_new=embed_new,
                      ann=ann, ann_threshold=ann_threshold, tiling=tiling, only=only)


def _build(root: Path, out: Path, given: Path, encoder: Encoder, checkpoint: Path | str, *, bands, scenes, batch_size,
           workers, progress, git_commit, on_batch, stamp_time, max_pixels=None,
           embed_new: EmbedNew | None = None, ann: bool | None = None,
           ann_threshold: int = ann_index.ANN_THRESHOLD, tiling: Tiling | None = None,
           only: Path | None = None) -> IndexResult:
    """build_index with the index folder ``out`` (resolved; ``given`` as the caller named it) held."""
    identity = {"format": FORMAT, "root": relative_or_absolute(root, out),
                **_checkpoint_identity(checkpoint, encoder, out),
                "preset": encoder.preset, "epoch": encoder.extra.get("epoch"), "git_commit": git_commit,
                "bands": list(bands) if bands else None, "tiling": asdict(tiling) if tiling else None,
                "image_size": encoder.cfg.image_size, "dim": encoder.dim}
    try:
        previous = load_index(out, ann=False)   # its ANN index is read below, only when it can be updated
    except ValueError:
        previous = None
    reusable = _reusable(previous, identity)
    scene_of = scenes if callable(scenes) else (lambda rel, table=dict(scenes or {}): table.get(rel, ""))
    plan, skipped = make_plan(root, reusable, scene_of, only=only, tiling=tiling, bands=bands, max_pixels=max_pixels)
    own_folder(out, THUMBS)

    number, tmp, generation = new_generation(out)
    todo = plan.todo
    # New vectors stream into a memmap inside the temporary generation: memory stays flat on big archives.
    fresh = np.lib.format.open_memmap(tmp / "fresh.npy", mode="w+", dtype=np.float16, shape=(len(todo), encoder.dim))
    embedded, unreadable = (embed_new or _embed_new)(plan, fresh, encoder, out, bands, batch_size, workers, progress,
                                                     on_batch, max_pixels)
    unreadable = unique(skipped + unreadable)

    # The generation's matrix: reused rows from the previous generation, the new ones from this run.
    kept = [i for i, s in enumerate(plan.sources) if not isinstance(s, Path) or embedded[i]]
    vectors = np.lib.format.open_memmap(tmp / EMBEDDINGS, mode="w+", dtype=np.float16, shape=(len(kept), encoder.dim))
    slot_of = {row: k for k, row in enumerate(todo)}
    reused_at = [n for n, i in enumerate(kept) if not isinstance(plan.sources[i], Path)]
    new_at = [n for n, i in enumerate(kept) if isinstance(plan.sources[i], Path)]
    _copy_rows(vectors, reused_at, reusable.vectors if reusable else fresh,
               [plan.sources[kept[n]] for n in reused_at])
    _copy_rows(vectors, new_at, fresh, [slot_of[kept[n]] for n in new_at])
    vectors.flush()
    del vectors, fresh
    (tmp / "fresh.npy").unlink()
    sources = [-1 if isinstance(plan.sources[i], Path) else plan.sources[i] for i in kept]
    approx = _ann_index(tmp, previous, reusable, sources, ann, ann_threshold, progress)

    files.write_text(tmp / MANIFEST, manifest_text(plan.entries[i] for i in kept))
    if hasattr(encoder.tokenizer, "save_pretrained"):   # CLIP's BPE ships inside open_clip: nothing to keep
        save_tokenizer(encoder.tokenizer, tmp / TOKENIZER)
    result = IndexResult(new=len(new_at), unchanged=len(reused_at), unreadable=unreadable)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if stamp_time else None
    files.write_json(tmp / IDENTITY, {**identity, "generation": number, "count": len(kept), "new": result.new,
                                      "unchanged": result.unchanged, "created": created, "ann": approx, "georef": 1,
                                      "unreadable": [{"path": p, "reason": r} for p, r in unreadable]})
    publish(out, tmp, generation)
    clean_stale(out, keep={generation.name} | ({previous.generation.name} if previous else set()))
    result.generation = given / generation.name
    return result
