"""Fetch a dataset source: resumable HTTP download, sha256 check, safe archive extraction.

``resolve_source`` turns ``data.source`` (a folder, a local archive or an http(s)
URL) into a local folder the importers can read. Downloads go to a cache folder
the caller chooses, one sub-folder per URL (``cache_folder``); an interrupted
download continues from its ``.part`` file with an HTTP Range request. Without a
sha256, a record beside the file (``<name>.source.json``: size, ETag,
Last-Modified) lets a later run ask the server whether the copy is still current.
Archives are extracted into a temp folder next to their final place and renamed
in only when every member passed the path checks, so a hostile or broken archive
leaves nothing behind; a downloaded archive that cannot be read is dropped from
the cache so the next run fetches it again. What an archive expands to is checked
against a total and a compression ratio before anything is written.

Plain ``http://`` is accepted only with a sha256 to check, and redirects never
leave https for http (or http(s) for anything else); the URL a download finally
came from is recorded. See docs/recipes-and-data.md, "Downloads and archives".
"""

from __future__ import annotations

import hashlib
import http.client
import json
import lzma
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pir import files
from pir.config import DEFAULT_MAX_ARCHIVE_BYTES, DEFAULT_MAX_ARCHIVE_RATIO
from pir.errors import bytes_text, first_line

CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_DONE_MARKER = ".extracted"
_RECORD_SUFFIX = ".source.json"


class DownloadError(OSError):
    """A download or extraction failed; the message is one line saying what and how to work around it."""


class UnreadableArchive(DownloadError):
    """The archive is damaged or truncated (not unsafe): worth downloading again."""

    def __init__(self, archive: Path, detail: str):
        super().__init__(f"{archive}: not a readable archive ({detail})")
        self.detail = detail


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


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def _record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + _RECORD_SUFFIX)


