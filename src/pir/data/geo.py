"""Georeferenced rasters (GeoTIFF, COG) through rasterio: where a file or a window of it lies, and
windowed reads of large scenes as 8-bit RGB (docs/search-and-geo.md, "Geospatial").

- :class:`Window`  a pixel rectangle of a scene (column, row, width, height), "col,row,width,height" as text
- :class:`Georef`  a raster's CRS and affine transform: bounds of a window in the CRS and in lon/lat, its
  footprint as a lon/lat ring (a projected rectangle is not a rectangle in lon/lat)
- :class:`Scene`   an open scene: a window grid, windowed reads (memory bounded by the window, not the
  scene), a decimated quicklook

Only GDAL's GTiff driver is allowed to open a file (COGs are GTiffs): a ``.tif`` holding VRT XML would
otherwise make GDAL read any file or URL it names (docs/security.md).

Deep samples (16-bit, float) are stretched per band from the 2nd..98th percentile of the **scene**
(pir.data.images.stretch_limits on a decimated read, no-data left out), not of each window: a window's
colours must not depend on what else is in it, and every window of a scene then shares one stretch.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from pir.data.images import (MIN_SIDE, TIFF_EXTENSIONS, ImageRefused, apply_stretch, check_size, rgb_band_numbers,
                             stretch_limits)

LONLAT = "EPSG:4326"
DENSIFY = 21                # points per edge when a footprint or bounds go to lon/lat
STRETCH_SAMPLE_SIDE = 1024  # the decimated read the scene's stretch is computed from, longest side
MAX_BLOCK_BYTES = 256 << 20  # a window read decodes whole blocks: refuse layouts whose one block is larger

# GDAL configuration for every open: no sidecar directory listing, no network, no VRT indirection
_GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".none",
             "GDAL_HTTP_MAX_RETRY": "0", "GTIFF_REPORT_COMPD_CS": "NO"}


@dataclass(frozen=True)
class Window:
    """A pixel rectangle of a scene: ``col``/``row`` of its top-left pixel, its ``width``/``height``."""
    col: int
    row: int
    width: int
    height: int

    def text(self) -> str:
        return f"{self.col},{self.row},{self.width},{self.height}"

    @classmethod
    def parse(cls, text: str) -> "Window | None":
        """``"col,row,width,height"`` -> Window; "" -> None (the whole file)."""
        if not text:
            return None
        col, row, width, height = (int(part) for part in text.split(","))
        return cls(col, row, width, height)


def window_grid(width: int, height: int, tile: int, stride: int) -> list[Window]:
    """Windows of ``tile`` x ``tile`` pixels every ``stride`` pixels, row by row, covering the whole scene: the
    last column and row of windows are moved back to end at the scene's edge (so every window is whole and
    no pixel is left out). A scene smaller than the tile on a side gets one window of its full extent there."""
    if tile < MIN_SIDE or stride < 1:
        raise ValueError(f"--tile must be at least {MIN_SIDE} and --stride at least 1 (got {tile}, {stride})")

    def starts(size: int) -> list[int]:
        if size <= tile:
            return [0]
        found = list(range(0, size - tile + 1, stride))
        return found if found[-1] == size - tile else found + [size - tile]

    return [Window(col, row, min(tile, width), min(tile, height))
            for row in starts(height) for col in starts(width)]


_REPROJECT_CHUNK = 262_144  # points per reprojection call (PROJ's own arrays stay small)


def to_lonlat(crs: str, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points in ``crs`` (arrays of any shape) as lon/lat arrays of that shape, reprojected in chunks."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if crs == LONLAT:
        return xs, ys
    from rasterio.warp import transform
    flat_x, flat_y = xs.ravel(), ys.ravel()
    parts = [transform(crs, LONLAT, flat_x[at:at + _REPROJECT_CHUNK].tolist(), flat_y[at:at + _REPROJECT_CHUNK].tolist())
             for at in range(0, flat_x.size, _REPROJECT_CHUNK)]
    lon = np.concatenate([np.asarray(p[0], float) for p in parts] or [np.zeros(0)])
    lat = np.concatenate([np.asarray(p[1], float) for p in parts] or [np.zeros(0)])
    return lon.reshape(xs.shape), lat.reshape(ys.shape)


def outlines(transform: tuple[float, ...], windows: Sequence[Window], per_edge: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y [n, 4 * (per_edge - 1)] in the CRS: each window's outline, clockwise from its top-left (top,
    right, bottom, left edge, ``per_edge`` points each, the next edge's first point not repeated)."""
    col, row, width, height = (v[:, None] for v in np.array([(w.col, w.row, w.width, w.height)
                                                             for w in windows], float).reshape(-1, 4).T)
    t = np.linspace(0.0, 1.0, per_edge)[:-1][None, :]
    ones = np.ones_like(t)
    cols = np.concatenate([col + t * width, (col + width) * ones, col + width - t * width, col * ones], axis=1)
    rows = np.concatenate([row * ones, row + t * height, (row + height) * ones, row + height - t * height], axis=1)
    a, b, c, d, e, f = transform
    return cols * a + rows * b + c, cols * d + rows * e + f


