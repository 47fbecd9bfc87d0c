"""Atomic file output: every artifact is written to a temp file and renamed.

A killed run therefore leaves either the previous file or none, never half a
file (docs/workflows.md, "Reproducibility"). Use these helpers for every output the pipeline writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from pir.errors import first_line

if TYPE_CHECKING:   # torch is imported where it is used: indexing with --onnx loads this module without it
    import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; outputs are ordinary shared files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; it replaces ``path`` only if the block succeeds.

    The folder gets the mode the user's umask gives, like any other output (``tempfile.mkdtemp`` makes
    0700, which the rename would keep). The previous ``path`` is moved aside, not deleted, until the new
    one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            tmp.mkdir()   # mode 0o777 & ~umask
            break
        except FileExistsError:
            continue
    old = tmp.with_name(tmp.name + ".old")
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists() or old.is_symlink():
                os.replace(old, path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fsync_dir(path: str | os.PathLike) -> None:
    """A folder's entries (a rename into it, a new file) on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Every file and folder under ``folder`` on disk (before the rename that publishes it)."""
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def write_durable(path: str | os.PathLike, text: str) -> None:
    """write_text, and on disk: the file fsynced before its rename, the folder after (a commit point that
    must survive a power cut, not only a kill)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(Path(path).parent)


@contextlib.contextmanager
def flocked(lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_file`` (created if missing) for the block: one process at a time."""
    with open(lock_file, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    # Save through a file object: given a name, torch.save names the zip's inner folder after the
    # (random) temp file, and equal checkpoints would differ byte for byte (and in dvc.lock).
    import torch   # here, not at the top: the ONNX indexing path imports this module without torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def load_torch(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint safely (``weights_only=True``) with a one-line error naming the file."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # unpickling errors carry long messages; keep the first line
        first = first_line(exc)
        raise ValueError(f"{path}: not a loadable checkpoint ({first})") from None


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (OpenAI's CLIP ``.pt`` files): a zip with a ``code/``
    folder or the ``constants.pkl`` torch itself looks for. Only the zip's directory is read, so
    nothing in the file runs; loading one needs ``torch.jit.load``, which runs its code
    (docs/clip-family.md, "CLIP towers")."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any((name.split("/")[1:2] == ["code"] and name.count("/") >= 2) or name.split("/", 1)[-1] == "constants.pkl"
               for name in names)


def torchscript_refused(path: str | os.PathLike) -> ValueError:
    """The one-line refusal of a TorchScript archive loaded without the opt-in."""
    return ValueError(f"{path}: a TorchScript archive, refused: loading it runs code from the file; set "
                      "model.allow_torchscript: true (--allow-torchscript on the command line) only for a file "
                      "you trust, such as OpenAI's own download")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def sha256_file(path: str | os.PathLike | int) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks; ``path`` may be an open descriptor (read from
    its offset to the end, left open)."""
    digest = hashlib.sha256()
    with open(path, "rb", closefd=not isinstance(path, int)) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or of a folder's files (each one's relative name and sha256, in name
    order): what identifies a checkpoint that is a folder (an exported or Hugging Face-style one)."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path)}\0{sha256_file(item)}\n".encode())
    return digest.hexdigest()


def pyplot():
    """matplotlib.pyplot on the Agg backend: the pipeline's figures go to files, never to a display."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write a matplotlib figure as PNG atomically (its own size: no tight bbox) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
