"""Search hits as GeoJSON (RFC 7946): ``pir search ... --geojson OUT.geojson`` (docs/search-and-geo.md, "GeoJSON"). A FeatureCollection that QGIS, geojson.io or any GIS opens as it is: one Feature per
georeferenced hit, best first, its geometry a Polygon in lon/lat (WGS 84, the only CRS RFC 7946 allows).

The polygon is the footprint of the hit's pixels (a window, or the whole file): the row's bounds in its CRS
reprojected along densified edges (pir.data.geo.bounds_footprint), since a projected rectangle's edges
are curves in lon/lat; one closed, counter-clockwise outer ring, coordinates rounded to 7 decimals (about
a centimetre, RFC 7946 section 11.2). Footprints across the antimeridian are not split.

Properties of each Feature:

    rank     1 for the best hit (the rank among all hits, left-out ones counted)
    score    the cosine similarity, as `pir search` prints it
    path     the file, relative to the index's root (the manifest's path, /api/search's "path")
    scene    the file on disk (index root / path): the scene the window is cut from
    window   [col, row, width, height] of the window in that file; null for the whole file
    label    the row's scene label (``pir index --scene-from-name``, ``--scene``); null when it has none
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from pir import files
from pir.data.geo import bounds_footprint, parse_numbers
from pir.search.manifest import Entry

DIGITS = 7


def feature(rank: int, score: float, entry: Entry, root: Path) -> dict:
    """The Feature of one georeferenced hit (see the module docstring)."""
    ring = bounds_footprint(entry.crs, parse_numbers(entry.bounds))
    return {"type": "Feature",
            "geometry": {"type": "Polygon",
                         "coordinates": [[[round(lon, DIGITS), round(lat, DIGITS)] for lon, lat in ring]]},
            "properties": {"rank": rank, "score": round(float(score), 6), "path": entry.path,
                           "scene": str(root / entry.path), "window": entry.window_numbers,
                           "label": entry.scene or None}}


def hits_collection(hits: Sequence, root: Path) -> tuple[dict, int]:
    """(the FeatureCollection of the georeferenced ``hits`` (pir.search.query.Hit), how many were left out
    because their row is not georeferenced)."""
    features = [feature(rank, hit.score, hit.entry, root) for rank, hit in enumerate(hits, 1) if hit.entry.georef]
    return {"type": "FeatureCollection", "features": features}, len(hits) - len(features)


def write_hits(out: str | os.PathLike, hits: Sequence, root: Path) -> tuple[int, int]:
    """Write :func:`hits_collection` to ``out`` atomically, one Feature a line; (features written, hits left out)."""
    collection, left_out = hits_collection(hits, root)
    lines = ",\n".join(json.dumps(f, ensure_ascii=False) for f in collection["features"])
    files.write_text(out, '{"type": "FeatureCollection", "features": [\n' + lines + "\n]}\n")
    return len(collection["features"]), left_out
