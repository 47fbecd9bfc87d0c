"""Build or update a search index: every image under a folder embedded once, in atomic generations.

An index folder (docs/design.md, section 9 "Search", "Index folder"):

    pir-index.json     the marker: {"format": 2, "generations": [...], "folders": [...]}, what this index
                       created; pir index writes only into a folder that is absent, empty, or has one
    pir-index.lock     the writers' lock (flock); holds the writer's pid while one runs, empty otherwise
    CURRENT            the name of the live generation ("gen-3"), replaced atomically, last
    gen-<n>/
      embeddings.npy   float16 [N, D], row i = manifest row i, unit rows
      manifest.csv     path (relative to the root, '/'), size, mtime_ns, sha256, width, height, scene
      index.json       identity: checkpoint (path or Hub id, sha256, preset; a Hub id's commit), git commit,
                       bands, root, counts, unreadable files
      tokenizer/       the model's tokenizer, so text queries need only the index and the checkpoint
      ann.faiss        an approximate (faiss IVF-PQ) index of the rows, above a size or with --ann; its
                       kind, parameters, size and sha256 in index.json["ann"] (pir.search.ann)
    thumbs/<aa>/<sha256>.jpg   thumbnails, written while indexing, shared by generations (content-addressed)
    source/            images the index keeps itself: an extracted archive (pir index), the DVC stage's PNGs

The folder's ownership marker, lock and generation switch are pir.search.folder's: this module writes
only inside a folder that module holds. A run writes a whole new generation into a temporary folder and
publishes it (renamed into place, then CURRENT switched, all fsynced), so a run killed at any moment
leaves the previous generation live and whole. Readers take no lock: the previous generation is kept,
and a reader that finds its generation gone mid-read reads CURRENT again.

A file is embedded again only when it is new or changed: unchanged (size, mtime) reuses the old row
without reading the file; a changed stamp hashes it, and an unchanged sha256 (a touched or moved
file) still reuses its row. Files that cannot be read (dangling links, link loops, permissions, decode
errors) and folders that cannot be listed are reported as unreadable; the rest is indexed.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pir import files, hub
from pir.data.images import IMAGE_EXTENSIONS, ImageRefused, read_rgb
from pir.data.text import save_tokenizer
from pir.errors import first_line
from pir.search import ann as ann_index
from pir.search.encoder import Encoder
from pir.search.folder import (CURRENT, FORMAT, GENERATION, IDENTITY, THUMBS, clean_stale, index_writer,
                               new_generation, own_folder, publish, read_pointer)

EMBEDDINGS = "embeddings.npy"
MANIFEST = "manifest.csv"
TOKENIZER = "tokenizer"
THUMB_SIDE = 192            # px, longest side: a results grid shows them at about 160 px
_LOAD_TRIES = 5             # generations switched under one reader in a row before it gives up


@dataclass(frozen=True)
class Entry:
    """One indexed image (a manifest row)."""
    path: str               # relative to the indexed root, '/'-separated
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    scene: str = ""         # "" = unknown


MANIFEST_FIELDS = tuple(f.name for f in fields(Entry))


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
        return thumbnail_path(self.folder, entry.sha256)


@dataclass
class IndexResult:
    new: int
    unchanged: int
    unreadable: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    generation: Path | None = None

    def summary(self) -> str:
        """The last line `pir index` prints (an interface: scripts parse it)."""
        return f"indexed {self.new} new, {self.unchanged} unchanged, {len(self.unreadable)} unreadable"


def thumbnail_path(folder: Path, sha256: str) -> Path:
    return folder / THUMBS / sha256[:2] / f"{sha256}.jpg"


def _relative_or_absolute(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` when both are on one tree (so a moved project keeps working), else absolute."""
    try:
        return os.path.relpath(path.resolve(), start.resolve())
    except ValueError:   # another drive on Windows
        return str(path.resolve())


# --------------------------------------------------------------------------- reading an index

def read_manifest(path: Path) -> list[Entry]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != MANIFEST_FIELDS:
            raise ValueError(f"{path}: expected the columns {','.join(MANIFEST_FIELDS)}")
        return [Entry(r["path"], int(r["size"]), int(r["mtime_ns"]), r["sha256"], int(r["width"]),
                      int(r["height"]), r["scene"]) for r in reader]


