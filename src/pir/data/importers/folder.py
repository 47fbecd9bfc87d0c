"""The dataset folder, walked without ever leaving it, and the images the annotations name found in it.

A link whose target lies outside the folder is skipped (and named when an image is then missing), and
each real folder is listed once, so link loops (``a -> .``) end. Nothing outside the folder is opened.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from pir.data.images import IMAGE_EXTENSIONS
from pir.data.importers.common import RawImage


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
