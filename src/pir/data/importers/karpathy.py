"""Karpathy-style ``dataset_<dataset>.json`` (``images[].filename/split/sentences[].raw``);
``restval`` counts as train."""

from __future__ import annotations

from pathlib import Path

from pir.data.importers.common import (BadRow, RawImage, as_object, as_string, bad_format, describe, inside_path,
                                       load_json, parse_rows, required)

_KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "valid": "val", "test": "test"}


def _sentence(value, name: str) -> str:
    if isinstance(value, dict) and "raw" in value:
        return as_string(value["raw"], f"{name}.raw")
    if not isinstance(value, str):
        raise BadRow(f"{name} is {describe(value)}, expected an object with 'raw' or a string")
    return value


def _karpathy_row(entry) -> tuple[str, str, list[str], str]:
    """(file name, split, captions, path hint) of one ``images[]`` entry."""
    entry = as_object(entry)
    filename = inside_path(required(entry, "filename"), "filename")
    filepath = entry.get("filepath") or ""
    if filepath:
        inside_path(filepath, "filepath")
    split = as_string(required(entry, "split"), "split")
    if split not in _KARPATHY_SPLITS:
        raise BadRow(f"split is {split!r}, expected one of {', '.join(_KARPATHY_SPLITS)}")
    sentences = required(entry, "sentences")
    if not isinstance(sentences, list):
        raise BadRow(f"sentences is {describe(sentences)}, expected a list")
    captions = [_sentence(s, f"sentences[{number}]") for number, s in enumerate(sentences)]
    return filename, _KARPATHY_SPLITS[split], captions, "/".join(p for p in (filepath, filename) if p)


def read_karpathy_json(path: Path, problems: list[str]) -> list[RawImage]:
    """Karpathy-style ``{"images": [{"filename", "split", "sentences": [{"raw"}]}]}``; restval counts as train."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise bad_format(path, "expected {'images': [...]}")
    return [RawImage(Path(filename).name, split, captions, path.name, hint,
                     hint_at=f"{path.name}: row {number}: filename")
            for number, (filename, split, captions, hint) in parse_rows(data["images"], path.name, _karpathy_row,
                                                                        problems)]
