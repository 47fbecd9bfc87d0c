"""PIR/X-VLM finetune JSON ``<dataset>_{train,val,test}.json``: train has one row per caption
(``caption`` str), val/test one row per image (``caption`` list)."""

from __future__ import annotations

from pathlib import Path

from pir.data.importers.common import (BadRow, RawImage, as_object, as_string, as_strings, bad_format, describe,
                                       inside_path, load_json, parse_rows, required)


def _finetune_row(row) -> tuple[str, list[str], bool, str | None]:
    """(image path, captions, one row per image?, label name) of a finetune row."""
    row = as_object(row)
    image = inside_path(required(row, "image"), "image")
    caption = required(row, "caption")
    if not isinstance(caption, (str, list)):
        raise BadRow(f"caption is {describe(caption)}, expected a string or a list of strings")
    captions = [caption] if isinstance(caption, str) else as_strings(caption, "caption")
    label = row.get("label_name")
    return image, captions, isinstance(caption, list), None if label is None else as_string(label, "label_name")


def read_finetune_json(path: Path, split: str, problems: list[str]) -> list[RawImage]:
    """PIR/X-VLM finetune file: rows with ``caption`` str (one per caption) or list (one per image)."""
    rows = load_json(path)
    if not isinstance(rows, list):
        raise bad_format(path, "expected a list of rows")
    images: dict[str, RawImage] = {}
    for number, (image, captions, per_image, label) in parse_rows(rows, path.name, _finetune_row, problems):
        file = Path(image).name
        if file in images:
            if per_image:   # per-image rows must not repeat
                problems.append(f"{path.name}: row {number}: duplicate image id {file}")
            images[file].captions.extend(captions)
        else:
            images[file] = RawImage(file, split, list(captions), path.name, image, label,
                                    hint_at=f"{path.name}: row {number}: image")
    return list(images.values())
