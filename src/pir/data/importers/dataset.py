"""Importing one dataset folder: pick the annotation layout, check every row and caption, carve val if
the source has none, find every image, assign scenes (``locate_dataset``), then decode (``import_dataset``).

Every problem is collected with the file it concerns; if any is found the import stops with a one-line
``ImportProblems`` (a ``ValueError``) before anything is written. Decoding is ``pir.data.images``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pir.data.images import decode_all
from pir.data.importers.common import ImportProblems, RawImage
from pir.data.importers.finetune import read_finetune_json
from pir.data.importers.folder import DatasetFolder, index_images, locate_all
from pir.data.importers.karpathy import read_karpathy_json
from pir.data.importers.parquet import read_parquet
from pir.data.importers.precomp import read_precomp
from pir.data.importers.scenes import assign_scenes, read_class_list
from pir.data.prepared import SPLITS, UNKNOWN_SCENE, ImageRecord
from pir.data.text import is_empty_caption


@dataclass
class ImportedDataset:
    classes: list[str]
    records: list[ImageRecord]
    pixels: np.ndarray                        # uint8 [n, R, R, 3]
    layout: str                               # which annotation layout was read
    notes: list[str] = field(default_factory=list)  # non-fatal facts worth printing (carved val, ...)


# --------------------------------------------------------------------------- layout detection

def read_annotations(folder: DatasetFolder, dataset: str) -> tuple[str, list[RawImage]]:
    """Pick the most complete annotation layout; (layout name, images with splits). Malformed rows of
    every file read are raised together as ``ImportProblems``."""
    problems: list[str] = []
    layout, images = _read_layout(folder, dataset, problems)
    if problems:
        raise ImportProblems(problems)
    return layout, images


def _read_layout(folder: DatasetFolder, dataset: str, problems: list[str]) -> tuple[str, list[RawImage]]:
    finetune_names = {f"{dataset}_{s}.json" for s in SPLITS}
    precomp_names = {f"{s}_{kind}.txt" for s in SPLITS for kind in ("filename", "caps")}
    found = folder.find({f"dataset_{dataset}.json"} | finetune_names | precomp_names)
    precomp_dir = found["train_filename.txt"].parent if "train_filename.txt" in found else None

    if f"dataset_{dataset}.json" in found:
        return "karpathy", read_karpathy_json(found[f"dataset_{dataset}.json"], problems)
    if finetune_names & set(found):
        images = []
        for split in SPLITS:
            if f"{dataset}_{split}.json" in found:
                images += read_finetune_json(found[f"{dataset}_{split}.json"], split, problems)
        if f"{dataset}_train.json" not in found and precomp_dir is not None:
            # PIR's RSICD train list = precomp train minus the images of the published val/test lists
            listed = {img.file for img in images}
            images += [img for img in read_precomp(precomp_dir, "train", problems) if img.file not in listed]
            return "finetune+precomp", images
        return "finetune", images
    if precomp_dir is not None:
        images = []
        for split in SPLITS:
            if (precomp_dir / f"{split}_filename.txt").exists():
                images += read_precomp(precomp_dir, split, problems)
        return "precomp", images
    parquets = folder.files_ending((".parquet",))
    if parquets:
        return "parquet", read_parquet(parquets, problems)
    root = folder.root
    raise FileNotFoundError(
        f"{root}: no {dataset} annotations found (expected {dataset}_train.json/_val.json/_test.json, "
        f"dataset_{dataset}.json, precomp train_filename.txt + train_caps.txt, or *.parquet)")


# --------------------------------------------------------------------------- validation and splits

def carve_val(images: list[RawImage], fraction: float, seed: int) -> int:
    """Move a seeded ``fraction`` of the train images (whole images, never single captions) to val."""
    train = [img for img in images if img.split == "train"]
    n_val = int(round(fraction * len(train)))
    for index in np.random.default_rng(seed).permutation(len(train))[:n_val]:
        train[index].split = "val"
    return n_val


def drop_empty_captions(images: list[RawImage]) -> tuple[list[RawImage], list[str]]:
    """Remove empty captions, and images left without any; notes name each image touched."""
    kept, notes = [], []
    for img in images:
        captions = [c for c in img.captions if isinstance(c, str) and not is_empty_caption(c)]
        if len(captions) < len(img.captions):
            gone = "dropped the image" if not captions else f"kept {len(captions)}"
            notes.append(f"{img.source}: image {img.file}: {len(img.captions) - len(captions)} empty caption(s), {gone}")
            img.captions = captions
        if captions:
            kept.append(img)
    return kept, notes


def find_problems(images: list[RawImage]) -> list[str]:
    """Empty captions, duplicate ids within a split, images listed in two splits."""
    problems = []
    seen: dict[str, RawImage] = {}
    for img in images:
        if not img.captions:
            problems.append(f"{img.source}: image {img.file} has no captions")
        for number, caption in enumerate(img.captions):
            if not isinstance(caption, str) or is_empty_caption(caption):
                problems.append(f"{img.source}: image {img.file} caption {number} is empty")
        if img.file in seen:
            other = seen[img.file]
            if other.split != img.split:
                problems.append(f"{img.source}: image {img.file} is in both {other.split} ({other.source}) and {img.split}")
            else:
                problems.append(f"{img.source}: duplicate image id {img.file} in {img.split}")
        else:
            seen[img.file] = img
    return problems


# --------------------------------------------------------------------------- entry point

@dataclass
class LocatedDataset:
    """A dataset's images, validated and found, before any pixel is decoded: what ``import_dataset``
    decodes, and what ``pir shards`` copies as encoded bytes (pir.data.shards)."""
    root: Path
    images: list[RawImage]                    # in the prepared order: by split, then as listed
    sources: list[Path | bytes]               # what to decode for each image: a file inside root, or embedded bytes
    scenes: list[str]                         # scene per image ("unknown" when none)
    classes: list[str]
    layout: str
    notes: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        """Each image as a problem names it: its file, or the annotation file and id of embedded bytes."""
        return [str(s) if isinstance(s, Path) else f"{img.source}:{img.file}"
                for s, img in zip(self.sources, self.images)]

    def records(self) -> list[ImageRecord]:
        label_of = {name: i for i, name in enumerate(self.classes)}
        return [ImageRecord(img.file, img.split, scene, label_of.get(scene, -1), tuple(c.strip() for c in img.captions))
                for img, scene in zip(self.images, self.scenes)]


def locate_dataset(root: str | os.PathLike, dataset: str, seed: int, val_fraction: float = 0.1,
                   class_list: str | os.PathLike = "", drop_empty: bool = False) -> LocatedDataset:
    """Read the annotations under ``root``, carve val if needed, find every image and assign scenes;
    every problem but the images' contents raised (one line) before anything is decoded."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found (set data.source to the folder holding it)")
    folder = DatasetFolder(root)
    layout, images = read_annotations(folder, dataset)
    notes = [f"read {len(images)} images from {layout} annotations under {root}"]
    if drop_empty:   # e.g. RSITMD's precomp train_caps.txt has 20 empty lines (4 images)
        images, dropped = drop_empty_captions(images)
        notes += dropped
    problems = find_problems(images)
    if not any(img.split == "val" for img in images):
        notes.append(f"no val split in the source: carved {carve_val(images, val_fraction, seed)} train images "
                     f"into val (val_fraction {val_fraction}, seed {seed})")

    # a stable order: by split, then as listed (train rows first, like the published files)
    images.sort(key=lambda img: SPLITS.index(img.split))
    sources, missing = locate_all(folder, images, {} if layout == "parquet" else index_images(folder))
    problems += missing
    if problems:
        raise ImportProblems(problems)

    mapping = read_class_list(class_list) if class_list else {}
    scenes, classes = assign_scenes(images, mapping)
    if folder.skipped:
        notes.append(folder.skipped_note())
    unknown = sum(s == UNKNOWN_SCENE for s in scenes)
    if unknown:
        notes.append(f"{unknown} images have no scene class in their name"
                     + ("" if class_list else " and no data.class_list: scene 'unknown' (label -1)"))
    return LocatedDataset(root, images, sources, scenes, classes, layout, notes)


def import_dataset(root: str | os.PathLike, dataset: str, cache_res: int, seed: int, val_fraction: float = 0.1,
                   class_list: str | os.PathLike = "", drop_empty: bool = False, progress: bool = True,
                   *, max_pixels: int | None = None) -> ImportedDataset:
    """Read annotations and images under ``root``; validate everything before returning.

    Images above ``max_pixels`` (width x height; None = images.DEFAULT_MAX_PIXELS), files and embedded
    bytes alike, are refused from their header (data.max_image_pixels)."""
    located = locate_dataset(root, dataset, seed, val_fraction, class_list, drop_empty)
    pixels, decode_problems = decode_all(located.sources, located.names(), cache_res, progress, max_pixels=max_pixels)
    if decode_problems:
        raise ImportProblems(decode_problems)
    return ImportedDataset(located.classes, located.records(), pixels, located.layout, located.notes)


def split_counts(records: list[ImageRecord]) -> dict[str, int]:
    counts = Counter(r.split for r in records)
    return {s: counts.get(s, 0) for s in SPLITS}