@dataclass(frozen=True)
class Georef:
    """Where a raster lies: its CRS (``"EPSG:32631"``, or WKT where it has no EPSG code), the affine transform
    from pixel (col, row) to CRS (x, y) as GDAL's six numbers (a, b, c, d, e, f), and its size in pixels."""
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    def corners(self, window: Window | None = None, per_edge: int = 2) -> list[tuple[float, float]]:
        """The window's outline in the CRS, clockwise from the top-left, ``per_edge`` points per edge (not closed)."""
        xs, ys = outlines(self.transform, [window or Window(0, 0, self.width, self.height)], per_edge)
        return list(zip(xs[0].tolist(), ys[0].tolist()))

    def bounds(self, window: Window | None = None) -> tuple[float, float, float, float]:
        """(min x, min y, max x, max y) of the window in the CRS."""
        xs, ys = zip(*self.corners(window))
        return min(xs), min(ys), max(xs), max(ys)

    def footprint(self, window: Window | None = None) -> list[tuple[float, float]]:
        """The window's outline in lon/lat: see :func:`lonlat_ring`."""
        return lonlat_ring(self.crs, self.corners(window, DENSIFY))

    def lonlat_bounds(self, window: Window | None = None) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the window's footprint in degrees."""
        lon, lat = zip(*self.footprint(window))
        return min(lon), min(lat), max(lon), max(lat)


def lonlat_ring(crs: str, outline: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """An outline in ``crs`` (densified: a reprojected edge keeps its curve) as a closed lon/lat ring
    (first point repeated), counter-clockwise as GeoJSON (RFC 7946) wants it."""
    xs, ys = zip(*outline)
    ring = list(zip(*(v.tolist() for v in to_lonlat(crs, np.array(xs), np.array(ys)))))
    if _signed_area(ring) < 0:   # clockwise in pixel space (rows down) is clockwise on a north-up map too
        ring.reverse()
    return [*ring, ring[0]]


def bounds_footprint(crs: str, bounds: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    """The lon/lat ring of a rectangle (min x, min y, max x, max y) in ``crs``: the footprint of a manifest
    row (its window of a north-up raster is that rectangle)."""
    x0, y0, x1, y1 = bounds
    # the rectangle as a one-pixel raster: its outline walks the same edges as a window's
    xs, ys = outlines((x1 - x0, 0.0, x0, 0.0, y0 - y1, y1), [Window(0, 0, 1, 1)], DENSIFY)
    outline = list(zip(xs[0].tolist(), ys[0].tolist()))
    return lonlat_ring(crs, outline)


def _signed_area(ring: list[tuple[float, float]]) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]))


