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
    """Static files with single-range ``Range: bytes=N-`` support (what a resumed download asks for)."""

    def log_message(self, *args):   # keep test output clean
        pass

    def send_head(self):
        range_header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
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
    httpd.range_requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()
    httpd.server_close()


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
    assert folder == tmp_path / "cache" / "rsitmd" / "RSITMD"   # single top folder is stepped into
    assert (folder / "rsitmd_test.json").read_bytes() == b"[]"
    assert not list((tmp_path / "cache").glob("*.part"))


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
