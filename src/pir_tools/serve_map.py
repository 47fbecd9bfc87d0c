"""The map of ``pir serve``'s page (docs/search-and-geo.md, "Serving", "Map"): hits' footprints as
lon/lat rings, each scene's quicklook warped to Web Mercator as the base layer, window crops, and the
optional web base map's Content-Security-Policy.

- :func:`footprint`  a manifest row's footprint, [[lon, lat], ...] (closed, counter-clockwise), from its
  ``crs`` and ``bounds`` columns (pir.data.geo.bounds_footprint); None when it has none or they do not parse
- :func:`make_quicklook`  a scene's decimated read (pir.data.geo.Scene.quicklook) warped onto a Web Mercator
  (EPSG:3857) grid: an RGBA PNG (alpha 0 outside the scene) and its (west, south, east, north). The grid's
  edges are lines of constant x and y in EPSG:3857, so in lon/lat they are meridians and parallels: Leaflet's
  ``L.imageOverlay`` stretches the image linearly between the projected corners, which puts every pixel
  where it belongs (exact up to the resampling, not an approximation by a lon/lat box).
- :class:`Quicklooks`  a small in-memory LRU of them (the server never writes into the index), computed one
  at a time
- :func:`crop_png`  one window of a scene as PNG (Scene.window_rgb: the scene's own stretch)
- :func:`basemap_source`  the origin a ``--basemap`` URL template loads tiles from, for the CSP's img-src

Every file is read through an open descriptor the caller has checked against its manifest row (size and
sha256): rasterio opens ``/proc/self/fd/N``, the same file, even if the path was replaced meanwhile.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import numpy as np

QUICKLOOK_SIDE = 1024        # px, longest side of a quicklook
QUICKLOOK_CACHE = 16         # quicklooks kept in memory (a 1024 px RGBA PNG is 1-3 MB)
MAP_ALL_RASTERS = 64         # up to this many georeferenced files, the map shows all their quicklooks
MAX_CROP_PIXELS = 4096 * 4096   # a window crop larger than this is refused (a manifest is untrusted input)
WEB_MERCATOR = "EPSG:3857"
HALF_WORLD = 20037508.342789244   # EPSG:3857 x of the antimeridian
WINDOW_TEXT = re.compile(r"^\d{1,9},\d{1,9},\d{1,9},\d{1,9}$")   # the only window texts the routes accept
# a tile server's host: letters, digits, dots and dashes, optionally a leading "{s}." (Leaflet's subdomains)
_HOST = re.compile(r"^(\{s\}\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def fd_source(fd: int, path: os.PathLike | str) -> str:
    """A name GDAL can open for an open descriptor: ``/proc/self/fd/N`` (Linux) or ``/dev/fd/N`` reopen the
    very file the descriptor holds; elsewhere the path (checked just before, so only a race could differ)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return f"{folder}/{fd}"
    return str(path)


@functools.lru_cache(maxsize=65536)
def _ring(crs: str, bounds: str) -> tuple[tuple[float, float], ...] | None:
    from pir.data.geo import bounds_footprint, parse_numbers
    try:
        numbers = parse_numbers(bounds)
        if len(numbers) != 4 or not all(map(math.isfinite, numbers)):
            return None
        ring = bounds_footprint(crs, numbers)
    except Exception:   # a manifest is untrusted: an unknown CRS or numbers that do not parse are no footprint
        return None
    if not all(math.isfinite(v) for point in ring for v in point):
        return None
    return tuple((round(lon, 7), round(lat, 7)) for lon, lat in ring)   # 1 cm: the JSON stays short


def footprint(entry) -> list[list[float]] | None:
    """[[lon, lat], ...] of a manifest row (closed, counter-clockwise, as GeoJSON), or None."""
    if not entry.crs or not entry.bounds:
        return None
    ring = _ring(entry.crs, entry.bounds)
    return None if ring is None else [list(point) for point in ring]


@dataclass(frozen=True)
class Quicklook:
    png: bytes
    bounds: tuple[float, float, float, float]   # west, south, east, north of the PNG's outer pixel edges
    width: int
    height: int


def mercator_grid(georef, width: int, height: int) -> tuple[tuple[float, float, float, float], int, int]:
    """The EPSG:3857 grid a ``width`` x ``height`` quicklook of a scene is warped onto: the box around the
    scene's outline (densified edges: a projected edge curves), its longest side ``max(width, height)`` px;
    ((min x, min y, max x, max y), columns, rows). ValueError for a scene Web Mercator cannot show (beyond
    about 85 degrees of latitude, or across the antimeridian)."""
    from rasterio.warp import transform

    from pir.data.geo import DENSIFY
    xs, ys = zip(*georef.corners(None, DENSIFY))
    mx, my = transform(georef.crs, WEB_MERCATOR, list(xs), list(ys))
    if not all(map(math.isfinite, [*mx, *my])):
        raise ValueError("the scene lies where Web Mercator is not defined")
    x0, x1, y0, y1 = min(mx), max(mx), min(my), max(my)
    if x1 - x0 >= HALF_WORLD or max(abs(y0), abs(y1)) > HALF_WORLD:
        raise ValueError("the scene crosses the antimeridian or lies beyond 85 degrees of latitude")
    side = max(width, height)
    step = max(x1 - x0, y1 - y0) / side
    return (x0, y0, x1, y1), max(1, round((x1 - x0) / step)), max(1, round((y1 - y0) / step))


