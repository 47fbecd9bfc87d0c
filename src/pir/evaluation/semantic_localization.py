"""Semantic localization (SeLo) metrics of a heat map against annotated regions: Rsu, Ras, Rda, Rmi.

Source: Z. Yuan et al., "Learning to Evaluate Performance of Multi-modal Semantic Localization" (the AIR-SLT
test set), and its reference implementation, class ``SLM`` of github.com/xiaoyuan1996/
SemanticLocalizationMetrics (evaluations/SLM.py, the version reporting Rsu/Rda/Ras/Rmi, also used by
GeoRSCLIP's AIR-SLT evaluation). Read there; written here from the definitions, vectorised in numpy/scipy
(no OpenCV). docs/search-and-geo.md, "Locating a text in a scene", has the formulas and the deviations.

The map is first made a probability map P in [0, 1] (min-max normalised over the scene, as the published
generator does before scoring). With M the annotation mask (the polygons filled), N cells in all:

- **Rsu** (salient area proportion, higher is better):
  ``Rsu = 1 - exp(-beta * (S_in / (S_out + eps)) * ((N - |M|) / |M|))``, beta = 0.707, eps = 1e-7,
  S_in = sum(P * M), S_out = sum(P) - S_in: 1 - exp(-beta * mean P inside / mean P outside).
- **Attention centres**: P quantised to 0..255, smoothed 5 times by a 50 px box filter, local maxima over
  1000 px windows (equal to their maximum filter, above 0), 8-connected groups of maxima -> their
  centroids, kept where P at the centroid is >= 0.5.
- **Regions**: each annotated polygon -> centre c = mean of its vertices, radius r = 1.5 x the mean distance
  of its vertices from c.
- **Ras** (attention shift distance, lower is better): per region, the mean distance from c to the
  attention centres within r (r when none); g = mean over regions of that distance / r;
  ``Ras = (exp(3 g) - 1) / (exp(3) - 1)``.
- **Rda** (discrete attention distance, higher is better): per region, n = attention centres within r;
  n when n <= 1, else ``0.5 * (1 - d / r) + exp(-0.5 * (n + 2))`` with d the mean distance of those centres
  from their mean; Rda = mean over regions.
- **Rmi** (mean indicator, higher is better): ``0.4 Rsu + 0.35 (1 - Ras) + 0.25 Rda``.

Pixel sizes (50, 1000) are in scene pixels, converted to cells of the map's grid (pir.search.locate.Grid);
distances are in scene pixels. Annotation files: the AIR-SLT ``anno.json`` as published (:func:`read_annotations`).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pir.errors import bytes_text

# The published SLM defaults
RSU_BETA = 0.707
RSU_EPS = 1e-7
RAS_EXPAND = 1.5            # region radius = this x the mean vertex distance from the centre
RAS_FILTER_TIMES = 5        # box-filter passes before finding maxima
RAS_BOX_PX = 50             # box filter side, pixels
RAS_PEAK_PX = 1000          # maximum-filter side, pixels: one attention centre per 1000 px neighbourhood at most
RAS_SCALE_BETA = 3.0
RAS_MIN_PROB = 0.5          # attention centres where P >= this
RDA_ETA = 0.5
RMI_WEIGHTS = (0.4, 0.35, 0.25)   # Rsu, 1 - Ras, Rda

MAX_ANNOTATION_BYTES = 64 << 20   # an annotation file is a few kB to MB of JSON: refuse anything far larger


@dataclass(frozen=True)
class Annotation:
    """One AIR-SLT entry: a caption, the image it annotates, and its regions as polygons of (x, y) pixel
    coordinates of that image (x = column, y = row, from the top-left corner)."""
    caption: str
    image: str
    polygons: tuple[np.ndarray, ...]      # each float64 [k, 2], k >= 3


def _polygons(points, where: str) -> tuple[np.ndarray, ...]:
    """AIR-SLT "points": a list of polygons, each a list of [x, y]; a single polygon is accepted too."""
    try:
        array = [np.asarray(p, np.float64) for p in points]
        if array and array[0].ndim == 1:                 # one polygon given as a list of [x, y]
            array = [np.asarray(points, np.float64)]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: \"points\" must be a list of polygons, each a list of [x, y]") from None
    if not array:
        raise ValueError(f"{where}: \"points\" holds no polygon")
    for polygon in array:
        if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 3 or not np.isfinite(polygon).all():
            raise ValueError(f"{where}: every polygon needs at least three finite [x, y] points")
    return tuple(array)


def read_annotations(path: str | os.PathLike) -> list[Annotation]:
    """The entries of an AIR-SLT-style annotation file: a JSON list of {"caption", "jpg_name", "points"}
    (the published ``anno.json`` as it is), or one such object. ValueError naming the file otherwise."""
    path = Path(path)
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        raise ValueError(f"{path}: larger than {bytes_text(MAX_ANNOTATION_BYTES)}; not an annotation file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON annotation file ({exc})") from None
    entries = [data] if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a JSON list of {{\"caption\", \"jpg_name\", \"points\"}} entries")
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "points" not in entry:
            raise ValueError(f"{where}: expected an object with \"points\" (and \"caption\", \"jpg_name\")")
        out.append(Annotation(str(entry.get("caption", "")), str(entry.get("jpg_name", "")),
                              _polygons(entry["points"], where)))
    return out


def normalise_caption(text: str) -> str:
    """Captions compared without case, surrounding space, runs of spaces and a final full stop
    (AIR-SLT captions end in '.' or '.\\n')."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip().lower()


