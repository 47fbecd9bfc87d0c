"""Download path against loopback HTTPS and HTTP servers: success, resume, checksum, offline, redirects,
plain http, unsafe and oversized archives.

The HTTPS server uses tests/data/loopback_tls.pem, trusted through SSL_CERT_FILE (the OpenSSL variable
urllib's default context reads): certificates are verified as for any server, with no switch in the code.
Without a sha256 only https is downloaded, so the re-validation tests need it.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socket
import ssl
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from pir.data import download
from pir.data.download import DownloadError

TLS_PEM = Path(__file__).with_name("loopback_tls.pem")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=N-`` support (what a resumed download asks for).

    Per file name, the server can also send an ETag (``httpd.etags``, honouring If-None-Match unless
    ``httpd.ignore_conditional``), reply "bare" (``httpd.bare``: no Content-Length, ETag or
    Last-Modified, only that fraction of the body, then close) or redirect (``httpd.redirects``: a 302
    to that URL). ``httpd.statuses`` logs (path, code).
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
        if location := self.server.redirects.get(Path(self.path).name):
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
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
def serve(tmp_path, monkeypatch):
    """serve(tls) -> (served folder, base URL, server): an https (trusted via SSL_CERT_FILE) or http server
    on 127.0.0.1, each with its own folder; all stopped at the end of the test."""
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS_PEM))
    started = []

    def start(tls: bool = True):
        root = tmp_path / f"served{len(started)}"
        root.mkdir()
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(TLS_PEM)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        httpd.range_requests, httpd.statuses, httpd.etags, httpd.bare, httpd.redirects = [], [], {}, {}, {}
        httpd.ignore_conditional = False
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(httpd)
        return root, f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}", httpd

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(serve):
    return serve(tls=True)


@pytest.fixture
def plain_server(serve):
    return serve(tls=False)


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


def test_download_and_extract_zip(plain_server, tmp_path):
    root, url, _ = plain_server   # plain http is fine with a sha256
    archive = make_zip(root / "rsitmd.zip", {"RSITMD/rsitmd_test.json": b"[]", "RSITMD/images/a_1.tif": b"x"})
    folder = download.resolve_source(f"{url}/rsitmd.zip", tmp_path / "cache", sha(archive), progress=False)
    key = hashlib.sha256(f"{url}/rsitmd.zip".encode()).hexdigest()[:16]   # one folder per URL
    assert folder == tmp_path / "cache" / key / "rsitmd" / "RSITMD"   # single top folder is stepped into
    assert (folder / "rsitmd_test.json").read_bytes() == b"[]"
    assert not list((tmp_path / "cache").rglob("*.part"))
    record = json.loads((folder.parent.parent / "rsitmd.zip.source.json").read_text())
    assert record["url"] == record["final_url"] == f"{url}/rsitmd.zip"


def test_resume_uses_range(plain_server, tmp_path):
    root, url, httpd = plain_server
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
        download.resolve_source(f"https://127.0.0.1:{port}/rsicd.zip", tmp_path / "cache", progress=False)
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


# --------------------------------------------------------------------------- plain http and redirects

def test_plain_http_needs_a_sha256(plain_server, tmp_path):
    root, url, httpd = plain_server
    make_zip(root / "data.zip", {"D/v.txt": b"one"})
    with pytest.raises(DownloadError) as exc:
        download.resolve_source(f"{url}/data.zip", tmp_path / "cache", progress=False)
    assert str(exc.value) == f"{url}/data.zip: plain http can be altered in transit; use https or set data.sha256"
    assert httpd.statuses == [] and not (tmp_path / "cache").exists()   # refused before connecting


def test_https_to_http_redirect_is_refused(server, plain_server, tmp_path):
    root, url, httpd = server
    plain_root, plain_url, plain_httpd = plain_server
    archive = make_zip(plain_root / "data.zip", {"D/v.txt": b"one"})
    httpd.redirects["data.zip"] = f"{plain_url}/data.zip"
    with pytest.raises(DownloadError) as exc:   # even with a sha256: https was asked for
        download.resolve_source(f"{url}/data.zip", tmp_path / "cache", sha(archive), progress=False)
    message = str(exc.value)
    assert message.startswith(f"{url}/data.zip: refusing the redirect to {plain_url}/data.zip")
    assert "leaves https for plain http" in message and "\n" not in message
    assert plain_httpd.statuses == [] and not list((tmp_path / "cache").rglob("*.zip*"))


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/data.zip", "file:///etc/passwd"])
def test_redirect_to_another_scheme_is_refused(server, tmp_path, target):
    _, url, httpd = server
    httpd.redirects["data.zip"] = target
    with pytest.raises(DownloadError) as exc:
        download.download(f"{url}/data.zip", tmp_path / "data.zip", progress=False)
    assert f"refusing the redirect to {target} (only http(s) is downloaded)" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_http_to_https_redirect_is_followed_and_the_final_url_recorded(server, plain_server, tmp_path, capsys):
    root, url, _ = server
    _, plain_url, plain_httpd = plain_server
    archive = make_zip(root / "data.zip", {"D/v.txt": b"one"})
    plain_httpd.redirects["old.zip"] = f"{url}/data.zip"   # moved to another server, and to https
    folder = download.resolve_source(f"{plain_url}/old.zip", tmp_path / "cache", sha(archive), progress=False)
    assert (folder / "v.txt").read_bytes() == b"one"
    record = json.loads((folder.parent.parent / "old.zip.source.json").read_text())
    assert record["url"] == f"{plain_url}/old.zip" and record["final_url"] == f"{url}/data.zip"
    assert capsys.readouterr().err.strip() == f"note: {plain_url}/old.zip: redirected to {url}/data.zip"


def test_same_scheme_redirect_to_another_server_is_recorded(serve, tmp_path):
    _, first, first_httpd = serve(tls=True)
    root, second, _ = serve(tls=True)
    make_zip(root / "data.zip", {"D/v.txt": b"one"})
    first_httpd.redirects["data.zip"] = f"{second}/data.zip"
    dest = download.download(f"{first}/data.zip", tmp_path / "data.zip", progress=False)
    assert json.loads(dest.with_name("data.zip.source.json").read_text())["final_url"] == f"{second}/data.zip"


# --------------------------------------------------------------------------- archive size limits

def zeros_zip(path: Path, megabytes: int = 8) -> Path:
    """A small zip (~1000x compression) of ``megabytes`` MiB of zeros: a zip bomb in miniature."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/zeros.bin", bytes(megabytes << 20))
    return path


