"""Small on-disk datasets in every annotation layout the importers read (built in tmp_path)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# image file -> split; two classes per split plus one numeric (class-less) name, RSICD style
FILES = {
    "train": ["airport_1.tif", "airport_2.tif", "beach_3.tif", "beach_4.tif", "00017.tif", "beach_5.tif"],
    "val": ["airport_6.tif", "beach_7.tif"],
    "test": ["airport_8.tif", "beach_9.tif", "00018.tif"],
}


def captions_of(file: str) -> list[str]:
    stem = Path(file).stem
    return [f"Caption {k} of {stem}, with Punctuation!" for k in range(5)]


def save_image(path: Path, seed: int, size: int = 24, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt or ("TIFF" if path.suffix == ".tif" else None))


def write_images(root: Path, in_split_folders: bool) -> None:
    for split, files in FILES.items():
        for i, file in enumerate(files):
            save_image(root / (split if in_split_folders else "images") / file, seed=zlib.crc32(file.encode()))


def write_finetune(root: Path, dataset: str = "rsitmd", with_train: bool = True) -> None:
    for split, files in FILES.items():
        if split == "train":
            if not with_train:
                continue
            rows = [{"caption": c, "image": f"train/{f}", "image_id": i}
                    | ({"label_name": f.split("_")[0], "label": 0} if "_" in f else {})
                    for i, f in enumerate(files) for c in captions_of(f)]
        else:
            rows = [{"image": f"{split}/{f}", "caption": captions_of(f)} for f in files]
        (root / f"{dataset}_{split}.json").write_text(json.dumps(rows))


def write_precomp(root: Path, splits=("train", "test")) -> None:
    folder = root / "precomp"
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        files = FILES[split]
        if split == "train":   # one line per image, five consecutive captions each
            names = files
            caps = [c for f in files for c in captions_of(f)]
        else:                  # test: the file repeated once per caption line
            names = [f for f in files for _ in range(5)]
            caps = [c for f in files for c in captions_of(f)]
        (folder / f"{split}_filename.txt").write_text("\n".join(names) + "\n")
        (folder / f"{split}_caps.txt").write_text("\n".join(caps) + "\n")


def write_karpathy(root: Path, dataset: str = "rsitmd") -> None:
    images = [{"filename": f, "split": split, "sentences": [{"raw": c, "tokens": c.split()} for c in captions_of(f)]}
              for split, files in FILES.items() for f in files]
    (root / f"dataset_{dataset}.json").write_text(json.dumps({"images": images}))


def write_parquet(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, shard in (("train", "train"), ("val", "valid"), ("test", "test")):
        rows = []
        for i, f in enumerate(FILES[split]):
            buffer = io.BytesIO()
            Image.fromarray(np.full((20, 20, 3), 10 * i, np.uint8)).save(buffer, format="JPEG")
            rows.append({"filename": f.replace(".tif", ".jpg"), "captions": captions_of(f),
                         "image": {"bytes": buffer.getvalue(), "path": None}})
        pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"{shard}-00000-of-00001.parquet")


def tiff_bytes(pixels: np.ndarray, deflate: bool = False, photometric: int | None = None) -> bytes:
    """A minimal little-endian TIFF (one strip, interleaved samples) of ``pixels`` [H, W] or [H, W, bands],
    any unsigned or float dtype: PIL cannot write 16-bit RGB or CMYK."""
    height, width = pixels.shape[:2]
    bands = 1 if pixels.ndim == 2 else pixels.shape[2]
    data = np.ascontiguousarray(pixels, pixels.dtype.newbyteorder("<")).tobytes()
    data = zlib.compress(data) if deflate else data
    per_band = 2 * bands > 4   # short arrays longer than 4 bytes go after the directory
    tags = {256: width, 257: height, 258: [8 * pixels.itemsize] * bands, 259: 8 if deflate else 1,
            262: photometric if photometric is not None else (2 if bands >= 3 else 1), 273: 0, 277: bands,
            278: height, 279: len(data), 284: 1, 339: [3 if pixels.dtype.kind == "f" else 1] * bands}
    directory_end = 8 + 2 + 12 * len(tags) + 4
    extra, entries = b"", []
    data_at = directory_end + (4 * bands if per_band else 0)
    for tag, value in tags.items():
        if isinstance(value, list):
            packed = struct.pack(f"<{bands}H", *value)
            if per_band:
                packed, extra = struct.pack("<I", directory_end + len(extra)), extra + packed
            entries.append(struct.pack("<HHI", tag, 3, bands) + packed.ljust(4, b"\0"))
        else:
            kind = 4 if tag in (273, 279) else 3
            value = data_at if tag == 273 else value
            entries.append(struct.pack("<HHI", tag, kind, 1) + struct.pack("<I" if kind == 4 else "<H", value).ljust(4, b"\0"))
    header = b"II*\0" + struct.pack("<IH", 8, len(tags)) + b"".join(entries) + b"\0\0\0\0"
    return header + extra + data


def png_bytes(width: int, height: int, depth: int, data: bytes) -> bytes:
    """An RGB PNG of ``depth`` bits per sample whose IDAT holds ``data`` compressed (PIL cannot write
    16-bit RGB, nor a header that lies about its data)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


def png16_bytes(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of uint16 ``pixels`` [H, W, 3]."""
    height, width = pixels.shape[:2]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)   # filter type 0 per row
    return png_bytes(width, height, 16, rows)


# what reading a file that declares 40000x40000 pixels says (pir.data.images.DEFAULT_MAX_PIXELS)
HUGE = ("image is 40000x40000 pixels (1.6 G), above the 134 M-pixel cap; "
        "raise it with --max-pixels / data.max_image_pixels")


def declared_tiff(path: Path, side: int = 40000) -> Path:
    """A ~16 KB tiled TIFF declaring side x side 8-bit RGB (4.5 GiB decoded at 40000): one real (zero)
    tile, every other tile empty. Never decode it: the point is that the header alone is refused."""
    import itertools

    import tifffile

    tiles = (-(-side // 1024)) ** 2
    data = itertools.chain([np.zeros((1024, 1024, 3), np.uint8)], (None for _ in range(tiles - 1)))
    tifffile.imwrite(path, data, shape=(side, side, 3), dtype=np.uint8, tile=(1024, 1024), photometric="rgb",
                     compression="zlib")
    return path
