"""What a ``pir index`` run embeds: SOURCE listed, one manifest row per file (one per window of a scene with
``--tile``), and for each row the previous generation's row it reuses or the file it reads
(docs/search-and-geo.md, "Incremental rule" and "Large scenes").

A file is embedded again only when it is new or changed: unchanged (size, mtime) reuses its rows without
reading the file; a changed stamp hashes it, and a known sha256 (a touched, copied or renamed file) still
reuses its rows. Rows are keyed by (file, window): a scene whose bytes are known reuses each window it had.
"""

from __future__ import annotations

import errno
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pir import files
from pir.data.geo import GEO_COLUMNS, geo_fields, is_geotiff_name, read_georef
from pir.data.images import IMAGE_EXTENSIONS, ImageRefused
from pir.errors import first_line
from pir.search.manifest import Entry
from pir.search.windows import WindowUnreadable, scene_windows, window_fields

if TYPE_CHECKING:
    from pir.search.index import Index


@dataclass(frozen=True)
class Tiling:
    """``pir index --tile T --stride S``: TIFFs indexed as windows of T x T pixels every S pixels."""
    tile: int
    stride: int


def os_reason(path: Path, exc: OSError) -> str:
    """Why a file could not be read, in words: a link's trouble named as such."""
    what = exc.strerror or type(exc).__name__
    if path.is_symlink():
        if exc.errno == errno.ENOENT:
            return f"dangling link ({what})"
        if exc.errno == errno.ELOOP:
            return f"link loop ({what})"
    return f"cannot read ({what})"


def read_problem(path: Path, exc: BaseException) -> str:
    """The unreadable reason of a file (or window) whose read raised ``exc``: a refusal's own line, a file
    gone or unreadable since it was hashed, or the decoder's error (decoders raise many types)."""
    if isinstance(exc, WindowUnreadable):
        return f"window {exc.window}: {read_problem(path, exc.cause)}"
    if isinstance(exc, ImageRefused):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return os_reason(path, exc)
    return f"unreadable image ({type(exc).__name__}: {first_line(exc, 200)})"


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


@dataclass
class Plan:
    """The rows of the next generation, in file order (a scene's windows in grid order), and where each
    one's vector comes from. Rows only: no pixel is held (windows are read as their batch is embedded)."""
    entries: list[Entry]
    sources: list[int | Path]      # per row: a row of the previous generation to reuse, or the file to read

    @property
    def todo(self) -> list[int]:
        """Rows to embed, ascending."""
        return [i for i, s in enumerate(self.sources) if isinstance(s, Path)]


def make_plan(root: Path, reusable: Index | None, scene_of: Callable[[str], str], *, only: Path | None = None,
              tiling: Tiling | None = None, bands: tuple[int, ...] | None = None, max_pixels: int | None = None
              ) -> tuple[Plan, list[tuple[str, str]]]:
    """The plan of the images under ``root`` (only the file ``only``, when given); see the module docstring.
    With ``tiling``, a TIFF is a scene: its header gives the window grid (a scene that cannot be read in
    windows is one unreadable line). Files that cannot be stat'ed, hashed or opened, and folders that
    cannot be listed, come back as (path, reason)."""
    old = reusable.entries if reusable else []
    by_path: dict[str, list[int]] = defaultdict(list)
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(old):
        by_path[e.path].append(i)
        by_sha[e.sha256].append(i)
    plan, unreadable = Plan([], []), []
    for path in [only] if only is not None else list_images(root, unreadable):
        rel = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
            rows = by_path.get(rel, [])
            same = bool(rows) and (old[rows[0]].size, old[rows[0]].mtime_ns) == (stat.st_size, stat.st_mtime_ns)
            if same:
                sha = old[rows[0]].sha256
            else:
                sha = files.sha256_file(path)
                rows = by_sha.get(sha, [])
        except OSError as exc:
            unreadable.append((rel, os_reason(path, exc)))
            continue
        stamp = {"path": rel, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha,
                 "scene": scene_of(rel) or ""}
        if tiling is not None and is_geotiff_name(rel):
            if same:    # unchanged: its windows as they were, the file not opened
                plan.entries += [replace(old[i], **stamp) for i in rows]
                plan.sources += rows
                continue
            try:
                windows, georef = scene_windows(path, tiling.tile, tiling.stride, bands, max_pixels)
            except Exception as exc:  # GDAL raises its own types for files it cannot parse
                unreadable.append((rel, read_problem(path, exc)))
                continue
            kept = {old[i].window: i for i in rows}
            for window, geo in zip(windows, window_fields(georef, windows)):
                plan.entries.append(Entry(**stamp, width=window.width, height=window.height, **geo))
                plan.sources.append(kept.get(geo["window"], path))
            continue
        row = next((i for i in reversed(rows) if not old[i].window), None)   # a whole file's row
        if row is None:
            width, height, geo = 0, 0, geo_fields(read_georef(path))
        else:
            width, height, geo = old[row].width, old[row].height, {k: getattr(old[row], k) for k in GEO_COLUMNS}
            if not reusable.identity.get("georef") and is_geotiff_name(rel):   # a generation from before georef
                geo = geo_fields(read_georef(path))
        plan.entries.append(Entry(**stamp, width=width, height=height, **geo))
        plan.sources.append(row if row is not None else path)
    return plan, unreadable