def manifest_text(entries: Iterable[Entry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    writer.writerows(tuple(asdict(e).values()) for e in entries)
    return out.getvalue()


def load_index(folder: str | os.PathLike, ann: bool = True) -> Index:
    """The live generation of the index at ``folder``; ValueError naming the folder when there is none.
    ``ann``: also read its ANN index, when it has one (ValueError when its bytes are not the ones
    index.json records: docs/security.md); False leaves faiss out (exact search, the writer).

    Takes no lock: a writer keeps the previous generation, and when the generation read here vanishes
    mid-read (two writer runs finished meanwhile), CURRENT is read again (docs/design.md, 9 "Search").
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

def _os_reason(path: Path, exc: OSError) -> str:
    """Why a file could not be read, in words: a link's trouble named as such."""
    what = exc.strerror or type(exc).__name__
    if path.is_symlink():
        if exc.errno == errno.ENOENT:
            return f"dangling link ({what})"
        if exc.errno == errno.ELOOP:
            return f"link loop ({what})"
    return f"cannot read ({what})"


def list_images(root: Path, unreadable: list[tuple[str, str]]) -> list[Path]:
    """Every image file under ``root`` (by extension, any case), sorted; hidden folders and files skipped.
    Folders that cannot be listed are appended to ``unreadable`` as (root-relative path + '/', reason)."""
    def note(exc: OSError) -> None:
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        unreadable.append((f"{rel}/", f"cannot list folder ({exc.strerror or type(exc).__name__})"))

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=note):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [here / name for name in filenames
                  if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")]
    return sorted(found)


def _checkpoint_identity(checkpoint: Path | str, encoder: Encoder, out: Path) -> dict:
    """Where the checkpoint is (a Hub id as it is: it resolves on any machine with the cache) and the
    sha256 of its bytes (a folder's files: pir.files.sha256_path), plus {id: commit} for a Hub id."""
    if not hub.is_hub_id(checkpoint):
        return {"checkpoint": _relative_or_absolute(checkpoint, out),
                "checkpoint_sha256": files.sha256_path(checkpoint)}
    local = encoder.source or hub.local_path(checkpoint, "checkpoint")
    return {"checkpoint": str(checkpoint), "checkpoint_sha256": files.sha256_path(local),
            **({"hub": encoder.hub} if encoder.hub else {})}


def _reusable(previous: Index | None, identity: dict) -> Index | None:
    """The previous generation when its rows were made the way this run would make them."""
    if previous is None:
        return None
    same = ("checkpoint_sha256", "bands", "image_size", "dim", "root")
    old = previous.identity
    return previous if all(old.get(k) == identity.get(k) for k in same) else None


def _thumbnail_jpeg(rgb: np.ndarray) -> bytes:
    image = Image.fromarray(rgb)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _save_thumbnail(folder: Path, sha256: str, jpeg: bytes) -> None:
    path = thumbnail_path(folder, sha256)
    if not path.is_file():
        with files.atomic_path(path) as tmp:
            tmp.write_bytes(jpeg)


@dataclass
class _Read:
    pixels: torch.Tensor | None    # uint8 [3, S, S]
    width: int = 0
    height: int = 0
    problem: str = ""
    thumbnail: bytes = b""         # the JPEG, when read for another process to write (pir.search.distributed)


def _read_one(path: Path, sha256: str, encoder: Encoder, folder: Path | None, bands: tuple[int, ...] | None,
              max_pixels: int | None = None) -> _Read:
    """Decode ``path`` for the encoder and make its thumbnail: written into the index ``folder``, or with
    ``folder=None`` (a torchrun rank other than 0, which never writes there) returned as JPEG bytes."""
    try:
        rgb = read_rgb(path, bands, max_pixels=max_pixels)   # above the cap: ImageRefused, listed unreadable
    except ImageRefused as exc:
        return _Read(None, problem=str(exc))
    except Exception as exc:  # decoders raise many types for corrupt files: report the file, keep going
        if isinstance(exc, OSError) and exc.errno is not None:   # gone, or lost its permissions, since hashed
            return _Read(None, problem=_os_reason(path, exc))
        return _Read(None, problem=f"unreadable image ({type(exc).__name__}: {first_line(exc, 200)})")
    if folder is None:
        return _Read(encoder.preprocess(rgb), rgb.shape[1], rgb.shape[0], thumbnail=_thumbnail_jpeg(rgb))
    if not thumbnail_path(folder, sha256).is_file():
        _save_thumbnail(folder, sha256, _thumbnail_jpeg(rgb))
    return _Read(encoder.preprocess(rgb), rgb.shape[1], rgb.shape[0])


@dataclass
class _Plan:
    """The rows of the next generation, in file order, and where each one's vector comes from."""
    entries: list[Entry]
    sources: list[int | Path]      # per row: a row of the previous generation to reuse, or the file to embed

    @property
    def todo(self) -> list[int]:
        """Rows to embed, ascending."""
        return [i for i, s in enumerate(self.sources) if isinstance(s, Path)]


def _plan(root: Path, reusable: Index | None, scene_of: Callable[[str], str]
          ) -> tuple[_Plan, list[tuple[str, str]]]:
    """Unchanged (size, mtime) reuses a row without reading the file; a changed stamp hashes the file,
    and a known sha256 (touched, copied or renamed) still reuses its row; the rest is embedded.
    Files that cannot be stat'ed or hashed, and folders that cannot be listed, come back as (path, reason)."""
    by_path = {e.path: i for i, e in enumerate(reusable.entries)} if reusable else {}
    by_sha = {e.sha256: i for i, e in enumerate(reusable.entries)} if reusable else {}
    plan, unreadable = _Plan([], []), []
    for path in list_images(root, unreadable):
        rel = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
            old = by_path.get(rel)
            if old is not None and (reusable.entries[old].size, reusable.entries[old].mtime_ns) == (stat.st_size,
                                                                                                  stat.st_mtime_ns):
                sha = reusable.entries[old].sha256
            else:
                sha = files.sha256_file(path)
                old = by_sha.get(sha)
        except OSError as exc:
            unreadable.append((rel, _os_reason(path, exc)))
            continue
        width, height = (reusable.entries[old].width, reusable.entries[old].height) if old is not None else (0, 0)
        plan.entries.append(Entry(rel, stat.st_size, stat.st_mtime_ns, sha, width, height, scene_of(rel) or ""))
        plan.sources.append(old if old is not None else path)
    return plan, unreadable


@dataclass
class _Batch:
    """What one process made of some of the files to embed. A slot is a position in ``plan.todo``, which
    is the file's row of ``fresh``; a batch crosses processes under torchrun (pir.search.distributed)."""
    slots: list[int]                        # the files that were embedded
    vectors: np.ndarray                     # float16 [len(slots), D]
    sizes: list[tuple[int, int]]            # (width, height) per slot
    problems: list[tuple[int, str]]         # (slot, reason) of the files that could not be read
    thumbnails: list[tuple[str, bytes]]     # (sha256, JPEG) still to write: read with folder=None


def _work(plan: _Plan, todo: list[int], slots: Iterable[int]) -> list[tuple[int, Path, str]]:
    """(slot, file, sha256) of the given slots of ``todo``, what :func:`_embed_batch` takes."""
    return [(k, plan.sources[todo[k]], plan.entries[todo[k]].sha256) for k in slots]


def _embed_batch(work: list[tuple[int, Path, str]], encoder: Encoder, folder: Path | None,
                 bands: tuple[int, ...] | None, max_pixels: int | None, pool: ThreadPoolExecutor) -> _Batch:
    """Read (in ``pool``: PIL and tifffile decode outside the GIL) and embed the (slot, file, sha256)
    ``work`` as one batch; thumbnails go into ``folder``, or into the batch when it is None."""
    reads = list(pool.map(lambda w: _read_one(w[1], w[2], encoder, folder, bands, max_pixels), work))
    good = [(slot, r) for (slot, _, _), r in zip(work, reads) if r.pixels is not None]
    vectors = (encoder.encode_images(torch.stack([r.pixels for _, r in good])).astype(np.float16) if good
               else np.zeros((0, encoder.dim), np.float16))
    return _Batch([slot for slot, _ in good], vectors, [(r.width, r.height) for _, r in good],
                  [(slot, r.problem) for (slot, _, _), r in zip(work, reads) if r.pixels is None],
                  [(sha, r.thumbnail) for (_, _, sha), r in zip(work, reads) if r.thumbnail])


def _take(batch: _Batch, plan: _Plan, todo: list[int], fresh: np.ndarray, embedded: np.ndarray,
          unreadable: list[tuple[str, str]]) -> None:
    """Put ``batch`` into the generation being built: its vectors at their rows of ``fresh``, the image
    sizes into the manifest rows, ``embedded`` marked, the files that could not be read appended."""
    fresh[batch.slots] = batch.vectors
    for slot, (width, height) in zip(batch.slots, batch.sizes):
        i = todo[slot]
        plan.entries[i] = Entry(**{**asdict(plan.entries[i]), "width": width, "height": height})
        embedded[i] = True
    unreadable += [(plan.entries[todo[slot]].path, reason) for slot, reason in batch.problems]


def _embed_new(plan: _Plan, fresh: np.ndarray, encoder: Encoder, out: Path, bands: tuple[int, ...] | None,
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
    return embedded, sorted(unreadable)


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
                ann_threshold: int = ann_index.ANN_THRESHOLD) -> IndexResult:
    """Index every image under ``source`` into ``out`` (created or updated); see the module docstring.
    Images above ``max_pixels`` (None = pir.data.images.DEFAULT_MAX_PIXELS) are listed unreadable.

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
    root = Path(source).resolve()
    checkpoint = checkpoint if hub.is_hub_id(checkpoint) else Path(checkpoint)
    if not root.is_dir():
        raise ValueError(f"{source}: not a folder of images")
    with index_writer(out, source=root, lock_timeout=lock_timeout) as folder:
        return _build(root, folder, Path(out), encoder, checkpoint, bands=bands, scenes=scenes,
                      batch_size=batch_size, workers=workers, progress=progress, git_commit=git_commit,
                      on_batch=on_batch, stamp_time=stamp_time, max_pixels=max_pixels, embed_new=embed_new,
                      ann=ann, ann_threshold=ann_threshold)


def _build(root: Path, out: Path, given: Path, encoder: Encoder, checkpoint: Path | str, *, bands, scenes, batch_size,
           workers, progress, git_commit, on_batch, stamp_time, max_pixels=None,
           embed_new: EmbedNew | None = None, ann: bool | None = None,
           ann_threshold: int = ann_index.ANN_THRESHOLD) -> IndexResult:
    """build_index with the index folder ``out`` (resolved; ``given`` as the caller named it) held."""
    identity = {"format": FORMAT, "root": _relative_or_absolute(root, out),
                **_checkpoint_identity(checkpoint, encoder, out),
                "preset": encoder.preset, "epoch": encoder.extra.get("epoch"), "git_commit": git_commit,
                "bands": list(bands) if bands else None, "image_size": encoder.cfg.image_size, "dim": encoder.dim}
    try:
        previous = load_index(out, ann=False)   # its ANN index is read below, only when it can be updated
    except ValueError:
        previous = None
    reusable = _reusable(previous, identity)
    scene_of = scenes if callable(scenes) else (lambda rel, table=dict(scenes or {}): table.get(rel, ""))
    plan, skipped = _plan(root, reusable, scene_of)
    own_folder(out, THUMBS)

    number, tmp, generation = new_generation(out)
    todo = plan.todo
    # New vectors stream into a memmap inside the temporary generation: memory stays flat on big archives.
    fresh = np.lib.format.open_memmap(tmp / "fresh.npy", mode="w+", dtype=np.float16, shape=(len(todo), encoder.dim))
    embedded, unreadable = (embed_new or _embed_new)(plan, fresh, encoder, out, bands, batch_size, workers, progress,
                                                     on_batch, max_pixels)
    unreadable = sorted(skipped + unreadable)

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
                                      "unchanged": result.unchanged, "created": created, "ann": approx,
                                      "unreadable": [{"path": p, "reason": r} for p, r in unreadable]})
    publish(out, tmp, generation)
    clean_stale(out, keep={generation.name} | ({previous.generation.name} if previous else set()))
    result.generation = given / generation.name
    return result
