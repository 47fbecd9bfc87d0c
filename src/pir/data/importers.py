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
import stops with a one-line ``ValueError`` before anything is written. A
malformed annotation row (not an object, a field missing, null or of the wrong
type, an image path that is absolute or leaves the dataset folder) is one
problem naming the file, the row (0-based index in JSON and parquet, 1-based
line in text files) and the field; all rows are checked before any image is.

The dataset folder is walked without ever leaving it: a link whose target lies
outside the folder is skipped (and named when an image is then missing), and
each real folder is listed once, so link loops (``a -> .``) end. Nothing
outside the folder is opened. Decoding is ``pir.data.images``.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pir.data.images import IMAGE_EXTENSIONS, decode_all
from pir.data.prepared import SPLITS, UNKNOWN_SCENE, ImageRecord
from pir.data.text import is_empty_caption

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
    hint_at: str = ""              # where path_hint was written ("rsitmd_train.json: row 3: image")


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


# --------------------------------------------------------------------------- the dataset folder

class DatasetFolder:
    """The dataset root. Walks never leave it: links out of it are skipped, each real folder is listed once."""

    def __init__(self, root: Path):
        self.root = root
        self.real = root.resolve()
        self.skipped: set[str] = set()   # links leading outside, named when an image is then missing

    def contains(self, path: Path) -> bool:
        """Whether ``path``, links resolved, lies inside the root (realpath never raises, even on link loops)."""
        return Path(os.path.realpath(path)).is_relative_to(self.real)

    def walk(self, max_depth: int | None = None) -> Iterator[tuple[Path, list[str]]]:
        """(folder, sorted file names), breadth first (shallowest first), down to ``max_depth`` levels."""
        queue, seen = deque([(self.root, 0)]), set()
        while queue:
            folder, depth = queue.popleft()
            try:
                stat = folder.stat()
                if (stat.st_dev, stat.st_ino) in seen:   # reached again through a link: a loop or an alias
                    continue
                seen.add((stat.st_dev, stat.st_ino))
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
            except OSError:
                continue
            files = []
            for entry in entries:
                kind = self._kind(entry)
                if kind == "dir" and (max_depth is None or depth < max_depth):
                    queue.append((Path(entry.path), depth + 1))
                elif kind == "file":
                    files.append(entry.name)
            yield folder, files

    def _kind(self, entry: os.DirEntry) -> str:
        """Kind of entry: "dir", "file", or "" for a link leading outside, a broken or looping link, anything else."""
        try:
            if entry.is_symlink() and not self.contains(Path(entry.path)):
                self.skipped.add(f"{entry.path} -> {os.path.realpath(entry.path)}")
                return ""
            return "dir" if entry.is_dir() else "file" if entry.is_file() else ""
        except OSError:   # ELOOP on a link to itself, permission denied
            return ""

    def find(self, names: set[str], max_depth: int = 3) -> dict[str, Path]:
        """Files (shallowest first) whose lower-case name is in ``names``."""
        found: dict[str, Path] = {}
        for folder, files in self.walk(max_depth):
            for name in files:
                if name.lower() in names and name.lower() not in found:
                    found[name.lower()] = folder / name
        return found

    def files_ending(self, suffixes: tuple[str, ...]) -> list[Path]:
        return [folder / name for folder, files in self.walk() for name in files if name.lower().endswith(suffixes)]

    def skipped_note(self) -> str:
        first = sorted(self.skipped)[0]
        more = f" and {len(self.skipped) - 1} more" if len(self.skipped) > 1 else ""
        return f"{self.root}: did not follow {len(self.skipped)} link(s) leading outside the dataset folder ({first}{more})"


# --------------------------------------------------------------------------- annotation rows

class _BadRow(Exception):
    """One malformed field of one annotation row; str() names the field and what is wrong with it."""


def _describe(value) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 30 else text[:27] + '...'}"


def _object(row) -> dict:
    if not isinstance(row, dict):
        raise _BadRow(f"row is {_describe(row)}, expected an object")
    return row


