"""Scene classes of imported images: the annotation's label, else the filename prefix before the last
``_<number>`` (``storagetanks_12.tif``), else a ``data.class_list`` entry, else ``unknown``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pir.data.importers.common import RawImage
from pir.data.prepared import UNKNOWN_SCENE

_SCENE_RE = re.compile(r"^(.+?)_\d+$")


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
