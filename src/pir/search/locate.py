"""Where in a large scene a text is: a heat map of the text's similarity to sliding windows (``pir locate``;
docs/search-and-geo.md, "Locating a text in a scene").

The scene is cut into windows of ``tile`` pixels every ``stride`` pixels (pir.data.geo.window_grid: the last
column and row of windows are moved back to end at the scene's edge). Each window is embedded like any
indexed image, and its score is the **raw cosine** of its image vector with the text vector (both unit
vectors; no rescaling, so maps of one model are comparable across scenes and queries). Every window's score
is spread over its pixels, and where windows overlap the scores are averaged.

**Grid.** The map is computed on a grid of cells (:class:`Grid`), not always on pixels: a full-resolution
float32 map of a 40,000 x 40,000 scene would be 6.4 GB (and twice that again for the float64 sums and
weights). The grid has ``cols = ceil(width / cell)`` by ``rows = ceil(height / cell)`` cells of exactly
``width / cols`` by ``height / rows`` pixels, so it covers the scene exactly (its GeoTIFF transform is the
scene's scaled by those sizes), and ``cell`` is 1 (full resolution: exact per-pixel averages) unless the
grid would exceed :data:`MAX_CELLS` cells, then the smallest cell that fits. A cell's value is the
area-weighted average of the windows touching it: sum(score x overlap) / sum(overlap), overlap in pixels.
That equals the per-pixel average wherever one set of windows covers the whole cell; a cell cut by a window
edge mixes its two sides in proportion to their areas. Only window edges carry information (the map is
constant between them), and a cell is at most ``cell`` pixels, so a coarse grid moves no edge by more than
one cell. Cells of ``gcd(tile, stride)`` pixels were the alternative: exact for the interior windows but not
for the edge windows window_grid moves back (they start anywhere), and an 8 x 8 map for a 1024 px scene at
the default 256/128, too coarse for the overlay and for the localization metrics' centres.

Memory: windows are read one batch at a time (pir.data.geo.Scene: bounded by the tile), the grid holds
three arrays of at most MAX_CELLS cells (float64 sums and weights, the float32 map: 80 MiB at the cap), and
the quicklook under the overlay is a decimated read of at most QUICKLOOK_SIDE pixels a side.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm import tqdm

from pir import files
from pir.data.geo import Georef, Scene, Window

MAX_CELLS = 1 << 22          # 4,194,304 cells (2048 x 2048): the float32 map is 16 MiB at most
QUICKLOOK_SIDE = 1024        # px, the longest side of the scene image under the PNG overlay
HEAT_BLOCK = 256             # GeoTIFF tile side of the heat map (tiled when both sides reach it)


def smallest_cell(width: int, height: int, max_cells: int = MAX_CELLS) -> int:
    """The smallest cell side (pixels) whose grid over a ``width`` x ``height`` scene has at most ``max_cells``."""
    cell = max(1, math.ceil(math.sqrt(width * height / max_cells)))
    while math.ceil(width / cell) * math.ceil(height / cell) > max_cells:
        cell += 1
    return cell


@dataclass(frozen=True)
class Grid:
    """``cols`` x ``rows`` equal cells covering a ``width`` x ``height`` pixel scene exactly."""
    width: int
    height: int
    cols: int
    rows: int

    @classmethod
    def for_scene(cls, width: int, height: int, cell: int | None = None, max_cells: int = MAX_CELLS) -> "Grid":
        """Cells of ``cell`` pixels (None: full resolution up to ``max_cells`` cells, else the smallest cell
        that fits); ValueError for a cell under 1 or a grid above ``max_cells``."""
        fits = smallest_cell(width, height, max_cells)
        cell = fits if cell is None else cell
        if cell < 1:
            raise ValueError(f"--cell must be at least 1 pixel (got {cell})")
        cols, rows = math.ceil(width / cell), math.ceil(height / cell)
        if cols * rows > max_cells:
            raise ValueError(f"--cell {cell} gives a {cols}x{rows} heat map, above the {max_cells}-cell cap for this "
                             f"{width}x{height} scene; use --cell {fits} or more")
        return cls(width, height, cols, rows)

    @property
    def cell_size(self) -> tuple[float, float]:
        """(width, height) of one cell in scene pixels."""
        return self.width / self.cols, self.height / self.rows

    @property
    def full_resolution(self) -> bool:
        return (self.cols, self.rows) == (self.width, self.height)

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x [cols] and y [rows] of the cells' centres in scene pixel coordinates (pixel (0, 0) spans 0..1)."""
        cw, ch = self.cell_size
        return (np.arange(self.cols) + 0.5) * cw, (np.arange(self.rows) + 0.5) * ch