def select_annotation(annotations: list[Annotation], scene: str | os.PathLike, text: str,
                      source: str | os.PathLike = "annotations") -> Annotation:
    """The entry for this scene and query. Entries whose ``jpg_name`` has the scene's file stem (0.jpg for
    0.tif), or the only entry of a one-entry file; among those, the one whose caption is the query
    (:func:`normalise_caption`; several: their polygons together), else the scene's only entry."""
    stem = Path(scene).stem.lower()
    named = [a for a in annotations if Path(a.image).stem.lower() == stem]
    pool = named or (annotations if len(annotations) == 1 else [])
    if not pool:
        images = sorted({a.image for a in annotations})
        raise ValueError(f"{source}: no entry's jpg_name is {stem}.* (the scene {Path(scene).name}); it names "
                         f"{', '.join(images[:8])}{' ...' if len(images) > 8 else ''}")
    same = [a for a in pool if normalise_caption(a.caption) == normalise_caption(text)]
    if same:
        return Annotation(same[0].caption, same[0].image, tuple(p for a in same for p in a.polygons))
    if len(pool) == 1:
        return pool[0]
    captions = "; ".join(repr(a.caption.strip()) for a in pool[:5])
    raise ValueError(f"{source}: {len(pool)} entries for {Path(scene).name}, none with the caption {text!r}; "
                     f"query one of: {captions}")


def polygon_mask(polygons: tuple[np.ndarray, ...], shape: tuple[int, int],
                 cell_size: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """bool [rows, cols]: the cells whose centre lies in any polygon (GDAL's rasterizer, even-odd within a
    polygon, union across them); a region smaller than a cell marks the cells it touches instead."""
    from rasterio.transform import Affine
    from rasterio.features import rasterize

    shapes = [({"type": "Polygon", "coordinates": [[*map(tuple, p.tolist()), tuple(p[0].tolist())]]}, 1)
              for p in polygons]
    transform = Affine.scale(*cell_size)
    mask = rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(bool)
    if not mask.any():
        mask = rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8",
                         all_touched=True).astype(bool)
    return mask


def probability_map(heat: np.ndarray) -> np.ndarray:
    """float64 P in [0, 1]: the map min-max normalised (the published generator's step before scoring);
    no-data (NaN) cells 0; a flat map all 0 (nothing stands out; the published code divides by zero)."""
    heat = np.asarray(heat, np.float64)
    finite = np.isfinite(heat)
    if not finite.any():
        return np.zeros(heat.shape)
    low, high = heat[finite].min(), heat[finite].max()
    if high - low <= 0:
        return np.zeros(heat.shape)
    return np.where(finite, (np.where(finite, heat, low) - low) / (high - low), 0.0)


def rsu(prob: np.ndarray, mask: np.ndarray) -> float:
    """Salient area proportion (see the module docstring); ValueError for an empty mask."""
    inside_cells = int(mask.sum())
    if inside_cells == 0:
        raise ValueError("the annotated regions cover no cell of the heat map (outside the scene?)")
    inside = float(prob[mask].sum())
    outside = float(prob.sum()) - inside
    ratio = inside / (outside + RSU_EPS) * ((mask.size - inside_cells) / inside_cells)
    return float(1.0 - math.exp(-RSU_BETA * ratio))


def region_circles(polygons: tuple[np.ndarray, ...]) -> np.ndarray:
    """float64 [R, 3]: (x, y, r) per polygon: its vertices' mean, and 1.5 x their mean distance from it."""
    circles = []
    for polygon in polygons:
        centre = polygon.mean(axis=0)
        circles.append((*centre, RAS_EXPAND * float(np.linalg.norm(polygon - centre, axis=1).mean())))
    out = np.asarray(circles, np.float64).reshape(-1, 3)
    if (out[:, 2] <= 0).any():
        raise ValueError("an annotated polygon has all its points in one place (radius 0)")
    return out