def _record(dest: Path) -> dict:
    """What was recorded when ``dest`` was downloaded; {} when missing, unreadable or not about this file."""
    try:
        record = json.loads(_record_path(dest).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and record.get("size") == dest.stat().st_size else {}


def _validators(dest: Path) -> dict[str, str]:
    """Conditional-request headers from the record: the server answers 304 when the copy is current."""
    record = _record(dest)
    headers = {"If-None-Match": record.get("etag"), "If-Modified-Since": record.get("last_modified")}
    return {key: value for key, value in headers.items() if value}


def _unchanged(dest: Path, headers) -> bool | None:
    """Does a 200 reply describe the cached ``dest``? None when nothing in it can tell."""
    record, size = _record(dest), dest.stat().st_size
    length = headers.get("Content-Length")
    if length is not None and int(length) != size:
        return False
    if record.get("etag") and headers.get("ETag"):
        return headers["ETag"] == record["etag"]
    if record.get("last_modified") and headers.get("Last-Modified"):
        return headers["Last-Modified"] == record["last_modified"]
    return True if length is not None else None


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    """Redirects are followed within http(s) but never from https down to plain http, nor to any other
    scheme (urllib alone would follow https -> http and -> ftp): what https protects would be lost on the
    way. Redirects to other hosts (mirrors, CDNs) are followed; the final URL lands in the record."""

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location is not None:
            target = urllib.parse.urljoin(req.full_url, location.strip())
            old, new = urllib.parse.urlparse(req.full_url).scheme, urllib.parse.urlparse(target).scheme
            if new not in ("http", "https") or (old == "https" and new == "http"):
                fp.close()
                why = ("it leaves https for plain http, which can be altered in transit" if new == "http" else
                       "only http(s) is downloaded")
                raise DownloadError(f"{req.full_url}: refusing the redirect to {target} ({why}); download the "
                                    "file by hand and set data.source to it")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _reuse(url: str, dest: Path, reason: str) -> Path:
    _note(f"{url}: cannot check the cached copy against the server ({reason}); using {dest} as it is")
    return dest


def download(url: str, dest: Path, sha256: str = "", progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify sha256, rename into place.

    A cached ``dest`` is reused when it matches ``sha256``. Without one (https only) it is re-validated:
    a conditional GET with the recorded ETag / Last-Modified; reused on 304 or a reply that matches the
    record (and its size), downloaded again otherwise, and reused with a note when the server cannot be
    reached. Plain http needs ``sha256``: nothing else tells a file altered in transit from the real one.
    """
    if urllib.parse.urlparse(url).scheme == "http" and not sha256:
        raise DownloadError(f"{url}: plain http can be altered in transit; use https or set data.sha256")
    if dest.is_file() and sha256 and files.sha256_file(dest) == sha256.lower():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    revalidate = dest.is_file() and not sha256 and not start   # a .part is a newer download in progress
    headers = {"Range": f"bytes={start}-"} if start else _validators(dest) if revalidate else {}
    try:
        response = urllib.request.build_opener(_RedirectPolicy).open(urllib.request.Request(url, headers=headers),
                                                                     timeout=timeout)
    except DownloadError:   # a refused redirect: not a connection problem, never served from the cache
        raise
    except urllib.error.HTTPError as exc:
        if exc.code == 304 and revalidate:
            return dest
        if exc.code == 416 and start:   # the .part already holds the whole file
            return _finish(part, dest, sha256, url, exc.headers, exc.filename or url)
        if dest.is_file() and not sha256:
            return _reuse(url, dest, f"HTTP {exc.code} {exc.reason}")
        raise DownloadError(f"{url}: download failed (HTTP {exc.code} {exc.reason}); {_offline_hint(url)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:   # e.g. a malformed status line
        reason = getattr(exc, "reason", exc)
        if dest.is_file() and not sha256:
            return _reuse(url, dest, f"cannot connect: {reason}")
        raise DownloadError(f"{url}: cannot connect ({reason}); {_offline_hint(url)}") from None
    final_url = response.geturl()
    if urllib.parse.urlparse(final_url).netloc != urllib.parse.urlparse(url).netloc:
        _note(f"{url}: redirected to {final_url}")
    with response:
        if revalidate:
            unchanged = _unchanged(dest, response.headers)
            if unchanged:
                return dest
            if unchanged is None:
                _note(f"{url}: the server sends no ETag, Last-Modified or Content-Length to check the cached "
                      f"{dest.name} against; downloading it again (set data.sha256 to reuse the cached copy)")
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
        except (OSError, http.client.HTTPException) as exc:   # IncompleteRead: a chunked reply cut short
            raise DownloadError(f"{url}: connection lost after {part.stat().st_size} bytes ({exc}); "
                                "run again to resume") from None
    if total is not None and part.stat().st_size < total:
        raise DownloadError(f"{url}: transfer ended at {part.stat().st_size} of {total} bytes; run again to resume")
    return _finish(part, dest, sha256, url, response.headers, final_url)


def _finish(part: Path, dest: Path, sha256: str, url: str, headers, final_url: str) -> Path:
    try:
        verify_sha256(part, sha256)
    except DownloadError:
        part.unlink()   # a wrong file must not be resumed into
        raise
    os.replace(part, dest)
    files.write_json(_record_path(dest), {"url": url, "final_url": final_url, "size": dest.stat().st_size,
                                          "etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")})
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


def _check_expansion(archive: Path, size: int, total: int, max_bytes: int, max_ratio: float,
                     at_least: bool = False) -> None:
    """DownloadError when ``total`` (declared) bytes exceed ``max_bytes`` or ``max_ratio`` x ``size``, the
    archive's own size (a gzip-compressed tar's too: the file, not the tar inside)."""
    size = max(size, 1)
    expands = f"would expand to {'more than ' if at_least else ''}{bytes_text(total)}"
    if total > max_bytes:
        raise DownloadError(f"{archive}: {expands}, above the {bytes_text(max_bytes)} limit on extracted archives; "
                            "if you trust it, raise data.max_archive_bytes (pir index: --max-archive-bytes)")
    if total > max_ratio * size:
        raise DownloadError(f"{archive}: {expands}, {total / size:.0f}x its {bytes_text(size)} (a zip bomb?), above the "
                            f"{max_ratio:g}x limit; if you trust it, raise data.max_archive_ratio "
                            "(pir index: --max-archive-ratio)")


def _check_tar_expansion(archive: Path, size: int, tf: tarfile.TarFile, max_bytes: int, max_ratio: float) -> None:
    """Sum the members' header sizes while listing them, stopping as soon as a limit is passed (a gzip bomb
    is not inflated to the end). Header sizes are what tarfile extracts, exactly; a hard link counts as a
    copy of its target, which is what tarfile writes where the file system has no hard links."""
    total, sizes = 0, {}
    for member in tf:   # tarfile keeps the listed members: extraction does not list them again
        sizes[member.name] = member.size if member.isfile() else sizes.get(member.linkname, 0) if member.islnk() else 0
        total += sizes[member.name]
        _check_expansion(archive, size, total, max_bytes, max_ratio, at_least=True)


def _extract_zip(archive: Path, zf: zipfile.ZipFile, target: Path) -> None:
    for info in zf.infolist():
        _check_member(archive, info.filename, target)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:   # a symlink entry
            raise DownloadError(f"{archive}: link {info.filename!r} in archive; refusing to extract")
    # The size checks trust the declared sizes: zipfile holds every member's read to its declared size
    # and fails the CRC of one whose data holds more, so extractall cannot write past them.
    zf.extractall(target)


def _extract_tar(archive: Path, tf: tarfile.TarFile, target: Path) -> None:
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


# what a damaged or truncated archive raises (bz2 and gzip add OSErrors without an errno)
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)
_FILTER_ERROR = getattr(tarfile, "FilterError", ())   # the "data" filter's refusals (3.11.4+)


def extract_archive(archive: Path, dest: Path, *, max_bytes: int | None = None, max_ratio: float | None = None
                    ) -> Path:
    """Extract ``archive`` into ``dest``; skipped when a marker says this very archive was extracted there.

    Refused before anything is written (``dest`` and its parent are not even created) when the members'
    declared sizes add up to more than ``max_bytes`` or ``max_ratio`` times the archive's own size
    (None = DEFAULT_MAX_ARCHIVE_BYTES / DEFAULT_MAX_ARCHIVE_RATIO).
    """
    marker = dest / _DONE_MARKER
    if marker.exists() and marker.read_text() == _stamp(archive):
        return dest
    max_bytes = DEFAULT_MAX_ARCHIVE_BYTES if max_bytes is None else max_bytes
    max_ratio = DEFAULT_MAX_ARCHIVE_RATIO if max_ratio is None else max_ratio
    zipped, size = archive.name.lower().endswith(".zip"), archive.stat().st_size
    try:
        with zipfile.ZipFile(archive) if zipped else tarfile.open(archive) as handle:
            if zipped:
                _check_expansion(archive, size, sum(info.file_size for info in handle.infolist()), max_bytes,
                                 max_ratio)
            else:
                _check_tar_expansion(archive, size, handle, max_bytes, max_ratio)
            with files.atomic_dir(dest) as tmp:
                (_extract_zip if zipped else _extract_tar)(archive, handle, tmp)
                (tmp / _DONE_MARKER).write_text(_stamp(archive))
    except DownloadError:
        raise
    except _FILTER_ERROR as exc:
        raise DownloadError(f"{archive}: unsafe member in archive ({first_line(exc)}); "
                            "refusing to extract") from None
    except (*_DAMAGED, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:   # disk full, permissions: not the archive
            raise
        raise UnreadableArchive(archive, first_line(exc)) from None
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


def cache_folder(url: str, cache_dir: Path) -> Path:
    """The cache sub-folder of one URL: a short sha256 of the whole URL, so equal file names never collide."""
    return cache_dir / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def resolve_source(source: str, cache_dir: Path, sha256: str = "", progress: bool = True, *,
                   max_bytes: int | None = None, max_ratio: float | None = None) -> Path:
    """``data.source`` (folder, archive file or URL) -> a local folder holding the dataset; an archive is
    extracted within ``max_bytes`` / ``max_ratio`` (:func:`extract_archive`)."""
    if not source:
        raise ValueError("data.source is empty: set it to the dataset folder, an archive, or a URL")
    if is_url(source):
        folder = cache_folder(source, cache_dir)
        archive = download(source, folder / (Path(urllib.parse.urlparse(source).path).name or "dataset"),
                           sha256, progress)
    else:
        folder, archive = cache_dir, Path(source).expanduser()
        if archive.is_dir():
            return archive
        if not archive.exists():
            raise FileNotFoundError(f"{archive}: data.source not found")
        verify_sha256(archive, sha256)
    if not is_archive(archive):
        raise ValueError(f"{archive}: not a folder or a .zip/.tar(.gz|.bz2|.xz) archive")
    target = folder / (_archive_stem(archive.name) or "dataset")
    try:
        return dataset_root(extract_archive(archive, target, max_bytes=max_bytes, max_ratio=max_ratio))
    except UnreadableArchive as exc:
        if not is_url(source):   # the user's own file: never deleted
            raise
        archive.unlink(missing_ok=True)
        _record_path(archive).unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        raise DownloadError(f"{source}: the downloaded {archive.name} is not a readable archive ({exc.detail}); "
                            f"removed it from the download cache {folder}, the next run downloads it again") from None
