"""The canonical prepared dataset every stage after ``fetch`` reads.

Whether generated or imported, a dataset is written as one folder:

    dataset.json   {"dataset": str, "classes": [str], "images": [
                      {"file": str, "split": "train"|"val"|"test", "scene": str,
                       "label": int (-1 = unknown scene), "captions": [str, ...]}, ...]}
    pixels.npy     uint8 [n_images, R, R, 3], row i = images[i], decoded once and
                   resized to the cache resolution; memory-mapped by the loaders
    tokenizer/     HF tokenizer folder (always: trained by fetch, or a copy of the configured one)

With a sharded ``data.source`` the train split is not cached: dataset.json then also holds
``"train_shards": {"source", "shards": [path], "sha256": [hex] (with a manifest), "images", "captions"}``
(null counts for a bare pattern), and the trainer streams it (pir.data.stream).

so later stages cannot tell a generated dataset from a benchmark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from pir import files

SPLITS = ("train", "val", "test")
UNKNOWN_SCENE = "unknown"


@dataclass(frozen=True)
class ImageRecord:
    file: str                 # source file name (unique id of the image)
    split: str                # train | val | test
    scene: str                # scene class name, or "unknown"
    label: int                # index into classes, -1 for unknown
    captions: tuple[str, ...]


@dataclass(frozen=True)
class SplitView:
    """One split, as retrieval sees it: images, and captions flattened with their image."""
    name: str
    image_rows: np.ndarray    # int64 [n_images]: rows of pixels.npy
    labels: np.ndarray        # int64 [n_images]: scene label per image (-1 unknown)
    captions: list[str]       # [n_texts]
    txt2img: np.ndarray       # int64 [n_texts]: position (0..n_images-1) of each caption's image

    @property
    def n_images(self) -> int:
        return len(self.image_rows)

    @property
    def n_texts(self) -> int:
        return len(self.captions)

    def without_images(self, positions) -> "SplitView":
        """This split less the images at ``positions`` (0..n_images-1) and their captions."""
        keep = np.ones(self.n_images, dtype=bool)
        keep[np.asarray(positions, dtype=np.int64)] = False
        new_position = np.cumsum(keep) - 1
        kept_texts = keep[self.txt2img]
        return SplitView(self.name, self.image_rows[keep], self.labels[keep],
                         [c for c, k in zip(self.captions, kept_texts) if k], new_position[self.txt2img[kept_texts]])

    @cached_property
    def img2txt(self) -> list[np.ndarray]:
        order = np.argsort(self.txt2img, kind="stable")
        bounds = np.searchsorted(self.txt2img[order], np.arange(self.n_images + 1))
        return [order[bounds[i]:bounds[i + 1]] for i in range(self.n_images)]


@dataclass
class PreparedDataset:
    name: str
    classes: list[str]
    records: list[ImageRecord]
    pixels: np.ndarray        # uint8 [n, R, R, 3], usually a read-only memmap
    train_shards: dict | None = None   # where a streamed train split is (pir.data.stream); None: cached here

    def split(self, name: str) -> SplitView:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        rows = np.array([i for i, r in enumerate(self.records) if r.split == name], dtype=np.int64)
        captions: list[str] = []
        txt2img: list[int] = []
        for pos, row in enumerate(rows):
            for caption in self.records[row].captions:
                captions.append(caption)
                txt2img.append(pos)
        labels = np.array([self.records[r].label for r in rows], dtype=np.int64)
        return SplitView(name, rows, labels, captions, np.array(txt2img, dtype=np.int64))


def write_prepared(root: Path, name: str, classes: list[str], records: list[ImageRecord], pixels: np.ndarray,
                   train_shards: dict | None = None) -> None:
    """Write the canonical folder; each file atomically, pixels before the index that points at them.
    ``train_shards``: the record of a streamed train split (the key is absent otherwise)."""
    if len(records) != len(pixels):
        raise ValueError(f"{len(records)} records but {len(pixels)} pixel rows")
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must be uint8 [n, R, R, 3], got {pixels.dtype} {pixels.shape}")
    root.mkdir(parents=True, exist_ok=True)
    files.save_npy(root / "pixels.npy", pixels)
    files.write_json(root / "dataset.json", {
        "dataset": name,
        "classes": list(classes),
        "images": [{"file": r.file, "split": r.split, "scene": r.scene, "label": r.label,
                    "captions": list(r.captions)} for r in records],
        **({"train_shards": train_shards} if train_shards is not None else {}),
    })


def load_prepared(root: Path, mmap: bool = True) -> PreparedDataset:
    """Read a prepared folder; pixels are memory-mapped (decoded once by fetch, never again)."""
    index_path = root / "dataset.json"
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{index_path}: prepared dataset not found (run the fetch stage)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{index_path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    records = [ImageRecord(r["file"], r["split"], r["scene"], int(r["label"]), tuple(r["captions"]))
               for r in index["images"]]
    pixels = np.load(root / "pixels.npy", mmap_mode="r" if mmap else None)
    if len(pixels) != len(records):
        raise ValueError(f"{root / 'pixels.npy'}: {len(pixels)} rows but dataset.json lists {len(records)} images")
    return PreparedDataset(index["dataset"], list(index["classes"]), records, pixels, index.get("train_shards"))


def resize_pixels(pixels: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """uint8 [n, R, R, 3] -> uint8 [n, size, size, 3], bicubic with antialiasing, in batches (bounded memory)."""
    import torch
    import torch.nn.functional as F

    if pixels.shape[1] == size:
        return pixels
    out = np.empty((len(pixels), size, size, 3), np.uint8)
    for start in range(0, len(pixels), batch):
        chunk = torch.from_numpy(np.ascontiguousarray(pixels[start:start + batch])).permute(0, 3, 1, 2).float()
        resized = F.interpolate(chunk, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        out[start:start + batch] = resized.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return out
