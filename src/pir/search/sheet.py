"""A contact sheet of search hits: one PNG, thumbnails from the index's cache with rank, score and name (and
for a window of a scene, the window's own thumbnail and its "col,row,width,height")."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw

from pir import files
from pir.search.index import THUMB_SIDE, Index
from pir.search.query import Hit

_CAPTION = 30   # px of text under each tile


def contact_sheet(index: Index, hits: list[Hit], out: str | os.PathLike, title: str = "", columns: int = 5) -> Path:
    """Write the hits in rank order, ``columns`` per row, to the PNG ``out`` (atomically)."""
    columns = max(1, min(columns, len(hits) or 1))
    rows = max(1, -(-len(hits) // columns))
    header = 24 if title else 0
    windows = any(hit.entry.window for hit in hits)   # a third caption line: the window
    tile_w, tile_h = THUMB_SIDE + 8, THUMB_SIDE + 8 + _CAPTION + (13 if windows else 0)
    sheet = Image.new("RGB", (columns * tile_w, header + rows * tile_h), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 6), title[:120], fill="black")
    for rank, hit in enumerate(hits):
        x, y = (rank % columns) * tile_w + 4, header + (rank // columns) * tile_h + 4
        thumb = index.thumbnail(hit.entry)
        if thumb.is_file():
            with Image.open(thumb) as image:
                image = image.convert("RGB")
                sheet.paste(image, (x + (THUMB_SIDE - image.width) // 2, y + (THUMB_SIDE - image.height) // 2))
        else:
            draw.rectangle((x, y, x + THUMB_SIDE, y + THUMB_SIDE), outline="gray")
        draw.text((x, y + THUMB_SIDE + 2), f"#{rank + 1}  {hit.score:.3f}", fill="black")
        draw.text((x, y + THUMB_SIDE + 15), Path(hit.path).name[:30], fill="dimgray")
        if hit.entry.window:
            draw.text((x, y + THUMB_SIDE + 28), f"window {hit.entry.window}"[:30], fill="dimgray")
    with files.atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(out)
