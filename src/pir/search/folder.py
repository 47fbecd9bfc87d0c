"""The folder of a search index: what pir may touch in it, and one writer at a time.

docs/search-and-geo.md, "Index folder". An index folder holds a marker, ``pir-index.json``
({"format": 2, "generations": [...], "folders": [...]}), that lists by plain name everything the index
created: its generations, the temporary generations of runs in progress, and its own folders
(``thumbs/``, ``source/``). A name is listed before it is created, and only listed names are ever
deleted or replaced, so a user's files beside them are never touched. A folder that is not empty and has
no marker (a user's folder, an index of format 1) is refused before anything in it is created, and so is
an index folder that is, contains or lies inside the folder indexed (except the index's own ``source/``).

Writers hold an flock on ``pir-index.lock`` (created only once the folder passed the ownership check,
which is repeated under the lock); a second writer waits, or gives up after its ``lock_timeout``.
Readers take no lock (pir.search.index.load_index).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

from pir.files import fsync_dir, fsync_tree, write_durable

MARKER = "pir-index.json"
LOCK = "pir-index.lock"
CURRENT = "CURRENT"
IDENTITY = "index.json"
THUMBS = "thumbs"
SOURCE = "source"          # the index's own folder for images it keeps (an extracted archive, the stage's PNGs)
OWNED_FOLDERS = (SOURCE, THUMBS)
FORMAT = 2                 # 2: the marker file; format-1 folders (no marker) are read, never written
GENERATION = re.compile(r"^gen-(\d+)$")
_LISTED_GENERATION = re.compile(r"^(?:gen-(\d+)|\.gen-(\d+)\.[0-9a-f]+)$")   # what a marker may list
_LOCK_POLL_S = 0.2


class IndexFolderRefused(ValueError):
    """The folder is not one pir index may write into (not ours, or overlapping the indexed folder);
    nothing in it was touched."""


class IndexBusy(TimeoutError):
    """Another writer held the index's lock past the wait limit."""


def read_pointer(folder: Path) -> str | None:
    """CURRENT's generation name, or None when there is no CURRENT file."""
    try:
        return (Path(folder) / CURRENT).read_text().strip()
    except (FileNotFoundError, IsADirectoryError):
        return None


def _number(name: str) -> int:
    """The generation number of a name a marker may list (gen-3, .gen-3.<hex>)."""
    m = _LISTED_GENERATION.match(name)
    return int(m.group(1) or m.group(2))


def _marker_text(marker: dict) -> str:
    """Sorted lists and no clock, so the same index gives the same bytes (the DVC stage's reruns)."""
    data = {"format": FORMAT,
            "about": "a pir search index; pir index deletes or replaces only what this file lists",
            "generations": sorted(set(marker["generations"]), key=lambda name: (_number(name), name)),
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


def _held_marker(folder: Path) -> dict:
    """The marker of a folder being written (the lock held, so nothing else changes it)."""
    marker = _read_marker(folder)
    if marker is None:
        raise IndexFolderRefused(f"{folder}: its {MARKER} vanished while the index was being written")
    return marker


def _update_marker(folder: Path, marker: dict, *, generations: Iterable[str] | None = None,
                   add_generations: Iterable[str] = (), add_folders: Iterable[str] = ()) -> dict:
    """Rewrite ``marker``, just read from ``folder`` with the lock held: listing a name comes before
    creating it."""
    gens = list(marker["generations"] if generations is None else generations) + list(add_generations)
    marker = {"generations": gens, "folders": marker["folders"] + list(add_folders)}
    write_durable(folder / MARKER, _marker_text(marker))
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
        name = read_pointer(folder)
    except OSError:
        return False
    return bool(name and GENERATION.match(name) and (folder / name / IDENTITY).is_file())


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
                if deadline is not None and time.monotonic() >= deadline:
                    waited = f" after waiting {timeout:g} s" if timeout else ""
                    raise IndexBusy(f"{out}: another pir index run{_lock_holder(path)} is writing this "
                                    f"index{waited}; try again when it has finished") from None
                if not told:
                    print(f"{out}: another pir index run{_lock_holder(path)} is writing this index; "
                          "waiting for it to finish",
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


def _fsynced_temp(path: Path, text: str) -> Path:
    """A new, fsynced temporary file beside ``path`` (exclusive: never one that exists)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "x", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _claim(out: Path) -> None:
    """Make an absent or empty folder an index of ours: the folder, then the marker (os.link: exclusive,
    so a second writer starting at the same moment keeps the first one's marker and checks it)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = _fsynced_temp(out / MARKER, _marker_text({"generations": [], "folders": []}))
    except OSError as exc:
        raise type(exc)(f"{out}: cannot create the index there ({exc.strerror or type(exc).__name__})") from None
    try:
        os.link(tmp, out / MARKER)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(out)
    fsync_dir(out.parent)


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
    marker = _held_marker(out)
    listed = name in marker["folders"]
    if path.is_symlink() or (path.exists() and not (listed and path.is_dir())):
        raise IndexFolderRefused(f"{path}: not created by this index (its {MARKER} does not list it); "
                                 "move it away, or choose another index folder")
    if not listed:
        _update_marker(out, marker, add_folders=[name])
    path.mkdir(exist_ok=True)
    return path


def clean_stale(folder: Path, keep: set[str]) -> None:
    """Generations and temporary generations the marker lists (this index made them), except ``keep``:
    killed runs' leftovers and generations older than the previous one. Anything else in the folder (a
    user's ``gen-99``) is not ours and stays (docs/search-and-geo.md, "Index folder")."""
    marker = _held_marker(folder)
    listed = marker["generations"]
    for name in listed:
        path = folder / name
        if name not in keep and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
    # a name stays listed while its folder is there (a failed delete is retried next run)
    _update_marker(folder, marker, generations=[n for n in listed if n in keep or
                                        ((folder / n).is_dir() and not (folder / n).is_symlink())])


def _next_number(folder: Path, listed: list[str]) -> int:
    """One past the highest generation this index listed, stepping over names that exist (a user's gen-9)."""
    number = max(map(_number, listed), default=0) + 1
    while (folder / f"gen-{number}").exists() or (folder / f"gen-{number}").is_symlink():
        number += 1
    return number


def new_generation(folder: Path) -> tuple[int, Path, Path]:
    """(number, temporary folder, final folder) of the next generation: both names listed in the marker,
    then the temporary folder created, so a kill leaves nothing the next run may not remove."""
    marker = _held_marker(folder)
    number = _next_number(folder, marker["generations"])
    tmp, final = folder / f".gen-{number}.{secrets.token_hex(4)}", folder / f"gen-{number}"
    _update_marker(folder, marker, add_generations=[tmp.name, final.name])
    tmp.mkdir()
    return number, tmp, final


def publish(folder: Path, tmp: Path, final: Path) -> None:
    """Make a finished generation the live one. On disk before it is published and the pointer on disk
    after: a kill or a power cut at any point leaves CURRENT naming a whole generation."""
    fsync_tree(tmp)
    os.replace(tmp, final)
    fsync_dir(folder)
    write_durable(folder / CURRENT, final.name + "\n")   # the commit point