def _field(row: dict, name: str):
    if name not in row:
        raise _BadRow(f"{name} is missing")
    return row[name]


def _string(value, name: str) -> str:
    if not isinstance(value, str):
        raise _BadRow(f"{name} is {_describe(value)}, expected a string")
    return value


def _strings(value, name: str) -> list[str]:
    """A list of strings; the first item of another type is the problem (``[1, 2]`` is not 'empty')."""
    if not isinstance(value, list):
        raise _BadRow(f"{name} is {_describe(value)}, expected a list of strings")
    for number, item in enumerate(value):
        _string(item, f"{name}[{number}]")
    return value


def _inside_path(value, name: str) -> str:
    """A relative path that stays in the dataset folder (checked by its text; links are checked when located)."""
    path = _string(value, name)
    if not path.strip():
        raise _BadRow(f"{name} is an empty string")
    if os.path.isabs(path) or os.path.normpath(path).split(os.sep)[0] == "..":
        raise _BadRow(f"{name} {path!r} is outside the dataset folder")
    return path


def _parse_rows(rows: list, source: str, parse: Callable, problems: list[str], unit: str = "row",
                start: int = 0) -> list[tuple[int, object]]:
    """(number, parse(row)) of the well-formed rows; each malformed one adds a problem naming file, row and field."""
    parsed = []
    for number, row in enumerate(rows, start):
        try:
            parsed.append((number, parse(row)))
        except _BadRow as exc:
            problems.append(f"{source}: {unit} {number}: {exc}")
    return parsed


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


def _finetune_row(row) -> tuple[str, list[str], bool, str | None]:
    """(image path, captions, one row per image?, label name) of a finetune row."""
    row = _object(row)
    image = _inside_path(_field(row, "image"), "image")
    caption = _field(row, "caption")
    if not isinstance(caption, (str, list)):
        raise _BadRow(f"caption is {_describe(caption)}, expected a string or a list of strings")
    captions = [caption] if isinstance(caption, str) else _strings(caption, "caption")
    label = row.get("label_name")
    return image, captions, isinstance(caption, list), None if label is None else _string(label, "label_name")


def read_finetune_json(path: Path, split: str, problems: list[str]) -> list[RawImage]:
    """PIR/X-VLM finetune file: rows with ``caption`` str (one per caption) or list (one per image)."""
    rows = _load_json(path)
    if not isinstance(rows, list):
        raise _bad_format(path, "expected a list of rows")
    images: dict[str, RawImage] = {}
    for number, (image, captions, per_image, label) in _parse_rows(rows, path.name, _finetune_row, problems):
        file = Path(image).name
        if file in images:
            if per_image:   # per-image rows must not repeat
                problems.append(f"{path.name}: row {number}: duplicate image id {file}")
            images[file].captions.extend(captions)
        else:
            images[file] = RawImage(file, split, list(captions), path.name, image, label,
                                    hint_at=f"{path.name}: row {number}: image")
    return list(images.values())


_KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "valid": "val", "test": "test"}


def _sentence(value, name: str) -> str:
    if isinstance(value, dict) and "raw" in value:
        return _string(value["raw"], f"{name}.raw")
    if not isinstance(value, str):
        raise _BadRow(f"{name} is {_describe(value)}, expected an object with 'raw' or a string")
    return value


def _karpathy_row(entry) -> tuple[str, str, list[str], str]:
    """(file name, split, captions, path hint) of one ``images[]`` entry."""
    entry = _object(entry)
    filename = _inside_path(_field(entry, "filename"), "filename")
    filepath = entry.get("filepath") or ""
    if filepath:
        _inside_path(filepath, "filepath")
    split = _string(_field(entry, "split"), "split")
    if split not in _KARPATHY_SPLITS:
        raise _BadRow(f"split is {split!r}, expected one of {', '.join(_KARPATHY_SPLITS)}")
    sentences = _field(entry, "sentences")
    if not isinstance(sentences, list):
        raise _BadRow(f"sentences is {_describe(sentences)}, expected a list")
    captions = [_sentence(s, f"sentences[{number}]") for number, s in enumerate(sentences)]
    return filename, _KARPATHY_SPLITS[split], captions, "/".join(p for p in (filepath, filename) if p)


