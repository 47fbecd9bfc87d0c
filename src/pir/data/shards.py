"""Sharded corpora: webdataset tar shards, written from a dataset and read back sample by sample.

A shard folder (``pir shards``; docs/scaling.md, "Sharded corpora") holds::

    shards.json                 the manifest (``MANIFEST``): format, dataset, classes, seed, per split the
                                image and caption counts and every shard with its counts, size and sha256
    train-00000.tar, ...        ``<split>-<5 digits>.tar``: splits never share a shard; ``shard_size``
    val-00000.tar, ...          samples each, the last one fewer
    test-00000.tar, ...

Each sample is three tar members named by its key, img2dataset's layout (what open_clip's
``--train-data`` reads): ``<key>.jpg|png|tif|...`` the encoded image, ``<key>.txt`` the captions one per
line, ``<key>.json`` ``{"key", "file", "split", "scene", "source"}``. The key is
``<split>-<9 digits>``, the sample's position in its split as written (keys hold no dot: webdataset
splits a member name at its first dot). Train samples are written in an order shuffled by the seed,
val and test in the source's order. Tars are written with fixed metadata (mtime 0, uid 0, no owner
names), so the same source and seed give the same bytes.

Reading goes through webdataset's tar iteration (members are read into memory one sample at a time,
never extracted to disk) over local files opened here, never through webdataset's ``gopen``, which
runs ``pipe:`` URLs as shell commands. A source string with braces or ``::`` is a shard pattern in
open_clip's form (``/data/rs5m/{00000..00127}.tar``, ``a.tar::b.tar``), expanded by
:func:`expand_pattern`. Decoding is ``pir.data.images`` with its pixel caps.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from pir import files
from pir.errors import first_line
from pir.data.images import decode_all
from pir.data.prepared import SPLITS, UNKNOWN_SCENE, ImageRecord
from pir.data.text import is_empty_caption

MANIFEST = "shards.json"
FORMAT = "pir-shards"
FORMAT_VERSION = 1
# image members read, in order of preference (img2dataset writes jpg; pir shards keeps the source's format)
IMAGE_KEYS = ("jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp")
_EXTENSION = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".tif": "tif", ".tiff": "tif", ".bmp": "bmp",
              ".webp": "webp"}
_PIL_FORMAT = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "BMP": "bmp", "WEBP": "webp"}
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MAX_PATTERN_SHARDS = 1_000_000
_SHARD_NAME = re.compile(r"^(train|val|test)-(\d{5,})\.tar$")


# --------------------------------------------------------------------------- sources and patterns

def is_shard_pattern(source: str) -> bool:
    """Braces or ``::`` (open_clip's separator of several patterns): a list of tar shards, not a dataset
    (a URL's ``::`` is an IPv6 address)."""
    from pir.data.download import is_url

    return "{" in source or ("::" in source and not is_url(source))


def is_shard_folder(source: str) -> bool:
    return bool(source) and (Path(source).expanduser() / MANIFEST).is_file()


def is_shard_source(source: str) -> bool:
    """Does ``data.source`` name tar shards (a shard folder or a pattern) that training streams?"""
    return bool(source) and (is_shard_pattern(source) or is_shard_folder(source))


def _expand_group(body: str, pattern: str) -> list[str]:
    """The items of one ``{...}``: ``A..B`` (integers, inclusive, either direction, zero-padded to the wider
    bound when one has a leading zero) or ``a,b,c``."""
    numbers = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
    if numbers:
        low, high = numbers.groups()
        width = max(len(low), len(high)) if any(len(b.lstrip("-")) > 1 and b.lstrip("-")[0] == "0"
                                                for b in (low, high)) else 0
        step = 1 if int(high) >= int(low) else -1
        if abs(int(high) - int(low)) >= MAX_PATTERN_SHARDS:
            raise ValueError(f"shard pattern {pattern!r}: {{{body}}} lists more than {MAX_PATTERN_SHARDS} shards")
        return [str(n).zfill(width) for n in range(int(low), int(high) + step, step)]
    if "," in body:
        return body.split(",")
    raise ValueError(f"shard pattern {pattern!r}: {{{body}}} is neither a range {{A..B}} nor a list {{a,b}}")


def _expand_one(pattern: str) -> list[str]:
    parts = re.split(r"(\{[^{}]*\})", pattern)
    literal = "".join(parts[0::2])
    if "{" in literal or "}" in literal:
        raise ValueError(f"shard pattern {pattern!r}: unbalanced or nested braces")
    groups = [_expand_group(part[1:-1], pattern) for part in parts[1::2]]
    total = int(np.prod([len(g) for g in groups], dtype=np.float64)) if groups else 1
    if total > MAX_PATTERN_SHARDS:
        raise ValueError(f"shard pattern {pattern!r}: expands to {total} shards, more than {MAX_PATTERN_SHARDS}")
    out = []
    for chosen in product(*groups):
        out.append("".join(p if i % 2 == 0 else chosen[i // 2] for i, p in enumerate(parts)))
    return out


def expand_pattern(pattern: str) -> list[str]:
    """``/d/{00000..00002}.tar::/e/x-{a,b}.tar`` -> the shard paths in order; one-line ValueError naming the
    pattern for what is refused: a URL or ``pipe:`` (only local files are read), bad braces, a path that is
    not a tar, a shard listed twice."""
    pieces = [one.strip() for one in pattern.split("::") if one.strip()]
    for piece in pieces:
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", piece)
        if scheme and len(scheme.group(1)) > 1:   # one letter would be a drive
            raise ValueError(f"shard pattern {pattern!r}: {scheme.group(1)}: sources are not read (shards are read "
                             "from local files only; download or mount them and give their paths)")
    paths = [path for piece in pieces for path in _expand_one(piece)]
    if not paths:
        raise ValueError(f"shard pattern {pattern!r}: lists no shard")
    bad = next((p for p in paths if not p.lower().endswith(SHARD_SUFFIXES)), None)
    if bad is not None:
        raise ValueError(f"shard pattern {pattern!r}: {bad!r} is not a .tar (or .tar.gz) shard")
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise ValueError(f"shard pattern {pattern!r}: {path} is listed twice")
        seen.add(path)
    return paths


def existing_shards(paths: Sequence[str], setting: str) -> list[str]:
    """The shards as absolute paths; one line naming the first missing one (and how many are missing)."""
    resolved = [str(Path(p).expanduser().resolve()) for p in paths]
    missing = [p for p in resolved if not Path(p).is_file()]
    if missing:
        more = f" ({len(missing)} of {len(resolved)} missing)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{missing[0]}: shard of {setting} not found{more}")
    return resolved


# --------------------------------------------------------------------------- the manifest

def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """A shard folder's ``shards.json``, checked: format, version, splits and shard names."""
    path = Path(folder).expanduser() / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found (a shard folder written by `pir shards` holds one)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: invalid JSON ({first_line(exc)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest (no \"format\": \"{FORMAT}\")")
    if not isinstance(manifest.get("format_version"), int) or manifest["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {manifest.get('format_version')!r} is newer than this version "
                         f"reads ({FORMAT_VERSION}); update the pir package")
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not set(splits) <= set(SPLITS) or not isinstance(manifest.get("classes"), list):
        raise ValueError(f"{path}: expected \"classes\" (a list) and \"splits\" keyed by {', '.join(SPLITS)}")
    for split, entry in splits.items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list) or not all(isinstance(s, dict) and _SHARD_NAME.match(str(s.get("name", "")))
                                                   and str(s["name"]).startswith(split + "-") for s in shards):
            raise ValueError(f"{path}: splits.{split}.shards must list {split}-NNNNN.tar names with their counts")
    return manifest


def split_shards(folder: str | os.PathLike, manifest: dict[str, Any], split: str) -> list[str]:
    """Absolute paths of one split's shards, checked to exist."""
    entry = manifest["splits"].get(split) or {"shards": []}
    return existing_shards([str(Path(folder).expanduser() / s["name"]) for s in entry["shards"]],
                           f"{Path(folder) / MANIFEST} ({split})")


def stream_record(source: str, shards: list[str], manifest: dict[str, Any] | None,
                  shard_digests: list[str] | None = None) -> dict[str, Any]:
    """dataset.json's ``train_shards``: where train streams from. The shards' sha256 (from the manifest)
    make the record, and so the train stage's inputs, change when the shards do."""
    train = (manifest or {}).get("splits", {}).get("train") or {}
    return {"source": source, "shards": list(shards),
            **({"sha256": list(shard_digests)} if shard_digests else {}),
            "images": train.get("images"), "captions": train.get("captions")}


# --------------------------------------------------------------------------- reading samples

class ShardError(ValueError):
    """A problem with the shards themselves, already one line naming what it concerns."""


def _open_local(shards: Iterable[dict[str, Any]], current: dict[str, str]) -> Iterator[dict[str, Any]]:
    """webdataset's url_opener for local files only: each shard is opened here and closed once the next
    one is asked for (after webdataset has read it to its end); ``current`` names the one being read."""
    for shard in shards:
        current["url"] = shard["url"]
        with open(shard["url"], "rb") as stream:
            yield {**shard, "stream": stream}


def iter_samples(shards: Iterable[str | dict[str, Any]], suffixes: tuple[str, ...] | None = None
                 ) -> Iterator[dict[str, Any]]:
    """webdataset samples (``{"__key__", "__url__", <suffix>: bytes, ...}``) of local tar shards, in order.

    ``suffixes`` keeps only those members (the others are skipped in the stream, never read into memory).
    A shard that is not a readable tar, or holds one member name twice, is a one-line ``ShardError``."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    urls = ({"url": s} if isinstance(s, str) else s for s in shards)
    select = None if suffixes is None else (lambda name: name.rsplit("/", 1)[-1].partition(".")[2].lower() in suffixes)
    current: dict[str, str] = {}
    try:
        yield from group_by_keys(tar_file_expander(_open_local(urls, current), select_files=select))
    except ShardError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as exc:   # webdataset appends objects to args
        detail = str(exc.args[0]).split(" @ ")[0] if exc.args else type(exc).__name__
        raise ShardError(f"{current.get('url')}: not a readable tar shard ({detail.splitlines()[0]})") from None


def sample_captions(sample: dict[str, Any]) -> list[str]:
    """The captions of a sample's ``.txt``, one per line; lines no model can read (blank, or nothing left
    after normalisation: ``is_empty_caption``) left out; [] when it has none or is not UTF-8."""
    try:
        text = sample.get("txt", b"").decode("utf-8")
    except UnicodeDecodeError:
        return []
    return [line.strip() for line in text.splitlines() if not is_empty_caption(line)]


def sample_meta(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample's ``.json`` object ({} when absent or not an object: img2dataset's have other fields)."""
    try:
        meta = json.loads(sample["json"]) if "json" in sample else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def sample_image(sample: dict[str, Any]) -> bytes | None:
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    return None if key is None else sample[key]


def where(sample: dict[str, Any]) -> str:
    return f"{sample.get('__url__')}: sample {sample.get('__key__')}"


def shard_captions(shards: Sequence[str], limit: int) -> list[str]:
    """Up to ``limit`` captions from the shards in order, reading only the ``.txt`` members: the bounded
    sample of train captions fetch trains a WordPiece vocabulary on."""
    found: list[str] = []
    for sample in iter_samples(shards, suffixes=("txt",)):
        found += sample_captions(sample)
        if len(found) >= limit:
            return found[:limit]
    return found


@dataclass
class ShardSplits:
    """Val and test read from shards and decoded at the cache resolution (fetch's prepared dataset)."""
    classes: list[str]
    records: list[ImageRecord]
    pixels: np.ndarray


def read_splits(folder: str | os.PathLike, manifest: dict[str, Any], splits: Sequence[str], cache_res: int,
                progress: bool = True, *, max_pixels: int | None = None) -> ShardSplits:
    """The samples of ``splits`` in a shard folder, decoded once: every problem (no image, no caption, a
    duplicate file id, an image that does not decode or is over the cap) listed before anything is returned."""
    from pir.data.importers import ImportProblems

    classes = [str(c) for c in manifest["classes"]]
    label_of = {name: i for i, name in enumerate(classes)}
    records: list[ImageRecord] = []
    images: list[bytes] = []
    names: list[str] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for split in splits:
        for sample in iter_samples(split_shards(folder, manifest, split)):
            image, captions, meta = sample_image(sample), sample_captions(sample), sample_meta(sample)
            file = str(meta.get("file") or sample["__key__"])
            if image is None or not captions:
                problems.append(f"{where(sample)}: no {'image member' if image is None else 'caption in its .txt'}")
                continue
            if file in seen:
                problems.append(f"{where(sample)}: image {file} also in {seen[file]}")
                continue
            seen[file] = where(sample)
            scene = str(meta.get("scene") or UNKNOWN_SCENE)
            scene = scene if scene in label_of else UNKNOWN_SCENE
            records.append(ImageRecord(file, split, scene, label_of.get(scene, -1), tuple(captions)))
            images.append(image)
            names.append(where(sample))
    if problems:
        raise ImportProblems(problems)
    pixels, decode_problems = decode_all(images, names, cache_res, progress, max_pixels=max_pixels)
    if decode_problems:
        raise ImportProblems(decode_problems)
    return ShardSplits(classes, records, pixels)


# --------------------------------------------------------------------------- writing

@dataclass(frozen=True)
class ShardItem:
    """One image to write: its record and how to get its encoded bytes (read one at a time)."""
    file: str
    split: str
    scene: str
    captions: tuple[str, ...]
    source: str                              # where the bytes come from, relative to the source (no machine paths)
    read: Callable[[], tuple[bytes, str]]    # -> (encoded image, member extension)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A uint8 [H, W, 3] array as PNG (lossless: decoding it gives the array back)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def prepared_items(root: str | os.PathLike) -> tuple[str, list[str], list[ShardItem]]:
    """(dataset name, classes, items) of a prepared dataset folder: each image as a PNG of its cached pixels."""
    from pir.data.prepared import load_prepared

    prepared = load_prepared(Path(root))
    pixels = prepared.pixels
    items = [ShardItem(r.file, r.split, r.scene, r.captions, f"pixels.npy row {row}",
                       (lambda row=row: (png_bytes(pixels[row]), "png")))
             for row, r in enumerate(prepared.records)]
    return prepared.name, list(prepared.classes), items


def _encoded(source: Path | bytes, file: str) -> tuple[bytes, str]:
    """A source image's own bytes and the member extension: from its suffix, else from what PIL recognises."""
    data = source.read_bytes() if isinstance(source, Path) else source
    name = source.name if isinstance(source, Path) else file
    extension = _EXTENSION.get(Path(name).suffix.lower())
    if extension is None:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:   # only the header: decode_all has checked the image
            extension = _PIL_FORMAT.get(image.format or "", "img")
    return data, extension


def located_items(located, progress: bool = True, *, max_pixels: int | None = None) -> list[ShardItem]:
    """Items of an imported dataset (pir.data.importers.LocatedDataset): the images' own encoded bytes,
    each checked to decode (within ``max_pixels``) before any shard is written."""
    from pir.data.images import MIN_SIDE
    from pir.data.importers import ImportProblems

    _, problems = decode_all(located.sources, located.names(), MIN_SIDE, progress, max_pixels=max_pixels)
    if problems:
        raise ImportProblems(problems)
    root = located.root
    items = []
    for img, source, record in zip(located.images, located.sources, located.records()):
        where_from = (source.relative_to(root).as_posix() if isinstance(source, Path) and source.is_relative_to(root)
                      else f"{img.source}: {img.file}")
        items.append(ShardItem(record.file, record.split, record.scene, record.captions, where_from,
                               (lambda source=source, file=img.file: _encoded(source, file))))
    return items


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644   # fixed metadata: same input, same bytes
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, split: str, items: Sequence[ShardItem], first: int) -> dict[str, Any]:
    """One shard, written to a temp name and renamed: its manifest entry."""
    with files.atomic_path(path) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for position, item in enumerate(items, first):
                key = f"{split}-{position:09d}"
                image, extension = item.read()
                meta = {"key": key, "file": item.file, "split": split, "scene": item.scene, "source": item.source}
                _add_member(tar, f"{key}.{extension}", image)
                # one caption a line: a caption's own line breaks (any that str.splitlines knows) become spaces
                _add_member(tar, f"{key}.txt", "".join(" ".join(c.splitlines()) + "\n" for c in item.captions).encode())
                _add_member(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode())
    return {"name": path.name, "images": len(items), "captions": sum(len(i.captions) for i in items),
            "bytes": path.stat().st_size, "sha256": files.sha256_file(path)}


def check_output_folder(out: Path) -> dict[str, Any] | None:
    """OUT must be new, empty, or an earlier shard folder (whose manifest is returned, to clean up after)."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if (out / MANIFEST).is_file():
        return read_manifest(out)
    if any(out.iterdir()):
        raise ValueError(f"{out}: not empty and not a shard folder (no {MANIFEST}); choose a new or empty folder")
    return None


def write_shards(items: Sequence[ShardItem], out: str | os.PathLike, shard_size: int, *, dataset: str,
                 classes: Sequence[str], seed: int, source: str, progress: bool = True) -> dict[str, Any]:
    """Write ``items`` as tar shards of ``shard_size`` samples per split into ``out``, then the manifest.

    Train is shuffled with ``seed`` (so any prefix of the shards is a fair sample: the bounded caption
    sample of fetch's tokenizer, shards read by few workers); val and test keep the source order. Each
    shard is atomic, the manifest comes last, and shards of an earlier manifest that the new one does not
    list are removed after it."""
    from tqdm import tqdm

    if shard_size < 1:
        raise ValueError(f"--shard-size {shard_size}: must be >= 1")
    out = Path(out)
    previous = check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    by_split = {split: [item for item in items if item.split == split] for split in SPLITS}
    order = np.random.default_rng(seed).permutation(len(by_split["train"]))
    by_split["train"] = [by_split["train"][i] for i in order]
    splits: dict[str, Any] = {}
    bar = tqdm(total=len(items), desc="write shards", unit="image", disable=not progress, mininterval=1.0)
    for split, chosen in by_split.items():
        shards = []
        for number, first in enumerate(range(0, len(chosen), shard_size)):
            batch = chosen[first:first + shard_size]
            shards.append(write_shard(out / f"{split}-{number:05d}.tar", split, batch, first))
            bar.update(len(batch))
            bar.set_postfix_str(shards[-1]["name"])
        splits[split] = {"images": len(chosen), "captions": sum(len(i.captions) for i in chosen), "shards": shards}
    bar.close()
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "dataset": dataset, "classes": list(classes),
                "seed": seed, "shard_size": shard_size, "source": source, "splits": splits}
    files.write_json(out / MANIFEST, manifest)
    written = {s["name"] for entry in splits.values() for s in entry["shards"]}
    for entry in (previous or {"splits": {}})["splits"].values():
        for shard in entry["shards"]:
            if shard["name"] not in written:
                (out / shard["name"]).unlink(missing_ok=True)
    return manifest
