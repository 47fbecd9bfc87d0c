"""Build or update a search index: every image under a folder embedded once, in atomic generations.

An index folder (docs/design.md, section 9 "Search", "Index folder"):

    pir-index.json     the marker: {"format": 2, "generations": [...], "folders": [...]}, what this index
                       created; pir index writes only into a folder that is absent, empty, or has one
    pir-index.lock     the writers' lock (flock); holds the writer's pid while one runs, empty otherwise
    CURRENT            the name of the live generation ("gen-3"), replaced atomically, last
    gen-<n>/
      embeddings.npy   float16 [N, D], row i = manifest row i, unit rows
      manifest.csv     path (relative to the root, '/'), size, mtime_ns, sha256, width, height, scene
      index.json       identity: checkpoint (path, sha256, preset), git commit, bands, root, counts, unreadable files
      tokenizer/       the model's tokenizer, so text queries need only the index and the checkpoint
    thumbs/<aa>/<sha256>.jpg   thumbnails, written while indexing, shared by generations (content-addressed)
    source/            images the index keeps itself: an extracted archive (pir index), the DVC stage's PNGs

Ownership: the index deletes or replaces only what its marker lists (generations, temporary generations,
``thumbs/`` and ``source/``), and lists a name before it creates it. A folder that is not empty and has no
marker (a user's folder, an index of format 1) is refused before anything in it is touched, and so is an
index folder that is, contains or lies inside the folder indexed (except the index's own ``source/``).

One writer at a time: a writer holds an flock on ``pir-index.lock`` (taken only once the folder passed the
ownership check, which is repeated under the lock); another one waits, or gives up after ``lock_timeout``.
A run writes a whole new generation into a temporary folder, fsyncs it, renames it into place and only
then points CURRENT at it (written atomically, fsynced), so a run killed at any moment leaves the previous
generation live and whole. Readers take no lock: the previous generation is kept, and a reader that finds
its generation gone mid-read reads CURRENT again.

A file is embedded again only when it is new or changed: unchanged (size, mtime) reuses the old row
without reading the file; a changed stamp hashes it, and an unchanged sha256 (a touched or moved
file) still reuses its row. Files that cannot be read (dangling links, link loops, permissions, decode
errors) and folders that cannot be listed are reported as unreadable; the rest is indexed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import re
import secrets
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pir import files
from pir.data.images import IMAGE_EXTENSIONS, ImageRefused, read_rgb
from pir.data.text import save_tokenizer
from pir.errors import first_line
from pir.search.encoder import Encoder

MARKER = "pir-index.json"
LOCK = "pir-index.lock"
CURRENT = "CURRENT"
EMBEDDINGS = "embeddings.npy"
MANIFEST = "manifest.csv"
IDENTITY = "index.json"
TOKENIZER = "tokenizer"
THUMBS = "thumbs"
SOURCE = "source"          # the index's own folder for images it keeps (an extracted archive, the stage's PNGs)
OWNED_FOLDERS = (SOURCE, THUMBS)
THUMB_SIDE = 192            # px, longest side: a results grid shows them at about 160 px
FORMAT = 2                  # 2: the marker file; format-1 folders (no marker) are read, never written
_GENERATION = re.compile(r"^gen-(\d+)$")
_LISTED_GENERATION = re.compile(r"^(?:gen-(\d+)|\.gen-(\d+)\.[0-9a-f]+)$")   # what a marker may list
_LOAD_TRIES = 5             # generations switched under one reader in a row before it gives up
_LOCK_POLL_S = 0.2


class IndexFolderRefused(ValueError):
    """The folder is not one pir index may write into (not ours, or overlapping the indexed folder);
    nothing in it was touched."""


class IndexBusy(TimeoutError):
    """Another writer held the index's lock past the wait limit."""


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

def _read_pointer(folder: Path) -> str | None:
    """CURRENT's generation name, or None when there is no CURRENT file."""
    try:
        return (Path(folder) / CURRENT).read_text().strip()
    except (FileNotFoundError, IsADirectoryError):
        return None


def current_generation(folder: Path) -> Path | None:
    """The live generation folder, or None for a folder that holds no index yet."""
    name = _read_pointer(folder)
    if name is None:
        return None
    if not _GENERATION.match(name) or not (Path(folder) / name).is_dir():
        raise ValueError(f"{Path(folder) / CURRENT}: names {name!r}, which is not a generation folder of this index")
    return Path(folder) / name


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