def read_karpathy_json(path: Path, problems: list[str]) -> list[RawImage]:
    """Karpathy-style ``{"images": [{"filename", "split", "sentences": [{"raw"}]}]}``; restval counts as train."""
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise _bad_format(path, "expected {'images': [...]}")
    return [RawImage(Path(filename).name, split, captions, path.name, hint,
                     hint_at=f"{path.name}: row {number}: filename")
            for number, (filename, split, captions, hint) in _parse_rows(data["images"], path.name, _karpathy_row,
                                                                         problems)]


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None


def read_precomp(folder: Path, split: str, problems: list[str]) -> list[RawImage]:
    """AMFMN ``<split>_filename.txt`` + ``<split>_caps.txt``.

    Train lists each file once with k consecutive captions; test repeats each
    file once per caption line. Both are handled: equal line counts mean aligned
    lines (grouped by file), otherwise captions must be a multiple of files.
    """
    names_path, caps_path = folder / f"{split}_filename.txt", folder / f"{split}_caps.txt"
    names_source = f"{folder.name}/{names_path.name}"
    before = len(problems)
    lines = _parse_rows(_read_lines(names_path), names_source,
                        lambda line: line.strip() and _inside_path(line.strip(), "filename"), problems, "line", 1)
    if len(problems) > before:
        return []   # the import stops on these; pairing captions with a partial list would only add noise
    names = [name for _, name in lines if name]
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
    lineno = {name: number for number, name in reversed(lines) if name}   # first line naming each file
    images: dict[str, RawImage] = {}
    for name, caption in pairs:
        file = Path(name).name
        if file not in images:
            images[file] = RawImage(file, "train" if split == "train" else split, [], source, name,
                                    hint_at=f"{names_source}: line {lineno[name]}: filename")
        images[file].captions.append(caption)
    return list(images.values())


def _parquet_row(row: dict) -> tuple[str, list[str], bytes | None]:
    """(file name, captions, embedded bytes or None) of one parquet row."""
    filename = _inside_path(row["filename"], "filename")
    captions = _strings(row["captions"], "captions")
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
                   for number, (filename, captions, data) in _parse_rows(table.to_pylist(), path.name,
                                                                        _parquet_row, problems)]
    return images


def _split_from_name(name: str) -> str | None:
    lower = name.lower()
    for key, split in (("train", "train"), ("valid", "val"), ("val", "val"), ("test", "test")):
        if key in lower:
            return split
    return None


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


# --------------------------------------------------------------------------- images

def index_images(folder: DatasetFolder) -> dict[str, list[Path]]:
    """Every image file inside the folder by base name (images may sit flat or in split folders)."""
    index: dict[str, list[Path]] = {}
    for path in folder.files_ending(IMAGE_EXTENSIONS):
        index.setdefault(path.name, []).append(path)
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


def locate_all(folder: DatasetFolder, images: list[RawImage], index: dict[str, list[Path]]
               ) -> tuple[list[Path | bytes | None], list[str]]:
    """What to decode for each image (embedded bytes or a file inside the folder), and the problems."""
    sources: list[Path | bytes | None] = []
    problems = []
    for img in images:
        found = img.image_bytes
        if found is None and img.path_hint and not folder.contains(folder.root / img.path_hint):
            # the text of the path stays inside (checked when read) but a link on the way leads out
            problems.append(f"{img.hint_at} {img.path_hint!r} leads outside the dataset folder through a link")
        elif found is None:
            found = locate_image(folder.root, img, index)
            if found is None:
                problems.append(f"{img.file}: image listed in {img.source} not found under {folder.root}")
        sources.append(found)
    if folder.skipped and any(source is None for source in sources):
        problems.append(folder.skipped_note())
    return sources, problems


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
