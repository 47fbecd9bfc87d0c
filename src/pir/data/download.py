"""Fetch a dataset source: resumable HTTP download, sha256 check, safe archive extraction.

``resolve_source`` turns ``data.source`` (a folder, a local archive or an http(s)
URL) into a local folder the importers can read. Downloads go to a cache folder
the caller chooses; an interrupted download continues from its ``.part`` file
with an HTTP Range request. Archives are extracted into a temp folder next to
their final place and renamed in only when every member passed the path checks,
so a hostile or broken archive leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pir import files

CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_DONE_MARKER = ".extracted"


class DownloadError(OSError):
    """A download or extraction failed; the message is one line saying what and how to work around it."""


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def verify_sha256(path: Path, expected: str) -> None:
    """Raise DownloadError when ``expected`` is set and differs from the file's sha256."""
    if expected and (actual := files.sha256_file(path)) != expected.lower():
        raise DownloadError(f"{path.name}: sha256 mismatch (expected {expected.lower()}, got {actual}); "
                            "check data.sha256 or the source")


def _offline_hint(url: str) -> str:
    return (f"download {url} on a machine with internet and set data.source to the local archive or "
            "extracted folder")


def download(url: str, dest: Path, sha256: str = "", progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify sha256, rename into place."""
    if dest.is_file() and (not sha256 or files.sha256_file(dest) == sha256.lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:   # the .part already holds the whole file
            return _finish(part, dest, sha256)
        raise DownloadError(f"{url}: download failed (HTTP {exc.code} {exc.reason}); {_offline_hint(url)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot connect ({reason}); {_offline_hint(url)}") from None
    with response:
        if start and response.status != 206:   # server ignored the Range header: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        try:
            with open(part, "ab" if start else "wb") as fh, tqdm(
                    total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=f"download {dest.name}", disable=not progress) as bar:
                while block := response.read(CHUNK):
                    fh.write(block)
                    bar.update(len(block))
        except OSError as exc:
            raise DownloadError(f"{url}: connection lost after {part.stat().st_size} bytes ({exc}); "
                                "run again to resume") from None
    if total is not None and part.stat().st_size < total:
        raise DownloadError(f"{url}: transfer ended at {part.stat().st_size} of {total} bytes; run again to resume")
    return _finish(part, dest, sha256)


def _finish(part: Path, dest: Path, sha256: str) -> Path:
    try:
        verify_sha256(part, sha256)
    except DownloadError:
        part.unlink()   # a wrong file must not be resumed into
        raise
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- archives

def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_member(archive: Path, name: str, target: Path) -> None:
    """Reject absolute names, '..' components and anything resolving outside ``target``."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive}: unsafe path {name!r} in archive (absolute or '..'); refusing to extract")
    if not (target / posix).resolve().is_relative_to(target.resolve()):
        raise DownloadError(f"{archive}: unsafe path {name!r} in archive (escapes the target); refusing to extract")


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_member(archive, info.filename, target)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:   # a symlink entry
                raise DownloadError(f"{archive}: link {info.filename!r} in archive; refusing to extract")
        zf.extractall(target)


def _extract_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            _check_member(archive, member.name, target)
            if member.issym() or member.islnk():
                link = member.linkname if member.islnk() else str(PurePosixPath(member.name).parent / member.linkname)
                try:
                    _check_member(archive, link, target)
                except DownloadError:
                    raise DownloadError(f"{archive}: link {member.name!r} -> {member.linkname!r} escapes the target; "
                                        "refusing to extract") from None
            elif not (member.isfile() or member.isdir()):
                raise DownloadError(f"{archive}: special file {member.name!r} in archive; refusing to extract")
        # the stdlib "data" filter (3.11.4+) repeats these checks and drops permissions bits we do not want
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(target, members=members, **extra)


def _stamp(archive: Path) -> str:
    stat = archive.stat()
    return f"{archive.name} {stat.st_size} {stat.st_mtime_ns}\n"


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest``; skipped when a marker says this very archive was extracted there."""
    marker = dest / _DONE_MARKER
    if marker.exists() and marker.read_text() == _stamp(archive):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        try:
            if archive.name.lower().endswith(".zip"):
                _extract_zip(archive, tmp)
            else:
                _extract_tar(archive, tmp)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise DownloadError(f"{archive}: not a readable archive ({exc})") from None
        (tmp / _DONE_MARKER).write_text(_stamp(archive))
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _archive_stem(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def dataset_root(folder: Path) -> Path:
    """Archives often wrap everything in one top folder; step into it."""
    entries = [p for p in folder.iterdir() if p.name != _DONE_MARKER]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def resolve_source(source: str, cache_dir: Path, sha256: str = "", progress: bool = True) -> Path:
    """``data.source`` (folder, archive file or URL) -> a local folder holding the dataset."""
    if not source:
        raise ValueError("data.source is empty: set it to the dataset folder, an archive, or a URL")
    if is_url(source):
        name = Path(urllib.parse.urlparse(source).path).name or "dataset"
        archive = download(source, cache_dir / name, sha256, progress)
    else:
        archive = Path(source).expanduser()
        if archive.is_dir():
            return archive
        if not archive.exists():
            raise FileNotFoundError(f"{archive}: data.source not found")
        verify_sha256(archive, sha256)
    if not is_archive(archive):
        raise ValueError(f"{archive}: not a folder or a .zip/.tar(.gz|.bz2|.xz) archive")
    return dataset_root(extract_archive(archive, cache_dir / _archive_stem(archive.name)))