def load_index(folder: str | os.PathLike) -> Index:
    """The live generation of the index at ``folder``; ValueError naming the folder when there is none.

    Takes no lock: a writer keeps the previous generation, and when the generation read here vanishes
    mid-read (two writer runs finished meanwhile), CURRENT is read again (docs/design.md, 9 "Search").
    """
    folder = Path(folder).resolve()   # absolute: servers hand these paths to code with another base folder
    for _ in range(_LOAD_TRIES):
        name = _read_pointer(folder)
        if name is None:
            raise ValueError(f"{folder}: not an index (no {CURRENT} file); build one with `pir index`")
        generation = folder / name
        try:
            if not _GENERATION.match(name) or not generation.is_dir():
                raise FileNotFoundError(generation)
            identity = json.loads((generation / IDENTITY).read_text())
            entries = read_manifest(generation / MANIFEST)
            vectors = np.load(generation / EMBEDDINGS, mmap_mode="r")   # an open memmap outlives a delete
        except FileNotFoundError:
            if _read_pointer(folder) != name:
                continue                  # a writer switched generations during this read: read the new one
            raise ValueError(f"{folder / CURRENT}: names {name!r}, which is not a whole generation of this index") \
                from None
        if vectors.shape[0] != len(entries):
            raise ValueError(f"{generation}: {vectors.shape[0]} embeddings for {len(entries)} manifest rows")
        return Index(folder, generation, identity, entries, vectors)
    raise ValueError(f"{folder}: its generation changed {_LOAD_TRIES} times while being read; try again")


# --------------------------------------------------------------------------- owning and locking a folder
# docs/design.md, 9 "Search", "Index folder": what an index may touch, and one writer at a time.

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Every file and folder under ``folder`` on disk (before the rename that publishes it)."""
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _write_temp(path: Path, text: str) -> Path:
    """A new, fsynced temporary file beside ``path`` (exclusive: never one that exists)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "x", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _write_durable(path: Path, text: str) -> None:
    """Replace ``path`` atomically and on disk: temp file fsynced, renamed, the folder fsynced."""
    tmp = _write_temp(path, text)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _marker_text(marker: dict) -> str:
    """Sorted lists and no clock, so the same index gives the same bytes (the DVC stage's reruns)."""
    def order(name: str) -> tuple[int, str]:
        m = _LISTED_GENERATION.match(name)
        return int(m.group(1) or m.group(2)), name
    data = {"format": FORMAT,
            "about": "a pir search index; pir index deletes or replaces only what this file lists",
            "generations": sorted(set(marker["generations"]), key=order),
            "folders": sorted(set(marker["folders"]))}
    return json.dumps(data, indent=2) + "\n"


def _read_marker(folder: Path) -> dict | None:
    """The folder's marker, None when it has none; IndexFolderRefused when it is not a valid one of ours."""
    path = folder / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not JSON"
        raise IndexFolderRefused(f"{path}: unreadable index marker ({reason}); refusing to write into {folder}") \
            from None
    if isinstance(data, dict) and data.get("format") != FORMAT and isinstance(data.get("format"), int):
        raise IndexFolderRefused(f"{path}: an index of format {data['format']}, this pir writes format {FORMAT}; "
                                 "build a new index into a new or empty folder")
    gens, folders = (data.get("generations"), data.get("folders")) if isinstance(data, dict) else (None, None)
    # names only, checked: cleanup deletes what the marker lists, so it must never name a path elsewhere
    if not (isinstance(gens, list) and all(isinstance(g, str) and _LISTED_GENERATION.match(g) for g in gens)
            and isinstance(folders, list) and all(f in OWNED_FOLDERS for f in folders)):
        raise IndexFolderRefused(f"{path}: not a valid index marker (format {FORMAT}: generations, folders); "
                                 f"refusing to write into {folder}")
    return {"generations": list(gens), "folders": list(folders)}


def _update_marker(folder: Path, *, generations: Iterable[str] | None = None,
                   add_generations: Iterable[str] = (), add_folders: Iterable[str] = ()) -> dict:
    """Rewrite the marker (with the lock held): listing a name comes before creating it."""
    marker = _read_marker(folder)
    if marker is None:
        raise IndexFolderRefused(f"{folder}: its {MARKER} vanished while the index was being written")
    gens = list(marker["generations"] if generations is None else generations) + list(add_generations)
    marker = {"generations": gens, "folders": marker["folders"] + list(add_folders)}
    _write_durable(folder / MARKER, _marker_text(marker))
    return marker