def make_quicklook(source: str, bands: tuple[int, ...] | None, max_side: int = QUICKLOOK_SIDE) -> Quicklook:
    """The scene at ``source`` decimated to ``max_side`` px and warped to Web Mercator (see the module
    docstring); ValueError when it is not georeferenced or cannot be shown, ImageRefused / rasterio's errors
    when it cannot be read."""
    import rasterio
    from PIL import Image
    from rasterio.enums import Resampling
    from rasterio.transform import Affine
    from rasterio.warp import reproject, transform

    from pir.data.geo import Scene

    with rasterio.Env(GDAL_PAM_ENABLED="NO"):   # never a .aux.xml written beside a served file
        with Scene(source, bands) as scene:
            georef = scene.georef
            if georef is None:
                raise ValueError("not georeferenced")
            rgb = scene.quicklook(max_side)
        height, width = rgb.shape[:2]
        # the quicklook's pixel covers (scene width / width) x (scene height / height) of the scene's pixels
        src_transform = Affine(*georef.transform) @ Affine.scale(georef.width / width, georef.height / height)
        (x0, y0, x1, y1), cols, rows = mercator_grid(georef, width, height)
        dst_transform = Affine((x1 - x0) / cols, 0.0, x0, 0.0, -(y1 - y0) / rows, y1)   # north-up, its corners exact
        rgba = np.zeros((4, rows, cols), np.uint8)
        common = {"src_transform": src_transform, "src_crs": georef.crs, "dst_transform": dst_transform,
                  "dst_crs": WEB_MERCATOR}
        reproject(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)), rgba[:3], resampling=Resampling.bilinear, **common)
        # alpha: 255 where the scene is, 0 around it; nearest, so adjacent scenes meet without a seam
        reproject(np.full((1, height, width), 255, np.uint8), rgba[3:], resampling=Resampling.nearest,
                  dst_nodata=0, **common)
        (west, east), (south, north) = transform(WEB_MERCATOR, "EPSG:4326", [x0, x1], [y0, y1])
    out = io.BytesIO()
    Image.fromarray(np.moveaxis(rgba, 0, -1), "RGBA").save(out, format="PNG", compress_level=6)
    return Quicklook(out.getvalue(), (west, south, east, north), cols, rows)


class Quicklooks:
    """Quicklooks by key (path, sha256): the ``size`` most recently used kept in memory. One is computed at
    a time (a page asks for several at once: the CPU and memory of one warp at a time, and none twice)."""

    def __init__(self, size: int = QUICKLOOK_CACHE):
        self._kept: OrderedDict[tuple, Quicklook] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple, make: Callable[[], Quicklook]) -> Quicklook:
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
            made = self._kept[key] = make()   # an exception leaves nothing cached
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
            return made


def crop_png(source: str, window_text: str, bands: tuple[int, ...] | None) -> bytes:
    """PNG of one window of the scene at ``source``: the pixels Scene.window_rgb reads (what the index
    embedded). ValueError when the window does not lie inside the scene."""
    import rasterio
    from PIL import Image

    from pir.data.geo import Scene, Window

    window = Window.parse(window_text)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), Scene(source, bands, max_pixels=MAX_CROP_PIXELS) as scene:
        if window.col + window.width > scene.width or window.row + window.height > scene.height:
            raise ValueError(f"window {window_text} is not inside the {scene.width}x{scene.height} scene")
        rgb = scene.window_rgb(window)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", compress_level=6)
    return out.getvalue()


def basemap_source(template: str) -> str:
    """The CSP source a base map's tiles come from: ``https://tile.openstreetmap.org`` for
    ``https://tile.openstreetmap.org/{z}/{x}/{y}.png``; a leading ``{s}.`` (Leaflet's subdomains) becomes
    ``*.``. ValueError (one line) for anything but an http(s) URL with a plain host (and port): the text goes
    into a response header, so nothing else may reach it."""
    parts = urlsplit(template)
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = parts.hostname or ""
    if (parts.scheme not in ("http", "https") or not _HOST.match(host) or parts.username or parts.password
            or port == -1 or any(c in template for c in " \t\r\n;'\"\\<>")):
        raise ValueError(f"--basemap {template!r}: give an http(s) tile URL template such as "
                         "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
    return f"{parts.scheme}://{host.replace('{s}', '*')}{f':{port}' if port else ''}"