def _overlap(start: int, length: int, size: int, cells: int) -> tuple[int, np.ndarray]:
    """The first cell that [start, start + length) touches when ``size`` pixels are cut into ``cells`` equal
    cells, and how many pixels of it fall into that cell and each following one it touches."""
    first = start * cells // size
    stop = -(-(start + length) * cells // size)            # ceil: one past the last cell touched
    edges = np.arange(first, stop + 1) * (size / cells)
    lengths = np.minimum(edges[1:], start + length) - np.maximum(edges[:-1], start)
    return first, np.clip(lengths, 0.0, None)


class HeatAccumulator:
    """Sum of score x overlap and of overlap per cell; :meth:`heat` = their ratio (the windows' average)."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.sums = np.zeros((grid.rows, grid.cols), np.float64)
        self.weights = np.zeros((grid.rows, grid.cols), np.float64)

    def add(self, windows: Iterable[Window], scores: Iterable[float]) -> None:
        """Spread each window's score over the cells it covers, weighted by the pixels it covers in each
        (a loop over windows, each one slice update; never over pixels)."""
        g = self.grid
        for window, score in zip(windows, scores):
            c0, ox = _overlap(window.col, window.width, g.width, g.cols)
            r0, oy = _overlap(window.row, window.height, g.height, g.rows)
            area = np.outer(oy, ox)
            self.sums[r0:r0 + len(oy), c0:c0 + len(ox)] += float(score) * area
            self.weights[r0:r0 + len(oy), c0:c0 + len(ox)] += area

    def heat(self) -> np.ndarray:
        """float32 [rows, cols]: the average score of the windows over each cell; NaN where none lies."""
        out = np.full(self.sums.shape, np.nan, np.float32)
        covered = self.weights > 0
        out[covered] = self.sums[covered] / self.weights[covered]
        return out


@dataclass
class Located:
    """A scene's heat map for one text, and what it was made from."""
    heat: np.ndarray                 # float32 [rows, cols], raw cosine, NaN where no window lies
    grid: Grid
    georef: Georef | None            # the scene's CRS and transform; None for a plain TIFF (pixel coordinates)
    windows: int
    quicklook: np.ndarray            # uint8 [h, w, 3] of the scene, longest side <= QUICKLOOK_SIDE
    timings: dict[str, float] = field(default_factory=dict)

    def transform(self):
        """The heat map's affine transform: the scene's (pixel coordinates for a plain TIFF) scaled to cells."""
        from rasterio.transform import Affine
        base = Affine(*self.georef.transform) if self.georef else Affine.identity()
        cw, ch = self.grid.cell_size
        return base @ Affine.scale(cw, ch)

    def summary(self) -> dict[str, float | None]:
        finite = self.heat[np.isfinite(self.heat)]
        if not finite.size:
            return {"min": None, "max": None, "mean": None}
        return {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean())}


def _stack(items: list[Any]):
    """A batch from the encoder's own preprocess outputs (torch tensors as pir index stacks them; numpy
    arrays stacked as numpy for an encoder whose preprocess returns those)."""
    return torch.stack(items) if isinstance(items[0], torch.Tensor) else np.stack(items)


def window_scores(scene: Scene, windows: list[Window], encoder: Any, text_vector: np.ndarray, batch_size: int = 32,
                  progress: bool = True) -> np.ndarray:
    """float32 [len(windows)]: cosine of each window's image vector with ``text_vector`` (a unit vector).
    One reader thread decodes the next batch while this one embeds the current (only that thread touches the
    dataset: a GDAL dataset is not safe for concurrent reads)."""
    scores = np.empty(len(windows), np.float32)
    if not windows:
        return scores
    batches = [windows[at:at + max(1, batch_size)] for at in range(0, len(windows), max(1, batch_size))]
    text_vector = np.asarray(text_vector, np.float32)

    def read(batch: list[Window]) -> list[Any]:
        return [encoder.preprocess(scene.window_rgb(w)) for w in batch]

    bar = tqdm(total=len(windows), desc="locate windows", unit="win", disable=not progress, mininterval=1.0)
    done = 0
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read, batches[0])
        for k, batch in enumerate(batches):
            pixels = pending.result()
            if k + 1 < len(batches):
                pending = reader.submit(read, batches[k + 1])
            vectors = np.asarray(encoder.encode_images(_stack(pixels)), np.float32)
            scores[done:done + len(batch)] = vectors @ text_vector
            done += len(batch)
            bar.update(len(batch))
    bar.close()
    return scores


