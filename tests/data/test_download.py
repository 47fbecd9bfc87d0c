"""Download path against a loopback HTTP server: success, resume, checksum, offline, unsafe archives."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from pir.data import download
from pir.data.download import DownloadError


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=N-`` support (what a resumed download asks for).

    Per file name, the server can also send an ETag (``httpd.etags``, honouring If-None-Match unless
    ``httpd.ignore_conditional``) or reply "bare" (``httpd.bare``: no Content-Length, ETag or
    Last-Modified, only that fraction of the body, then close). ``httpd.statuses`` logs (path, code).
    """

    def log_message(self, *args):   # keep test output clean
        pass

    def send_response(self, code, message=None):
        self.server.statuses.append((self.path, code))
        super().send_response(code, message)

    def end_headers(self):
        if (etag := self.server.etags.get(Path(self.path).name)) and Path(self.path).name not in self.server.bare:
            self.send_header("ETag", etag)
        super().end_headers()

    def send_head(self):
        range_header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        etag = self.server.etags.get(path.name)
        if path.name in self.server.bare and path.is_file():
            data = path.read_bytes()
            self.send_response_only(200)   # no Server/Date either: nothing to validate against
            self.server.statuses.append((self.path, 200))
            self.end_headers()
            return io.BytesIO(data[: int(len(data) * self.server.bare[path.name])])
        if etag and self.headers.get("If-None-Match") == etag and not self.server.ignore_conditional:
            self.send_response(304)
            self.end_headers()
            return None
        if self.server.ignore_conditional:
            del self.headers["If-None-Match"], self.headers["If-Modified-Since"]
        if not range_header or not path.is_file():
            return super().send_head()
        start = int(range_header.removeprefix("bytes=").split("-")[0])
        size = path.stat().st_size
        if start >= size:
            self.send_error(416)
            return None
        self.server.range_requests.append(start)
        fh = open(path, "rb")
        fh.seek(start)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return fh


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    httpd.range_requests, httpd.statuses, httpd.etags, httpd.bare = [], [], {}, {}
    httpd.ignore_conditional = False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_and_extract_zip(server, tmp_path):
    root, url, _ = server
    archive = make_zip(root / "rsitmd.zip", {"RSITMD/rsitmd_test.json": b"[]", "RSITMD/images/a_1.tif": b"x"})
    folder = download.resolve_source(f"{url}/rsitmd.zip", tmp_path / "cache", sha(archive), progress=False)
    key = hashlib.sha256(f"{url}/rsitmd.zip".encode()).hexdigest()[:16]   # one folder per URL
    assert folder == tmp_path / "cache" / key / "rsitmd" / "RSITMD"   # single top folder is stepped into
    assert (folder / "rsitmd_test.json").read_bytes() == b"[]"
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_resume_uses_range(server, tmp_path):
    root, url, httpd = server
    payload = os.urandom(300_000)
    (root / "big.tar").write_bytes(payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "big.tar.part").write_bytes(payload[:123_456])   # an interrupted earlier download
    path = download.download(f"{url}/big.tar", cache / "big.tar", hashlib.sha256(payload).hexdigest(), progress=False)
    assert httpd.range_requests == [123_456]
    assert path.read_bytes() == payload


def test_wrong_checksum_fails_and_discards(server, tmp_path):
    root, url, _ = server
    (root / "data.zip").write_bytes(b"payload")
    with pytest.raises(DownloadError) as exc:
        download.download(f"{url}/data.zip", tmp_path / "data.zip", "0" * 64, progress=False)
    assert "sha256 mismatch" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "data.zip").exists() and not (tmp_path / "data.zip.part").exists()


def test_local_archive_wrong_checksum(tmp_path):
    archive = make_zip(tmp_path / "local.zip", {"a.txt": b"a"})
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download.resolve_source(str(archive), tmp_path / "cache", "f" * 64)


def test_http_404_is_one_line(server, tmp_path):
    _, url, _ = server
    with pytest.raises(DownloadError) as exc:
        download.download(f"{url}/missing.zip", tmp_path / "missing.zip", progress=False)
    assert "HTTP 404" in str(exc.value) and "data.source" in str(exc.value) and "\n" not in str(exc.value)