def zeros_tar(path: Path, megabytes: int = 8) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        member = tarfile.TarInfo("bomb/zeros.bin")
        member.size = megabytes << 20
        tf.addfile(member, io.BytesIO(bytes(member.size)))
    return path


@pytest.mark.parametrize("make", [zeros_zip, zeros_tar], ids=["zip", "tar.gz"])
def test_compression_ratio_refused_before_anything_is_written(tmp_path, make):
    archive = make(tmp_path / ("bomb.zip" if make is zeros_zip else "bomb.tar.gz"))
    assert archive.stat().st_size < 100_000
    with pytest.raises(DownloadError) as exc:
        download.extract_archive(archive, tmp_path / "out" / "bomb")
    message = str(exc.value)
    assert message.startswith(f"{archive}: would expand to ") and "(a zip bomb?), above the 100x limit" in message
    assert "raise data.max_archive_ratio (pir index: --max-archive-ratio)" in message and "\n" not in message
    assert not (tmp_path / "out").exists()   # not even the parent folder was made
    # trusted: raising the ratio admits it
    folder = download.extract_archive(archive, tmp_path / "out" / "bomb", max_ratio=100_000)
    assert (folder / "bomb" / "zeros.bin").stat().st_size == 8 << 20


@pytest.mark.parametrize("make", [zeros_zip, zeros_tar], ids=["zip", "tar.gz"])
def test_total_size_refused_through_resolve_source(tmp_path, make):
    archive = make(tmp_path / ("big.zip" if make is zeros_zip else "big.tar.gz"))
    with pytest.raises(DownloadError) as exc:
        download.resolve_source(str(archive), tmp_path / "cache", max_bytes=4 << 20, max_ratio=100_000)
    message = str(exc.value)
    assert "above the 4 MiB limit on extracted archives" in message and "\n" not in message
    assert "raise data.max_archive_bytes (pir index: --max-archive-bytes)" in message
    assert not (tmp_path / "cache").exists()


def test_tar_hard_links_count_as_copies(tmp_path):
    payload = os.urandom(1 << 20)   # incompressible: only the links make it big
    with tarfile.open(tmp_path / "links.tar", "w") as tf:
        member = tarfile.TarInfo("d/data.bin")
        member.size = len(payload)
        tf.addfile(member, io.BytesIO(payload))
        for i in range(8):
            link = tarfile.TarInfo(f"d/link{i}.bin")
            link.type, link.linkname = tarfile.LNKTYPE, "d/data.bin"
            tf.addfile(link)
    with pytest.raises(DownloadError, match="would expand to more than 5 MiB, above the 4 MiB limit"):
        download.extract_archive(tmp_path / "links.tar", tmp_path / "out", max_bytes=4 << 20)
    assert download.extract_archive(tmp_path / "links.tar", tmp_path / "out") == tmp_path / "out"


def test_zip_member_larger_than_its_header_is_refused(tmp_path):
    archive = zeros_zip(tmp_path / "liar.zip", megabytes=1)
    data = bytearray(archive.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 22:local + 26] = data[central + 24:central + 28] = (1000).to_bytes(4, "little")   # declares 1000 bytes
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError) as exc:   # passes the size checks, then held to its 1000 bytes while
        download.extract_archive(archive, tmp_path / "out" / "liar")   # extracting (zipfile's CRC check fires first)
    assert str(exc.value).startswith(f"{archive}: ") and "\n" not in str(exc.value)
    assert not (tmp_path / "out" / "liar").exists() and not list((tmp_path / "out").iterdir())