def _check_overlap(out: Path, root: Path, marker: dict | None) -> None:
    """The index folder must not be, contain or lie inside the indexed folder (it would index its own
    thumbnails, or claim the user's images); only the index's own ``source/`` may be indexed from inside."""
    if out == root:
        raise IndexFolderRefused(f"{out}: the index folder is the folder being indexed; "
                                 "choose an index folder outside it")
    if out.is_relative_to(root):
        raise IndexFolderRefused(f"{out}: the index folder lies inside the folder being indexed ({root}); "
                                 "choose an index folder outside it")
    if root.is_relative_to(out) and not (root.is_relative_to(out / SOURCE) and marker is not None
                                         and SOURCE in marker["folders"]):
        raise IndexFolderRefused(f"{root}: the folder to index lies inside the index folder {out}; only the "
                                 f"index's own {SOURCE}/ may; index it into a folder outside it")


def _is_format_1(folder: Path) -> bool:
    """CURRENT naming a gen-<n> folder with an index.json: an index of pir before the marker."""
    try:
        name = _read_pointer(folder)
    except OSError:
        return False
    return bool(name and _GENERATION.match(name) and (folder / name / IDENTITY).is_file())


def check_index_folder(out: str | os.PathLike, source: str | os.PathLike | None = None) -> dict | None:
    """Refuse ``out`` unless it is absent, empty, or an index of ours (a valid marker), and (given the
    folder to index) unless the two do not overlap. Touches nothing. Returns the marker (None: absent or
    empty); raises IndexFolderRefused with one line saying why."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise IndexFolderRefused(f"{out}: not a folder; give a new, empty or index folder")
    marker = _read_marker(out) if out.is_dir() else None
    if source is not None:
        _check_overlap(out, Path(source).resolve(), marker)
    if marker is not None or not out.is_dir():
        return marker
    try:
        children = sorted(c.name for c in out.iterdir())
    except OSError as exc:
        raise IndexFolderRefused(f"{out}: cannot list the folder ({exc.strerror or type(exc).__name__})") from None
    if not children:
        return None
    if _is_format_1(out):
        raise IndexFolderRefused(f"{out}: an index of an older pir (format 1: {CURRENT} and gen-<n>, no {MARKER}); "
                                 "pir index does not write into it: build a new index into a new or empty folder")
    raise IndexFolderRefused(f"{out}: not empty and not an index (no {MARKER}); give a new or empty folder, "
                             "or an index folder made by pir index")


_HELD: dict[tuple[str, int], int] = {}    # (index folder, thread) -> nesting depth of index_writer


def _lock_holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _acquire(out: Path, timeout: float | None) -> int:
    """An flock on ``out/pir-index.lock`` (the file is created here, after the ownership check); waits
    with a note on stderr while another writer holds it, IndexBusy after ``timeout`` seconds."""
    path = out / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise type(exc)(f"{path}: cannot open the index's lock file ({exc.strerror or type(exc).__name__})") \
            from None
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _lock_holder(path)
                if deadline is not None and time.monotonic() >= deadline:
                    waited = f" after waiting {timeout:g} s" if timeout else ""
                    raise IndexBusy(f"{out}: another pir index run{holder} is writing this index{waited}; "
                                    "try again when it has finished") from None
                if not told:
                    print(f"{out}: another pir index run{holder} is writing this index; waiting for it to finish",
                          file=sys.stderr, flush=True)
                    told = True
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                time.sleep(_LOCK_POLL_S if left is None else min(_LOCK_POLL_S, left))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)   # for the note of a writer that waits
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)   # empty at rest: the folder's bytes do not depend on who wrote it last
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _claim(out: Path) -> None:
    """Make an absent or empty folder an index of ours: the folder, then the marker (os.link: exclusive,
    so a second writer starting at the same moment keeps the first one's marker and checks it)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = _write_temp(out / MARKER, _marker_text({"generations": [], "folders": []}))
    except OSError as exc:
        raise type(exc)(f"{out}: cannot create the index there ({exc.strerror or type(exc).__name__})") from None
    try:
        os.link(tmp, out / MARKER)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(out)
    _fsync_dir(out.parent)


@contextlib.contextmanager
def index_writer(out: str | os.PathLike, *, source: str | os.PathLike | None = None,
                 lock_timeout: float | None = None) -> Iterator[Path]:
    """Hold the index folder ``out`` for writing; yields it resolved.

    Checks it first (check_index_folder: nothing is created in a folder that is not ours), claims an
    absent or empty one (writes the marker), takes the writers' lock (``lock_timeout`` seconds at most,
    None = wait) and checks again under it. Nested calls in one thread (pir index extracting an archive,
    then build_index) share the lock.
    """
    out = Path(out).resolve()
    key = (str(out), threading.get_ident())
    if key in _HELD:
        check_index_folder(out, source)
        _HELD[key] += 1
        try:
            yield out
        finally:
            _HELD[key] -= 1
        return
    if check_index_folder(out, source) is None:
        _claim(out)
    fd = _acquire(out, lock_timeout)
    try:
        if check_index_folder(out, source) is None:   # what another process did before the lock was ours
            raise IndexFolderRefused(f"{out}: its {MARKER} vanished; refusing to write into it")
        _HELD[key] = 1
        try:
            yield out
        finally:
            del _HELD[key]
    finally:
        _release(fd)


def _require_held(folder: Path) -> None:
    if (str(folder), threading.get_ident()) not in _HELD:
        raise RuntimeError(f"{folder}: written without index_writer (the lock and the ownership check)")


def own_folder(out: str | os.PathLike, name: str) -> Path:
    """``out/name``, one of the index's own folders (``thumbs``, ``source``): listed in the marker, then
    created; IndexFolderRefused when something the index did not create is there. Call inside index_writer."""
    if name not in OWNED_FOLDERS:
        raise ValueError(f"{name!r}: not one of an index's own folders ({', '.join(OWNED_FOLDERS)})")
    out = Path(out).resolve()
    _require_held(out)
    path = out / name
    marker = _read_marker(out)
    if marker is None:
        raise IndexFolderRefused(f"{out}: its {MARKER} vanished while the index was being written")
    listed = name in marker["folders"]
    if path.is_symlink() or (path.exists() and not (listed and path.is_dir())):
        raise IndexFolderRefused(f"{path}: not created by this index (its {MARKER} does not list it); "
                                 "move it away, or choose another index folder")
    if not listed:
        _update_marker(out, add_folders=[name])
    path.mkdir(exist_ok=True)
    return path


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


def list_images(root: Path, unreadable: list[tuple[str, str]] | None = None) -> list[Path]:
    """Every image file under ``root`` (by extension, any case), sorted; hidden folders and files skipped.
    Folders that cannot be listed are appended to ``unreadable`` as (root-relative path + '/', reason)."""
    def note(exc: OSError) -> None:
        if unreadable is not None:
            rel = Path(exc.filename or root).relative_to(root).as_posix() if exc.filename else "."
            unreadable.append((f"{rel}/", f"cannot list folder ({exc.strerror or type(exc).__name__})"))

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=note):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [here / name for name in filenames
                  if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")]
    return sorted(found)


def _reusable(previous: Index | None, identity: dict) -> Index | None:
    """The previous generation when its rows were made the way this run would make them."""
    if previous is None:
        return None
    same = ("checkpoint_sha256", "bands", "image_size", "dim", "root")
    old = previous.identity
    return previous if all(old.get(k) == identity.get(k) for k in same) else None


def _write_thumbnail(folder: Path, sha256: str, rgb: np.ndarray) -> None:
    path = thumbnail_path(folder, sha256)
    if path.is_file():
        return
    image = Image.fromarray(rgb)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BICUBIC)
    with files.atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=85)