def locate(scene: Scene | str | os.PathLike, text: str, encoder: Any, *, tile: int = 256, stride: int = 128,
           bands: tuple[int, ...] | None = None, max_pixels: int | None = None, cell: int | None = None,
           max_cells: int = MAX_CELLS, batch_size: int = 32, progress: bool = True) -> Located:
    """The heat map of ``text`` over ``scene``: a TIFF or GeoTIFF path, opened here with ``bands`` and
    ``max_pixels`` (the cap of each window), or an open pir.data.geo.Scene (left open; a deep scene's
    stretch is then not computed twice). ``encoder`` is a pir.search.encoder.Encoder (or anything with its
    preprocess / encode_images / query_text); ``cell`` sets the grid (see :class:`Grid`)."""
    started = time.perf_counter()
    opened = isinstance(scene, Scene)
    with contextlib.nullcontext(scene) if opened else Scene(scene, bands=bands, max_pixels=max_pixels) as scene:
        grid = Grid.for_scene(scene.width, scene.height, cell, max_cells)
        windows = scene.windows(tile, stride)
        t0 = time.perf_counter()
        text_vector = np.asarray(encoder.query_text(text), np.float32)
        t1 = time.perf_counter()
        scores = window_scores(scene, windows, encoder, text_vector, batch_size, progress)
        t2 = time.perf_counter()
        quicklook = scene.quicklook(QUICKLOOK_SIDE)
        georef = scene.georef
    t3 = time.perf_counter()
    heat = HeatAccumulator(grid)
    heat.add(windows, scores)
    located = Located(heat.heat(), grid, georef, len(windows), quicklook)
    located.timings = {"open_s": t0 - started, "text_s": t1 - t0, "windows_s": t2 - t1, "quicklook_s": t3 - t2,
                       "accumulate_s": time.perf_counter() - t3}
    return located


def write_heat_tiff(path: str | os.PathLike, located: Located, tags: dict[str, Any] | None = None) -> None:
    """The heat map as a single-band float32 GeoTIFF (the scene's CRS; no CRS for a plain TIFF scene, whose
    map is then in its pixel coordinates), NaN as no-data, ``tags`` as GDAL metadata; written atomically."""
    import rasterio

    rows, cols = located.heat.shape
    layout = ({"tiled": True, "blockxsize": HEAT_BLOCK, "blockysize": HEAT_BLOCK}
              if min(rows, cols) >= HEAT_BLOCK else {})
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": 1, "dtype": "float32",
               "nodata": float("nan"), "transform": located.transform(), "compress": "deflate", "predictor": 3,
               **({"crs": located.georef.crs} if located.georef else {}), **layout}
    with files.atomic_path(path) as tmp:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(tmp, "w", **profile) as out:
            out.write(located.heat, 1)
            out.set_band_description(1, "cosine similarity")
            out.update_tags(**{k: str(v) for k, v in (tags or {}).items()})


def write_overlay_png(path: str | os.PathLike, located: Located, text: str) -> None:
    """The scene's quicklook in grey with the heat map over it (a semi-transparent colour map stretched from
    the map's minimum to its maximum: min-max normalised in the picture only) and a colour bar in raw
    cosine, titled with the query; written atomically."""
    import textwrap

    plt = files.pyplot()
    height, width = located.quicklook.shape[:2]
    extent = (0, located.grid.width, located.grid.height, 0)
    side = 8.0
    fig, ax = plt.subplots(figsize=(side * max(0.6, min(1.6, width / height)) + 1.6, side + 0.8))
    grey = located.quicklook.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255, extent=extent)   # grey: the colours are the map's alone
    summary = located.summary()
    low, high = summary["min"], summary["max"]
    if low is not None and high - low < 1e-6:
        low, high = low - 1e-3, high + 1e-3
    image = ax.imshow(np.ma.masked_invalid(located.heat), cmap="turbo", alpha=0.5, vmin=low, vmax=high,
                      extent=extent)
    from matplotlib.cm import ScalarMappable
    bar = fig.colorbar(ScalarMappable(image.norm, image.cmap), ax=ax, fraction=0.046, pad=0.03)   # opaque bar
    bar.set_label("cosine similarity (average of the windows)")
    ax.set_title(textwrap.fill(f"\u201c{text}\u201d", 70), fontsize=11)
    ax.set_axis_off()
    fig.tight_layout()
    files.save_figure(fig, path)


def heat_outputs(out: str | os.PathLike, png: str | os.PathLike | None = None) -> tuple[Path, Path, Path]:
    """(heat map TIFF, overlay PNG, record JSON): the PNG and JSON beside the TIFF unless ``png`` is given."""
    out = Path(out)
    return out, Path(png) if png else out.with_suffix(".png"), out.with_suffix(".json")
