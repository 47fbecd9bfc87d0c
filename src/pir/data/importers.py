"""Import RSITMD / RSICD from a local folder into the canonical prepared form.

Annotation layouts read (see docs/design.md, "Data"):
- PIR/X-VLM finetune JSON ``<dataset>_{train,val,test}.json``: train has one row per
  caption (``caption`` str), val/test one row per image (``caption`` list);
- Karpathy-style ``dataset_<dataset>.json`` (``images[].filename/split/sentences[].raw``);
- AMFMN precomp text files ``{train,val,test}_filename.txt`` + ``_caps.txt``
  (either k captions per listed file, or one file line per caption line);
- Hugging Face parquet (``filename``, ``captions``, ``image.bytes``), RSICD's HF layout.

When several are present the most complete wins: Karpathy, then finetune JSON
(whose missing train list comes from precomp train minus the val/test images,
as PIR does for RSICD), then precomp, then parquet. A missing val split is
carved from train by image, seeded. Scene class = filename prefix before the
last ``_<number>``; otherwise a ``class_list`` entry; otherwise ``unknown``.

Every problem is collected with the file it concerns; if any is found the
import stops with a one-line ``ValueError`` before anything is written.
"""

from __future__ import annotations

import io as _io
import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pir.data.prepared import SPLITS, UNKNOWN_SCENE, ImageRecord

IMAGE_EXTENSIONS = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp")
_SCENE_RE = re.compile(r"^(.+?)_\d+$")
_MAX_LISTED_PROBLEMS = 3


@dataclass
class RawImage:
    """One image as an annotation file lists it, before validation and decoding."""
    file: str                      # image id: the file's base name ("bridge_942.tif")
    split: str
    captions: list[str]
    source: str                    # annotation file it came from (for messages)
    path_hint: str = ""            # path as written in the annotation ("train/bridge_942.tif")
    label_name: str | None = None  # class given by the annotation, if any
    image_bytes: bytes | None = None  # encoded image embedded in the annotation (parquet)


@dataclass
class ImportedDataset:
    classes: list[str]
    records: list[ImageRecord]
    pixels: np.ndarray                        # uint8 [n, R, R, 3]
    layout: str                               # which annotation layout was read
    notes: list[str] = field(default_factory=list)  # non-fatal facts worth printing (carved val, ...)