def attention_centres(prob: np.ndarray, cell_size: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """float64 [K, 2]: (x, y) in scene pixels of the map's attention centres (see the module docstring),
    on the map's grid: the 50 px box and the 1000 px neighbourhood become cells of ``cell_size`` pixels."""
    from scipy import ndimage

    cw, ch = cell_size
    gray = (np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8).astype(np.float32)   # truncated, as published
    box = (max(1, round(RAS_BOX_PX / ch)), max(1, round(RAS_BOX_PX / cw)))
    for _ in range(RAS_FILTER_TIMES):
        gray = np.rint(ndimage.uniform_filter(gray, size=box, mode="mirror"))         # stays 0..255 integers
    peak = (max(1, round(RAS_PEAK_PX / ch)), max(1, round(RAS_PEAK_PX / cw)))
    peaks = (gray == ndimage.maximum_filter(gray, size=peak, mode="reflect")) & (gray > 0)
    labels, count = ndimage.label(peaks, structure=np.ones((3, 3), bool))
    if count == 0:
        return np.zeros((0, 2))
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    sizes = np.bincount(ids, minlength=count + 1)[1:]
    cy = np.bincount(ids, weights=rows, minlength=count + 1)[1:] / sizes
    cx = np.bincount(ids, weights=cols, minlength=count + 1)[1:] / sizes
    keep = prob[cy.astype(int), cx.astype(int)] >= RAS_MIN_PROB
    return np.stack([(cx[keep] + 0.5) * cw, (cy[keep] + 0.5) * ch], axis=1)


def _within(circles: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances [R, K] from each region's centre to each attention centre, and which lie within r."""
    dist = np.linalg.norm(circles[:, None, :2] - centres[None, :, :], axis=-1).reshape(len(circles), len(centres))
    return dist, dist <= circles[:, 2:3]


def ras(circles: np.ndarray, centres: np.ndarray) -> float:
    """Attention shift distance (see the module docstring)."""
    dist, inside = _within(circles, centres)
    n = inside.sum(axis=1)
    offset = np.where(n > 0, (dist * inside).sum(axis=1) / np.maximum(n, 1), circles[:, 2])
    g = float(np.mean(offset / circles[:, 2]))
    return float((math.exp(RAS_SCALE_BETA * g) - 1.0) / (math.exp(RAS_SCALE_BETA) - 1.0))


def rda(circles: np.ndarray, centres: np.ndarray) -> float:
    """Discrete attention distance (see the module docstring)."""
    _, inside = _within(circles, centres)
    n = inside.sum(axis=1)
    mean = (inside.astype(np.float64) @ centres) / np.maximum(n, 1)[:, None]             # [R, 2]
    spread = np.linalg.norm(centres[None, :, :] - mean[:, None, :], axis=-1).reshape(inside.shape)
    d = (spread * inside).sum(axis=1) / np.maximum(n, 1) / circles[:, 2]
    many = 0.5 * (1.0 - d) + np.exp(-RDA_ETA * (n + 2))
    return float(np.mean(np.where(n <= 1, n.astype(np.float64), many)))


def rmi(rsu_value: float, ras_value: float, rda_value: float) -> float:
    w_su, w_as, w_da = RMI_WEIGHTS
    return float(w_su * rsu_value + w_as * (1.0 - ras_value) + w_da * rda_value)


@dataclass
class SeLoResult:
    """The four metrics and what they were computed from (regions and centres in scene pixels)."""
    rsu: float
    ras: float
    rda: float
    rmi: float
    circles: np.ndarray = field(repr=False)
    centres: np.ndarray = field(repr=False)
    mask_cells: int = 0

    def metrics(self) -> dict[str, float]:
        return {"Rsu": self.rsu, "Ras": self.ras, "Rda": self.rda, "Rmi": self.rmi}

    def record(self, max_centres: int = 100) -> dict:
        """JSON-ready: the metrics, the regions (x, y, r) and up to ``max_centres`` attention centres (x, y)."""
        return {**self.metrics(), "regions": [[round(float(v), 2) for v in c] for c in self.circles],
                "attention_centres": [[round(float(v), 2) for v in c] for c in self.centres[:max_centres]],
                "attention_centre_count": int(len(self.centres)), "mask_cells": self.mask_cells}


def semantic_localization(heat: np.ndarray, polygons: tuple[np.ndarray, ...],
                          cell_size: tuple[float, float] = (1.0, 1.0)) -> SeLoResult:
    """Rsu, Ras, Rda and Rmi of ``heat`` (any real scores, [rows, cols], NaN = no data; cells of
    ``cell_size`` scene pixels) against ``polygons`` in scene pixel coordinates."""
    prob = probability_map(heat)
    mask = polygon_mask(polygons, prob.shape, cell_size)
    circles = region_circles(polygons)
    centres = attention_centres(prob, cell_size)
    su, as_, da = rsu(prob, mask), ras(circles, centres), rda(circles, centres)
    return SeLoResult(su, as_, da, rmi(su, as_, da), circles, centres, int(mask.sum()))