@dataclass
class _Read:
    pixels: torch.Tensor | None    # uint8 [3, S, S]
    width: int = 0
    height: int = 0
    problem: str = ""


def _read_one(path: Path, sha256: str, encoder: Encoder, folder: Path, bands: tuple[int, ...] | None,
              max_pixels: int | None = None) -> _Read:
    try:
        rgb = read_rgb(path, bands, max_pixels=max_pixels)   # above the cap: ImageRefused, listed unreadable
    except ImageRefused as exc:
        return _Read(None, problem=str(exc))
    except OSError as exc:  # the file went away or lost its permissions since it was hashed
        if exc.errno is not None:
            return _Read(None, problem=_os_reason(path, exc))
        return _Read(None, problem=f"unreadable image ({type(exc).__name__}: {first_line(exc, 200)})")
    except Exception as exc:  # decoders raise many types for corrupt files: report the file, keep going
        return _Read(None, problem=f"unreadable image ({type(exc).__name__}: {first_line(exc, 200)})")
    _write_thumbnail(folder, sha256, rgb)
    return _Read(encoder.preprocess(rgb), rgb.shape[1], rgb.shape[0])


def _clean_stale(folder: Path, keep: set[str]) -> None:
    """Generations and temporary generations the marker lists (this index made them), except ``keep``:
    killed runs' leftovers and generations older than the previous one. Anything else in the folder (a
    user's ``gen-99``) is not ours and stays (docs/design.md, 9 "Search", "Index folder")."""
    listed = _read_marker(folder)["generations"]
    for name in listed:
        path = folder / name
        if name not in keep and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
    # a name stays listed while its folder is there (a failed delete is retried next run)
    _update_marker(folder, generations=[n for n in listed if n in keep or
                                        ((folder / n).is_dir() and not (folder / n).is_symlink())])