def is_geotiff_name(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(TIFF_EXTENSIONS)


def _open(path: str | os.PathLike):
    """rasterio dataset of ``path``, GTiff driver only (see the module docstring)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    with rasterio.Env(**_GDAL_ENV), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)   # a plain TIFF is fine: georef is None
        return rasterio.open(Path(path), driver="GTiff")


def _georef_of(dataset) -> Georef | None:
    if dataset.crs is None or dataset.transform.is_identity:
        return None
    epsg = dataset.crs.to_epsg()
    crs = f"EPSG:{epsg}" if epsg else dataset.crs.to_wkt()
    return Georef(crs, tuple(float(v) for v in dataset.transform[:6]), dataset.width, dataset.height)


def read_georef(path: str | os.PathLike) -> Georef | None:
    """The georeferencing of a TIFF (None for a file without a CRS and transform, or not a TIFF).
    Reads the header only; a file GDAL cannot open as a GeoTIFF is treated as not georeferenced
    (it is read, or refused, as an image by pir.data.images)."""
    if not is_geotiff_name(path):
        return None
    try:
        with _open(path) as dataset:
            return _georef_of(dataset)
    except Exception:  # rasterio raises RasterioIOError and CPLE_* types for files it cannot parse
        return None


GEO_COLUMNS = ("window", "crs", "bounds", "lonlat")   # pir.search.index's manifest columns


def numbers_text(values: Iterable[float]) -> str:
    """Comma-separated shortest round-trip floats: how bounds are written into the manifest."""
    return ",".join(repr(float(v)) for v in values)


def parse_numbers(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",")) if text else ()


def geo_fields(georef: Georef | None, window: Window | None = None) -> dict[str, str]:
    """The manifest's georeferencing columns of a file (or one window of it); empty ones when not georeferenced."""
    if georef is None:
        return {"window": window.text() if window else "", "crs": "", "bounds": "", "lonlat": ""}
    return {"window": window.text() if window else "", "crs": georef.crs,
            "bounds": numbers_text(georef.bounds(window)), "lonlat": numbers_text(georef.lonlat_bounds(window))}


class Scene:
    """A large GeoTIFF read window by window. ``bands``: 1-based bands of files with more than three (default
    1,2,3), as pir.data.images.read_rgb. ``max_pixels`` caps each window, not the scene: memory stays bounded
    by the tile. ``stretch``: the scene's (low, high) of an earlier open of the same file and bands (see
    :attr:`stretch`), so several opens compute it once. Use as a context manager (the file stays open between
    reads)."""

    def __init__(self, path: str | os.PathLike, bands: tuple[int, ...] | None = None,
                 max_pixels: int | None = None, stretch: tuple[np.ndarray, np.ndarray] | None = None):
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._dataset = _open(self.path)
        try:
            self.georef = _georef_of(self._dataset)
            self.width, self.height = self._dataset.width, self._dataset.height
            self.bands = rgb_band_numbers(self._dataset.count, bands)
            self._check_blocks()
            self.deep = self._dataset.dtypes[0] != "uint8"
            self._limits = stretch if self.deep else None   # computed on the first read: see :attr:`stretch`
        except BaseException:
            self._dataset.close()
            raise

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._dataset.close()

    def _check_blocks(self) -> None:
        """A window read decodes every block it touches: a file stored as one huge strip would decode the
        whole scene for each window. Such files are refused with the fix."""
        block_h, block_w = self._dataset.block_shapes[0]
        itemsize = np.dtype(self._dataset.dtypes[0]).itemsize
        interleaved = self._dataset.interleaving is not None and self._dataset.interleaving.name.lower() == "pixel"
        block_bytes = block_h * block_w * itemsize * (self._dataset.count if interleaved else 1)
        if block_bytes > MAX_BLOCK_BYTES:
            raise ImageRefused(f"stored in blocks of {block_w}x{block_h} pixels ({block_bytes >> 20} MiB each): a "
                               "window read would decode the whole block; re-tile it "
                               "(gdal_translate -co TILED=YES -co COMPRESS=DEFLATE IN OUT)")

    def _read(self, window: Window | None, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """[H, W, 3] of the scene's three bands (float32 with NaN at no-data for deep samples, else as stored)."""
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.windows import Window as RioWindow
        rio_window = None if window is None else RioWindow(window.col, window.row, window.width, window.height)
        shape = None if out_shape is None else (3, *out_shape)
        with rasterio.Env(**_GDAL_ENV):
            values = self._dataset.read(list(self.bands), window=rio_window, out_shape=shape,
                                        resampling=Resampling.average if out_shape else Resampling.nearest,
                                        masked=self.deep)
        if self.deep:
            values = values.astype(np.float32).filled(np.nan)
        return np.moveaxis(values, 0, -1)

    def _scene_stretch(self) -> tuple[np.ndarray, np.ndarray]:
        scale = max(1.0, max(self.width, self.height) / STRETCH_SAMPLE_SIDE)
        sample = self._read(None, (max(1, round(self.height / scale)), max(1, round(self.width / scale))))
        return stretch_limits(sample)

    @property
    def stretch(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) per band of a deep scene (None for 8-bit): given to the constructor (computed before,
        for this file and bands), else computed once, on first use: opening a scene reads its header only."""
        if self.deep and self._limits is None:
            self._limits = self._scene_stretch()
        return self._limits

    def window_rgb(self, window: Window) -> np.ndarray:
        """uint8 [h, w, 3] of one window (checked against ``max_pixels`` before it is read)."""
        check_size(window.width, window.height, self.max_pixels)
        values = self._read(window)
        return np.ascontiguousarray(values) if not self.deep else apply_stretch(values, *self.stretch)

    def windows(self, tile: int, stride: int) -> list[Window]:
        return window_grid(self.width, self.height, tile, stride)

    def iter_windows(self, tile: int, stride: int) -> Iterator[tuple[Window, np.ndarray]]:
        for window in self.windows(tile, stride):
            yield window, self.window_rgb(window)

    def quicklook(self, max_side: int = 1024) -> np.ndarray:
        """uint8 [h, w, 3] of the whole scene, decimated (averaged) so its longest side is at most ``max_side``."""
        scale = max(1.0, max(self.width, self.height) / max_side)
        shape = (max(1, math.floor(self.height / scale)), max(1, math.floor(self.width / scale)))
        values = self._read(None, shape)
        return np.ascontiguousarray(values) if not self.deep else apply_stretch(values, *self.stretch)