def test_offline_error_says_how_to_use_a_local_copy(tmp_path):
    with socket.socket() as s:   # a port nobody listens on: connection refused, like being offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as exc:
        download.resolve_source(f"http://127.0.0.1:{port}/rsicd.zip", tmp_path / "cache", progress=False)
    message = str(exc.value)
    assert "cannot connect" in message and "set data.source to the local" in message and "\n" not in message


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_zip_traversal_rejected(tmp_path, name):
    archive = make_zip(tmp_path / "evil.zip", {"fine.txt": b"ok", name: b"evil"})
    with pytest.raises(DownloadError, match="unsafe path"):
        download.extract_archive(archive, tmp_path / "out" / "evil")
    assert not (tmp_path / "out" / "evil").exists() and not (tmp_path / "evil.txt").exists()
    assert not [p for p in (tmp_path / "out").iterdir()]   # the temp folder is gone too


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


def test_tar_traversal_rejected(tmp_path):
    archive = _tar_with(tmp_path / "evil.tar.gz", tarfile.TarInfo("../evil.txt"), b"evil")
    with pytest.raises(DownloadError, match="unsafe path"):
        download.extract_archive(archive, tmp_path / "out" / "evil")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil").exists()


def test_tar_link_escaping_rejected(tmp_path):
    link = tarfile.TarInfo("data/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../etc/passwd"
    archive = _tar_with(tmp_path / "link.tar.gz", link)
    with pytest.raises(DownloadError, match="escapes the target"):
        download.extract_archive(archive, tmp_path / "out" / "link")


def test_tar_extracts_and_is_cached(tmp_path):
    member = tarfile.TarInfo("inner/a_1.txt")
    archive = _tar_with(tmp_path / "good.tar.gz", member, b"hello")
    out = download.resolve_source(str(archive), tmp_path / "cache")
    assert (tmp_path / "cache" / "good" / "inner" / "a_1.txt").read_bytes() == b"hello"
    (tmp_path / "cache" / "good" / "fine.txt").write_text("kept")   # not re-extracted on the second call
    assert download.resolve_source(str(archive), tmp_path / "cache") == out
    assert (tmp_path / "cache" / "good" / "fine.txt").read_text() == "kept"


def test_missing_local_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.source not found"):
        download.resolve_source(str(tmp_path / "nope"), tmp_path / "cache")


# --------------------------------------------------------------------------- the download cache

def gets(httpd, name: str) -> list[int]:
    """Status codes the server sent for ``name``."""
    return [code for path, code in httpd.statuses if path.endswith(f"/{name}")]


def test_truncated_reply_is_dropped_and_fetched_again(server, tmp_path):
    root, url, httpd = server
    make_zip(root / "rsicd.zip", {"RSICD/dataset_rsicd.json": b"{}", "RSICD/images/a.jpg": b"x" * 5000})
    httpd.bare["rsicd.zip"] = 0.5   # half the body, no Content-Length: the client cannot tell
    with pytest.raises(DownloadError) as exc:
        download.resolve_source(f"{url}/rsicd.zip", tmp_path / "cache", progress=False)
    message = str(exc.value)
    assert "not a readable archive" in message and "removed it from the download cache" in message
    assert "the next run downloads it again" in message and "\n" not in message
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]   # no archive, record or .part kept
    del httpd.bare["rsicd.zip"]   # the server is fixed: the next run just works
    folder = download.resolve_source(f"{url}/rsicd.zip", tmp_path / "cache", progress=False)
    assert (folder / "dataset_rsicd.json").read_bytes() == b"{}"


def test_changed_etag_downloads_again(server, tmp_path):
    root, url, httpd = server
    make_zip(root / "data.zip", {"D/v.txt": b"one"})
    httpd.etags["data.zip"] = '"v1"'
    folder = download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False)
    assert (folder / "v.txt").read_bytes() == b"one"
    make_zip(root / "data.zip", {"D/v.txt": b"two"})
    httpd.etags["data.zip"] = '"v2"'
    assert download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False) == folder
    assert (folder / "v.txt").read_bytes() == b"two"   # re-downloaded and re-extracted
    assert gets(httpd, "data.zip") == [200, 200]


