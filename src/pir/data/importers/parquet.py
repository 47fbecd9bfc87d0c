"""Hugging Face parquet (``filename``, ``captions``, ``image.bytes``), RSICD's HF layout: the images
are embedded in the annotation rows; the split comes from the shard's file name."""

from __future__ import annotations

from pathlib import Path

from pir.data.importers.common import RawImage, as_strings, inside_path, parse_rows


def _parquet_row(row: dict) -> tuple[str, list[str], bytes | None]:
    """(file name, captions, embedded bytes or None) of one parquet row."""
    filename = inside_path(row["filename"], "filename")
    captions = as_strings(row["captions"], "captions")
    image = row["image"]
    return filename, captions, image.get("bytes") if isinstance(image, dict) else None


def read_parquet(paths: list[Path], problems: list[str]) -> list[RawImage]:
    """Hugging Face RSICD parquet shards; the split comes from the shard name (train/valid/test)."""
    import pyarrow.parquet as pq

    images = []
    for path in sorted(paths):
        split = _split_from_name(path.name)
        if split is None:
            raise ValueError(f"{path}: cannot tell the split from the file name (expected train/valid/test in it)")
        try:
            table = pq.read_table(path, columns=["filename", "captions", "image"])
        except Exception as exc:  # ArrowInvalid / KeyError for missing columns: one line with the file
            raise ValueError(f"{path}: unreadable parquet ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
        images += [RawImage(Path(filename).name, split, captions, path.name, filename, image_bytes=data,
                            hint_at=f"{path.name}: row {number}: filename")
                   for number, (filename, captions, data) in parse_rows(table.to_pylist(), path.name,
                                                                       _parquet_row, problems)]
    return images


def _split_from_name(name: str) -> str | None:
    lower = name.lower()
    for key, split in (("train", "train"), ("valid", "val"), ("val", "val"), ("test", "test")):
        if key in lower:
            return split
    return None
