"""Class-folder image datasets, ``root/<class>/<image>`` (AID, RESISC45, UCM, WHU-RS19, EuroSAT): the one
reader of their layout, for the scene prior's external data and for ``pir zeroshot``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pir.data.images import IMAGE_EXTENSIONS


def class_folder_images(root: str | Path, min_images: int = 1) -> tuple[list[str], list[Path], np.ndarray]:
    """(class names, image paths, int64 labels) of a class-folder dataset.

    Classes are the non-hidden sub-folders in name order, images the non-hidden files with an image
    extension directly inside them, in name order. One-line errors for a missing root, fewer than two
    class folders, or fewer than ``min_images`` images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: class-folder dataset not found (missing folder)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images = [(path, label) for label, name in enumerate(classes)
              for path in sorted((root / name).iterdir())
              if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")]
    if len(classes) < 2 or len(images) < min_images:
        raise ValueError(f"{root}: expected class folders with images, <class>/<image> (found {len(classes)} "
                         f"class folder{'s' * (len(classes) != 1)}, {len(images)} images)")
    return classes, [path for path, _ in images], np.array([label for _, label in images], dtype=np.int64)