@pytest.mark.parametrize("ignore_conditional", [False, True])
def test_same_etag_is_not_downloaded_again(server, tmp_path, ignore_conditional):
    root, url, httpd = server
    make_zip(root / "data.zip", {"D/v.txt": b"one"})
    httpd.etags["data.zip"] = '"v1"'
    httpd.ignore_conditional = ignore_conditional   # then a 200 whose ETag and length match the record
    cache = tmp_path / "cache"
    download.resolve_source(f"{url}/data.zip", cache, progress=False)
    archive = download.cache_folder(f"{url}/data.zip", cache) / "data.zip"
    before = archive.stat().st_mtime_ns
    download.resolve_source(f"{url}/data.zip", cache, progress=False)
    assert gets(httpd, "data.zip") == ([200, 200] if ignore_conditional else [200, 304])
    assert archive.stat().st_mtime_ns == before and not archive.with_name("data.zip.part").exists()


def test_no_validators_means_download_again_with_a_note(server, tmp_path, capsys):
    root, url, httpd = server
    make_zip(root / "data.zip", {"D/v.txt": b"one"})
    httpd.bare["data.zip"] = 1.0   # the whole body, but nothing to re-validate it with
    download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False)
    download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False)
    assert gets(httpd, "data.zip") == [200, 200]
    note = capsys.readouterr().err.strip()
    assert "downloading it again" in note and "data.sha256" in note and "\n" not in note


def test_new_unreadable_version_also_drops_the_old_extraction(server, tmp_path):
    root, url, httpd = server
    make_zip(root / "data.zip", {"D/v.txt": b"one"})
    folder = download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False)
    (root / "data.zip").write_bytes(b"<html>maintenance</html>")   # a changed, broken reply
    later = (root / "data.zip").stat().st_mtime + 10
    os.utime(root / "data.zip", (later, later))   # Last-Modified has 1 s resolution
    with pytest.raises(DownloadError, match="the next run downloads it again"):
        download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False)
    assert not folder.parent.exists() and not (folder.parent.parent / "data.zip").exists()


def test_offline_reuses_the_cached_copy_with_a_note(server, tmp_path, capsys):
    root, url, httpd = server
    make_zip(root / "data.zip", {"D/v.txt": b"one"})
    folder = download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False)
    httpd.shutdown()
    httpd.server_close()   # now nothing listens: like being offline
    assert download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False) == folder
    note = capsys.readouterr().err.strip()
    assert note.startswith("note: ") and "cannot check the cached copy" in note and "\n" not in note


def test_same_file_name_under_two_urls_does_not_collide(server, tmp_path):
    root, url, httpd = server
    for sub, text in (("a", b"first"), ("b", b"second")):
        (root / sub).mkdir()
        make_zip(root / sub / "data.zip", {"D/v.txt": text})
    first = download.resolve_source(f"{url}/a/data.zip", tmp_path / "cache", progress=False)
    second = download.resolve_source(f"{url}/b/data.zip", tmp_path / "cache", progress=False)
    assert first != second and first.parent.parent.parent == second.parent.parent.parent == tmp_path / "cache"
    assert (first / "v.txt").read_bytes() == b"first" and (second / "v.txt").read_bytes() == b"second"
    assert (download.resolve_source(f"{url}/a/data.zip", tmp_path / "cache", progress=False) / "v.txt"
            ).read_bytes() == b"first"
    assert [code for _, code in httpd.statuses] == [200, 200, 304]   # Last-Modified re-validated


@pytest.mark.parametrize("kind", ["zip", "tar.bz2"])
def test_unreadable_local_archive_is_kept_and_one_line(tmp_path, kind):
    archive = tmp_path / f"broken.{kind}"
    if kind == "zip":
        archive.write_bytes(b"not a zip")
    else:   # truncated: tarfile's error here spans several lines
        _tar_with(tmp_path / "whole.tar", tarfile.TarInfo("a.txt"), os.urandom(20_000))
        with tarfile.open(tmp_path / "full.tar.bz2", "w:bz2") as tf:
            tf.add(tmp_path / "whole.tar", "whole.tar")
        archive.write_bytes((tmp_path / "full.tar.bz2").read_bytes()[:500])
    with pytest.raises(DownloadError) as exc:
        download.resolve_source(str(archive), tmp_path / "cache")
    assert "not a readable archive" in str(exc.value) and "\n" not in str(exc.value)
    assert archive.exists() and not (tmp_path / "cache" / "broken").exists()   # the user's file stays


def test_output_folders_follow_the_umask(server, tmp_path, umask_022):
    root, url, _ = server
    make_zip(root / "data.zip", {"D/sub/v.txt": b"one"})
    folder = download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False)
    for path in (folder.parent.parent, folder.parent, folder, folder / "sub"):   # URL folder, extraction, inside
        assert path.stat().st_mode & 0o777 == 0o755, path
