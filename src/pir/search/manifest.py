"""The manifest of an index generation (``gen-<n>/manifest.csv``): one row per indexed image, or per window
of a large scene indexed with ``--tile`` (docs/search-and-geo.md, "Index format")."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True)
class Entry:
    """One indexed image, or one window of a scene (a manifest row)."""
    path: str               # relative to the indexed root, '/'-separated
    size: int
    mtime_ns: int
    sha256: str
    width: int              # of the embedded pixels: the window's for a window row
    height: int
    scene: str = ""         # "" = unknown
    window: str = ""        # "col,row,width,height" of a window of a large scene; "" = the whole file
    crs: str = ""           # the file's CRS ("EPSG:32631", or WKT); "" = not georeferenced
    bounds: str = ""        # "min x,min y,max x,max y" of the row's pixels in ``crs``
    lonlat: str = ""        # "west,south,east,north" in degrees (EPSG:4326)

    @property
    def georef(self) -> bool:
        return bool(self.crs)

    @property
    def window_numbers(self) -> list[int] | None:
        """[col, row, width, height] of a window row, None for a whole file."""
        return [int(v) for v in self.window.split(",")] if self.window else None


MANIFEST_FIELDS = tuple(f.name for f in fields(Entry))
FIRST_FIELDS = MANIFEST_FIELDS[:7]   # the columns of indexes made before georeferencing (read as not georeferenced)


def read_manifest(path: Path) -> list[Entry]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) not in (MANIFEST_FIELDS, FIRST_FIELDS):
            raise ValueError(f"{path}: expected the columns {','.join(MANIFEST_FIELDS)}")
        return [Entry(r["path"], int(r["size"]), int(r["mtime_ns"]), r["sha256"], int(r["width"]),
                      int(r["height"]), r["scene"], *(r.get(k, "") for k in MANIFEST_FIELDS[7:])) for r in reader]


def manifest_text(entries: Iterable[Entry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    writer.writerows(tuple(asdict(e).values()) for e in entries)
    return out.getvalue()