def _next_number(folder: Path, listed: list[str]) -> int:
    """One past the highest generation this index listed, stepping over names that exist (a user's gen-9)."""
    number = max((int(m.group(1) or m.group(2)) for n in listed if (m := _LISTED_GENERATION.match(n))), default=0) + 1
    while (folder / f"gen-{number}").exists() or (folder / f"gen-{number}").is_symlink():
        number += 1
    return number


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


def _embed_new(plan: _Plan, fresh: np.ndarray, encoder: Encoder, out: Path, bands: tuple[int, ...] | None,
               batch_size: int, workers: int, progress: bool, on_batch: Callable[[int], None] | None,
               max_pixels: int | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Embed the plan's new files into ``fresh`` (row k = k-th row to embed), filling in their sizes;
    (bool mask over the plan's rows that were embedded, [(path, reason)] of the unreadable ones)."""
    todo = plan.todo
    embedded = np.zeros(len(plan.entries), bool)
    unreadable: list[tuple[str, str]] = []
    bar = tqdm(total=len(todo), desc="index images", unit="img", disable=not progress, mininterval=1.0)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:   # PIL and tifffile decode outside the GIL
        for start in range(0, len(todo), batch_size):
            rows = todo[start:start + batch_size]
            reads = list(pool.map(lambda i: _read_one(plan.sources[i], plan.entries[i].sha256, encoder, out, bands,
                                                      max_pixels), rows))
            good = [(i, r) for i, r in zip(rows, reads) if r.pixels is not None]
            unreadable += [(plan.entries[i].path, r.problem) for i, r in zip(rows, reads) if r.pixels is None]
            if good:
                slots = np.searchsorted(todo, [i for i, _ in good])   # todo is ascending: row -> its fresh slot
                fresh[slots] = encoder.encode_images(torch.stack([r.pixels for _, r in good])).astype(np.float16)
                for i, r in good:
                    plan.entries[i] = Entry(**{**asdict(plan.entries[i]), "width": r.width, "height": r.height})
                    embedded[i] = True
            bar.update(len(rows))
            if on_batch is not None:
                on_batch(start + len(rows))
    bar.close()
    return embedded, sorted(unreadable)


def _copy_rows(target: np.ndarray, target_rows: list[int], source: np.ndarray, source_rows: list[int],
               chunk: int = 65536) -> None:
    """target[target_rows] = source[source_rows], a chunk at a time (memmaps on both sides stay on disk)."""
    for at in range(0, len(target_rows), chunk):
        target[target_rows[at:at + chunk]] = source[source_rows[at:at + chunk]]


def build_index(source: str | os.PathLike, out: str | os.PathLike, encoder: Encoder, checkpoint: str | os.PathLike,
                *, bands: tuple[int, ...] | None = None, scenes: Mapping[str, str] | Callable[[str], str] | None = None,
                batch_size: int = 32, workers: int = 2, progress: bool = True, git_commit: str = "unknown",
                on_batch: Callable[[int], None] | None = None, stamp_time: bool = True,
                lock_timeout: float | None = None, max_pixels: int | None = None) -> IndexResult:
    """Index every image under ``source`` into ``out`` (created or updated); see the module docstring.
    Images above ``max_pixels`` (None = pir.data.images.DEFAULT_MAX_PIXELS) are listed unreadable.

    ``out`` must be absent, empty or an index made here, and must not overlap ``source`` (except that
    ``source`` may be the index's own ``source/`` folder): else IndexFolderRefused, with nothing touched.
    One writer at a time: a second one waits for the index's lock, at most ``lock_timeout`` seconds
    (None = as long as it takes; then IndexBusy).
    ``scenes`` gives the scene label of a root-relative path (a mapping or a function; "" = unknown).
    ``on_batch(done)`` is called after each embedded batch (progress hooks, tests). ``stamp_time=False``
    writes ``created: null``, so the same inputs give the same bytes (the DVC stage: its outputs are
    reproducible).
    """
    root, checkpoint = Path(source).resolve(), Path(checkpoint)
    if not root.is_dir():
        raise ValueError(f"{source}: not a folder of images")
    with index_writer(out, source=root, lock_timeout=lock_timeout) as folder:
        return _build(root, folder, Path(out), encoder, checkpoint, bands=bands, scenes=scenes,
                      batch_size=batch_size, workers=workers, progress=progress, git_commit=git_commit,
                      on_batch=on_batch, stamp_time=stamp_time, max_pixels=max_pixels)


def _build(root: Path, out: Path, given: Path, encoder: Encoder, checkpoint: Path, *, bands, scenes, batch_size,
           workers, progress, git_commit, on_batch, stamp_time, max_pixels=None) -> IndexResult:
    """build_index with the index folder ``out`` (resolved; ``given`` as the caller named it) held."""
    identity = {"format": FORMAT, "root": _relative_or_absolute(root, out),
                "checkpoint": _relative_or_absolute(checkpoint, out), "checkpoint_sha256": files.sha256_file(checkpoint),
                "preset": encoder.preset, "epoch": encoder.extra.get("epoch"), "git_commit": git_commit,
                "bands": list(bands) if bands else None, "image_size": encoder.cfg.image_size, "dim": encoder.dim}
    try:
        previous = load_index(out)
    except ValueError:
        previous = None
    reusable = _reusable(previous, identity)
    scene_of = scenes if callable(scenes) else (lambda rel, table=dict(scenes or {}): table.get(rel, ""))
    plan, skipped = _plan(root, reusable, scene_of)
    own_folder(out, THUMBS)

    number = _next_number(out, _read_marker(out)["generations"])
    tmp, generation = out / f".gen-{number}.{secrets.token_hex(4)}", out / f"gen-{number}"
    _update_marker(out, add_generations=[tmp.name, generation.name])   # listed before created: a kill leaves
    tmp.mkdir()                                                       # nothing the next run may not remove
    todo = plan.todo
    # New vectors stream into a memmap inside the temporary generation: memory stays flat on big archives.
    fresh = np.lib.format.open_memmap(tmp / "fresh.npy", mode="w+", dtype=np.float16, shape=(len(todo), encoder.dim))
    embedded, unreadable = _embed_new(plan, fresh, encoder, out, bands, batch_size, workers, progress, on_batch,
                                      max_pixels)
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

    files.write_text(tmp / MANIFEST, manifest_text(plan.entries[i] for i in kept))
    if hasattr(encoder.tokenizer, "save_pretrained"):   # CLIP's BPE ships inside open_clip: nothing to keep
        save_tokenizer(encoder.tokenizer, tmp / TOKENIZER)
    result = IndexResult(new=len(new_at), unchanged=len(reused_at), unreadable=unreadable)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if stamp_time else None
    files.write_json(tmp / IDENTITY, {**identity, "generation": number, "count": len(kept), "new": result.new,
                                      "unchanged": result.unchanged, "created": created,
                                      "unreadable": [{"path": p, "reason": r} for p, r in unreadable]})
    # On disk before it is published, and the pointer on disk after: a power cut at any point leaves
    # CURRENT naming a whole generation.
    _fsync_tree(tmp)
    os.replace(tmp, generation)
    _fsync_dir(out)
    _write_durable(out / CURRENT, generation.name + "\n")   # the commit point
    _clean_stale(out, keep={generation.name} | ({previous.generation.name} if previous else set()))
    result.generation = given / generation.name
    return result
