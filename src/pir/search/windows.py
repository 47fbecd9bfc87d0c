"""Large scenes in windows (``pir index --tile T --stride S``): the rows of a scene, and the reads of a batch
of windows (docs/search-and-geo.md, "Large scenes").

- :func:`scene_windows`  a scene's window grid from its header, checked (bands, block layout, one window
  against the pixel cap, the count of windows against MAX_WINDOWS), and its georeferencing
- :func:`window_fields`  the manifest's georeferencing columns of every window of a scene, reprojected in
  one call (the same numbers as pir.data.geo.geo_fields window by window)
- :func:`map_reads`      a batch's reads over a thread pool: a whole file is one task; consecutive windows
  of one file are read in runs of WINDOWS_PER_OPEN by one task through one open scene

Memory is bounded by the window: a task holds one window's pixels at a time, and nothing here holds a
scene. A deep scene is stretched from the whole scene (pir.data.geo.Scene), a decimated read of all of it:
:func:`open_scene` computes that once per process, file (sha256) and bands, not once per open.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from concurrent.futures import Executor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pir.data.geo import DENSIFY, Georef, Scene, Window, geo_fields, numbers_text, outlines, to_lonlat
from pir.data.images import ImageRefused, check_size

MAX_WINDOWS = 1_000_000     # per scene: a small file can declare a huge raster, and each window is a manifest row
WINDOWS_PER_OPEN = 8        # windows one task reads through one open scene (an open costs about half a read)
_STRETCHES_KEPT = 1024      # scenes whose stretch a process remembers

WorkItem = tuple   # (slot, file, sha256, window text): what pir.search.index._embed_batch reads


class WindowUnreadable(Exception):
    """One window of a scene that opened could not be read (a damaged block): the window is named."""

    def __init__(self, window: str, cause: BaseException):
        super().__init__(f"window {window}: {cause}")
        self.window, self.cause = window, cause


def _starts(size: int, tile: int, stride: int) -> int:
    """How many windows pir.data.geo.window_grid puts along a side of ``size`` pixels."""
    return 1 if size <= tile else math.ceil((size - tile) / stride) + 1


def scene_windows(path: Path, tile: int, stride: int, bands: tuple[int, ...] | None, max_pixels: int | None
                  ) -> tuple[list[Window], Georef | None]:
    """The windows of the scene ``path`` and its georeferencing (None: not georeferenced), from its header:
    ImageRefused (or GDAL's error) when it cannot be read in windows. No pixel is read here."""
    with Scene(path, bands, max_pixels) as scene:   # the GTiff driver only; bands and block layout checked
        count = _starts(scene.width, tile, stride) * _starts(scene.height, tile, stride)
        if count > MAX_WINDOWS:
            raise ImageRefused(f"image is {scene.width}x{scene.height} pixels: {count:,} windows of {tile} px "
                               f"every {stride} px, above the {MAX_WINDOWS:,}-window cap; use a larger --tile "
                               "or --stride")
        check_size(min(tile, scene.width), min(tile, scene.height), max_pixels)   # every window is this size
        return scene.windows(tile, stride), scene.georef


def window_fields(georef: Georef | None, windows: Sequence[Window]) -> list[dict[str, str]]:
    """pir.data.geo.geo_fields(georef, window) of each window: the outlines of all of them go to lon/lat in
    one reprojection (a scene has thousands of windows; one call each costs ~0.2 ms)."""
    if georef is None or not windows:
        return [geo_fields(georef, w) for w in windows]
    xs, ys = outlines(georef.transform, windows, DENSIFY)   # the outline Georef.footprint walks
    corners = slice(0, None, DENSIFY - 1)                    # each edge's first point: the four corners
    lon, lat = to_lonlat(georef.crs, xs, ys)
    return [{"window": w.text(), "crs": georef.crs,
             "bounds": numbers_text((x[corners].min(), y[corners].min(), x[corners].max(), y[corners].max())),
             "lonlat": numbers_text((lo.min(), la.min(), lo.max(), la.max()))}
            for w, x, y, lo, la in zip(windows, xs, ys, lon, lat)]


# --------------------------------------------------------------------------- reading windows

_STRETCHES: OrderedDict[tuple, tuple | None] = OrderedDict()   # (file, sha256, bands) -> the scene's stretch
_STRETCHES_LOCK = threading.Lock()
_COMPUTING = tuple(threading.Lock() for _ in range(16))   # one scene's stretch computed by one thread at a time
_MISSING = object()


def _remembered(key: tuple):
    with _STRETCHES_LOCK:
        if key not in _STRETCHES:
            return _MISSING
        _STRETCHES.move_to_end(key)
        return _STRETCHES[key]


def open_scene(path: Path, sha256: str, bands: tuple[int, ...] | None, max_pixels: int | None) -> Scene:
    """pir.data.geo.Scene of ``path`` with its stretch computed (a deep scene), once per process for this
    file content and bands: threads reading windows of one new scene wait for the first to compute it."""
    key = (str(path), sha256, tuple(bands) if bands else None)
    limits = _remembered(key)
    if limits is not _MISSING:
        return Scene(path, bands, max_pixels, stretch=limits)
    with _COMPUTING[hash(key) % len(_COMPUTING)]:
        limits = _remembered(key)
        scene = Scene(path, bands, max_pixels, stretch=None if limits is _MISSING else limits)
        try:
            stretch = scene.stretch   # None for 8-bit samples
        except BaseException:
            scene.close()
            raise
        with _STRETCHES_LOCK:
            _STRETCHES[key] = stretch
            while len(_STRETCHES) > _STRETCHES_KEPT:
                _STRETCHES.popitem(last=False)
        return scene


class SceneReads:
    """The window reads of one task: the scene of the last file read stays open until another file's window
    is read, or the task ends (use as a context manager). A scene that cannot be opened (or stretched)
    raises its error for each of its windows; a window that cannot be read raises WindowUnreadable."""

    def __init__(self, bands: tuple[int, ...] | None, max_pixels: int | None):
        self.bands, self.max_pixels = bands, max_pixels
        self._key: tuple | None = None
        self._scene: Scene | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> "SceneReads":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._scene is not None:
            self._scene.close()
        self._key = self._scene = self._error = None

    def read(self, path: Path, sha256: str, window: str) -> np.ndarray:
        """uint8 [h, w, 3] of the window ``"col,row,width,height"`` of the scene ``path``."""
        if self._key != (path, sha256):
            self.close()
            self._key = (path, sha256)
            try:
                self._scene = open_scene(path, sha256, self.bands, self.max_pixels)
            except Exception as exc:  # GDAL raises its own types: the caller reports the file
                self._error = exc
        if self._error is not None:
            raise self._error
        try:
            return self._scene.window_rgb(Window.parse(window))
        except Exception as exc:
            raise WindowUnreadable(window, exc) from exc


def read_groups(work: Sequence[WorkItem]) -> list[list[WorkItem]]:
    """The work in order, cut into tasks: a whole file alone, consecutive windows of one file (same path and
    sha256) together, at most WINDOWS_PER_OPEN a task (a batch of one scene's windows still spreads over
    the pool's threads)."""
    groups: list[list[WorkItem]] = []
    for item in work:
        last = groups[-1][-1] if groups else None
        if (last is not None and item[3] and last[3] and tuple(last[1:3]) == tuple(item[1:3])
                and len(groups[-1]) < WINDOWS_PER_OPEN):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def map_reads(work: Sequence[WorkItem], read: Callable[[WorkItem, SceneReads], object],
              bands: tuple[int, ...] | None, max_pixels: int | None, pool: Executor) -> list:
    """``read(item, scenes)`` of every work item, in order, over ``pool`` (one task per :func:`read_groups`
    group; ``scenes`` reads a window item's pixels, ``scenes.read(path, sha256, window)``)."""
    def run(group: list[WorkItem]) -> list:
        with SceneReads(bands, max_pixels) as scenes:
            return [read(item, scenes) for item in group]
    return [result for part in pool.map(run, read_groups(work)) for result in part]