class ImportProblems(ValueError):
    """All problems found while importing; str() is one line, .problems the full list."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = f" (and {len(problems) - _MAX_LISTED_PROBLEMS} more)" if len(problems) > _MAX_LISTED_PROBLEMS else ""
        hint = ("; data.drop_empty_captions: true drops empty captions instead"
                if any(p.endswith("is empty") for p in problems) else "")
        super().__init__(f"{len(problems)} problem(s) in the dataset: {shown}{more}{hint}")


# --------------------------------------------------------------------------- scene classes

def scene_from_filename(name: str) -> str | None:
    """``storagetanks_12.tif`` -> ``storagetanks``; None when the name carries no class (``00017.jpg``)."""
    match = _SCENE_RE.match(Path(name).stem)
    return match.group(1).lower() if match else None


def read_class_list(path: str | os.PathLike) -> dict[str, str]:
    """``filename class`` lines (blank lines and # comments ignored) -> {file base name: class}."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read class list ({exc.strerror or exc})") from None
    mapping = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'filename class', got {line!r}")
        mapping[Path(parts[0]).name] = parts[1].lower()
    return mapping


def assign_scenes(images: list[RawImage], class_list: dict[str, str]) -> tuple[list[str], list[str]]:
    """Scene per image (annotation label, else filename, else class list, else unknown) and sorted classes."""
    scenes = [img.label_name or scene_from_filename(img.file) or class_list.get(img.file) or UNKNOWN_SCENE
              for img in images]
    classes = sorted(set(scenes) - {UNKNOWN_SCENE})
    return scenes, classes


# --------------------------------------------------------------------------- annotation readers

def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None


def _bad_format(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: unexpected format ({what})")


def read_finetune_json(path: Path, split: str) -> list[RawImage]:
    """PIR/X-VLM finetune file: rows with ``caption`` str (one per caption) or list (one per image)."""
    rows = _load_json(path)
    if not isinstance(rows, list):
        raise _bad_format(path, "expected a list of rows")
    images: dict[str, RawImage] = {}
    duplicates = []
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or "image" not in row or "caption" not in row:
            raise _bad_format(path, f"row {number} lacks 'image' or 'caption'")
        file = Path(row["image"]).name
        captions = [row["caption"]] if isinstance(row["caption"], str) else list(row["caption"])
        if file in images:
            if not isinstance(row["caption"], str):   # per-image rows must not repeat
                duplicates.append(f"{path.name}: duplicate image id {file}")
            images[file].captions.extend(captions)
        else:
            images[file] = RawImage(file, split, captions, path.name, row["image"], row.get("label_name"))
    if duplicates:
        raise ImportProblems(duplicates)
    return list(images.values())


def read_karpathy_json(path: Path) -> list[RawImage]:
    """Karpathy-style ``{"images": [{"filename", "split", "sentences": [{"raw"}]}]}``; restval counts as train."""
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise _bad_format(path, "expected {'images': [...]}")
    images = []
    for number, entry in enumerate(data["images"]):
        try:
            split = {"restval": "train", "valid": "val"}.get(entry["split"], entry["split"])
            captions = [s["raw"] if isinstance(s, dict) else str(s) for s in entry["sentences"]]
            hint = "/".join(p for p in (entry.get("filepath", ""), entry["filename"]) if p)
        except (KeyError, TypeError):
            raise _bad_format(path, f"image {number} lacks filename/split/sentences") from None
        if split not in SPLITS:
            raise _bad_format(path, f"image {entry['filename']} has split {entry['split']!r}")
        images.append(RawImage(Path(entry["filename"]).name, split, captions, path.name, hint))
    return images


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None


def read_precomp(folder: Path, split: str) -> list[RawImage]:
    """AMFMN ``<split>_filename.txt`` + ``<split>_caps.txt``.

    Train lists each file once with k consecutive captions; test repeats each
    file once per caption line. Both are handled: equal line counts mean aligned
    lines (grouped by file), otherwise captions must be a multiple of files.
    """
    names_path, caps_path = folder / f"{split}_filename.txt", folder / f"{split}_caps.txt"
    names = [n.strip() for n in _read_lines(names_path) if n.strip()]
    caps = [c.strip() for c in _read_lines(caps_path)]
    while caps and not caps[-1]:
        caps.pop()   # a trailing newline is not an empty caption
    source = f"{folder.name}/{split}_caps.txt"
    if len(caps) == len(names):
        pairs = zip(names, caps)
    elif names and len(caps) % len(names) == 0:
        k = len(caps) // len(names)
        pairs = ((names[i // k], c) for i, c in enumerate(caps))
    else:
        raise ValueError(f"{caps_path}: {len(caps)} captions do not match the {len(names)} files of {names_path.name}")
    images: dict[str, RawImage] = {}
    for name, caption in pairs:
        file = Path(name).name
        if file not in images:
            images[file] = RawImage(file, "train" if split == "train" else split, [], source, name)
        images[file].captions.append(caption)
    return list(images.values())


def read_parquet(paths: list[Path]) -> list[RawImage]:
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
        for row in table.to_pylist():
            image = row["image"] or {}
            images.append(RawImage(Path(row["filename"]).name, split, list(row["captions"] or []), path.name,
                                   row["filename"], image_bytes=image.get("bytes")))
    return images


def _split_from_name(name: str) -> str | None:
    lower = name.lower()
    for key, split in (("train", "train"), ("valid", "val"), ("val", "val"), ("test", "test")):
        if key in lower:
            return split
    return None


# --------------------------------------------------------------------------- layout detection

def _find(root: Path, names: set[str], max_depth: int = 3) -> dict[str, Path]:
    """Files under ``root`` (shallowest first) whose lower-case name is in ``names``."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        depth = len(Path(dirpath).relative_to(root).parts)
        if depth >= max_depth:
            dirnames.clear()
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower() in names and name.lower() not in found:
                found[name.lower()] = Path(dirpath) / name
    return found


def read_annotations(root: Path, dataset: str) -> tuple[str, list[RawImage]]:
    """Pick the most complete annotation layout under ``root``; (layout name, images with splits)."""
    finetune_names = {f"{dataset}_{s}.json" for s in SPLITS}
    precomp_names = {f"{s}_{kind}.txt" for s in SPLITS for kind in ("filename", "caps")}
    found = _find(root, {f"dataset_{dataset}.json"} | finetune_names | precomp_names)
    precomp_dir = found["train_filename.txt"].parent if "train_filename.txt" in found else None

    if f"dataset_{dataset}.json" in found:
        return "karpathy", read_karpathy_json(found[f"dataset_{dataset}.json"])
    if finetune_names & set(found):
        images = []
        for split in SPLITS:
            if f"{dataset}_{split}.json" in found:
                images += read_finetune_json(found[f"{dataset}_{split}.json"], split)
        if f"{dataset}_train.json" not in found and precomp_dir is not None:
            # PIR's RSICD train list = precomp train minus the images of the published val/test lists
            listed = {img.file for img in images}
            images += [img for img in read_precomp(precomp_dir, "train") if img.file not in listed]
            return "finetune+precomp", images
        return "finetune", images
    if precomp_dir is not None:
        images = []
        for split in SPLITS:
            if (precomp_dir / f"{split}_filename.txt").exists():
                images += read_precomp(precomp_dir, split)
        return "precomp", images
    parquets = sorted(root.rglob("*.parquet"))
    if parquets:
        return "parquet", read_parquet(parquets)
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
        captions = [c for c in img.captions if isinstance(c, str) and c.strip()]
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
            if not isinstance(caption, str) or not caption.strip():
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


# --------------------------------------------------------------------------- images

def index_images(root: Path) -> dict[str, list[Path]]:
    """Every image file under ``root`` by base name (images may sit flat or in split folders)."""
    index: dict[str, list[Path]] = {}
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        for name in filenames:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                index.setdefault(name, []).append(Path(dirpath) / name)
    return index


def locate_image(root: Path, img: RawImage, index: dict[str, list[Path]]) -> Path | None:
    """The annotation's own relative path if it exists, else a same-named file, preferring the split's folder."""
    if img.path_hint and (root / img.path_hint).is_file():
        return root / img.path_hint
    candidates = index.get(img.file, [])
    for path in candidates:
        if img.split in path.parts or (img.split == "val" and "valid" in path.parts):
            return path
    return candidates[0] if candidates else None


def decode_image(source: Path | bytes, size: int) -> np.ndarray:
    """Decode once to RGB and resize (bicubic) to the cache resolution."""
    with Image.open(_io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


def decode_all(sources: list[Path | bytes], names: list[str], size: int, progress: bool, workers: int = 4
               ) -> tuple[np.ndarray, list[str]]:
    """Decode every image into one uint8 array; unreadable ones become problems naming the file."""
    pixels = np.zeros((len(sources), size, size, 3), np.uint8)
    problems: list[str] = []

    def work(i: int) -> None:
        try:
            pixels[i] = decode_image(sources[i], size)
        except Exception as exc:  # PIL raises several types for corrupt files; report, do not crash mid-way
            problems.append(f"{names[i]}: unreadable image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")

    # PIL releases the GIL while decoding and resizing, so a few threads help on big datasets
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(tqdm(pool.map(work, range(len(sources))), total=len(sources), desc="decode images",
                  disable=not progress, mininterval=1.0))
    return pixels, sorted(problems)


# --------------------------------------------------------------------------- entry point

def import_dataset(root: str | os.PathLike, dataset: str, cache_res: int, seed: int, val_fraction: float = 0.1,
                   class_list: str | os.PathLike = "", drop_empty: bool = False, progress: bool = True
                   ) -> ImportedDataset:
    """Read annotations and images under ``root``; validate everything before returning."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found (set data.source to the folder holding it)")
    layout, images = read_annotations(root, dataset)
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
    index = {} if layout == "parquet" else index_images(root)
    sources: list[Path | bytes] = []
    for img in images:
        found = img.image_bytes if img.image_bytes else locate_image(root, img, index)
        if found is None:
            problems.append(f"{img.file}: image listed in {img.source} not found under {root}")
        sources.append(found)
    if problems:
        raise ImportProblems(problems)

    pixels, decode_problems = decode_all(sources, [str(s) if isinstance(s, Path) else f"{img.source}:{img.file}"
                                                   for s, img in zip(sources, images)], cache_res, progress)
    if decode_problems:
        raise ImportProblems(decode_problems)

    mapping = read_class_list(class_list) if class_list else {}
    scenes, classes = assign_scenes(images, mapping)
    label_of = {name: i for i, name in enumerate(classes)}
    records = [ImageRecord(img.file, img.split, scene, label_of.get(scene, -1), tuple(c.strip() for c in img.captions))
               for img, scene in zip(images, scenes)]
    unknown = sum(s == UNKNOWN_SCENE for s in scenes)
    if unknown:
        notes.append(f"{unknown} images have no scene class in their name"
                     + ("" if class_list else " and no data.class_list: scene 'unknown' (label -1)"))
    return ImportedDataset(classes, records, pixels, layout, notes)


def split_counts(records: list[ImageRecord]) -> dict[str, int]:
    counts = Counter(r.split for r in records)
    return {s: counts.get(s, 0) for s in SPLITS}
