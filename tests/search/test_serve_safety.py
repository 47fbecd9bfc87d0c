"""pir serve treats the browser's Host header and the index folder as untrusted (docs/search-and-geo.md,
"Serving"): loopback Host names only, self-only CSP and friends on every response, an original sent only
while it is the file that was indexed, thumbnails only from inside the index folder, and a root that was
not indexed here only when the user names it."""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from pir import files
from pir.search.index import IDENTITY, MANIFEST, build_index, load_index
from pir.search.manifest import MANIFEST_FIELDS
from pir_tools import known_indexes, serve
from pir_tools.serve import SECURITY_HEADERS, create_app, loopback_hosts, trusted_root

from tests import browser
from tests.search.conftest import write_images

PORT = 8123   # any port: the app is told which one it was bound to
HOST = {"Host": f"127.0.0.1:{PORT}"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder, checkpoint) -> Path:
    """An index of 3 images, built by the library (so not in the record of indexes built here),
    its root beside the index folder, not inside it."""
    folder = tmp_path_factory.mktemp("serve_safety")
    write_images(folder / "images", 1)
    build_index(folder / "images", folder / "index", encoder, checkpoint, progress=False)
    return folder / "index"


@pytest.fixture(scope="module")
def client(built):
    return create_app(built, allowed_hosts=loopback_hosts(PORT)).test_client()


def _rewrite(index_dir: Path, root: str, rows: list[dict]) -> None:
    """Make ``index_dir`` a foreign index: its index.json names ``root``, its manifest ``rows``."""
    generation = load_index(index_dir).generation
    identity = json.loads((generation / IDENTITY).read_text())
    (generation / IDENTITY).write_text(json.dumps({**identity, "root": root}))
    with open(generation / MANIFEST, "w", newline="") as fh:
        writer = csv.DictWriter(fh, MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({"mtime_ns": 0, "width": 48, "height": 48, "scene": "", **row} for row in rows)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory, encoder, checkpoint):
    """An index folder from someone else: root `/`, rows for /etc/passwd, a file with its right sha256,
    one with a wrong sha256, and a thumbnail name that climbs out of the index folder."""
    folder = tmp_path_factory.mktemp("foreign")
    write_images(folder / "images", 1)   # 3 rows: the manifest keeps the embeddings' row count
    build_index(folder / "images", folder / "index", encoder, checkpoint, progress=False)
    images = sorted((folder / "images").iterdir())
    right, wrong = images[0].resolve(), images[1].resolve()
    _rewrite(folder / "index", "/", [
        {"path": str(right)[1:], "size": right.stat().st_size, "sha256": files.sha256_file(right)},
        {"path": str(wrong)[1:], "size": wrong.stat().st_size, "sha256": "0" * 64},
        {"path": "etc/passwd", "size": 1, "sha256": "../../../../../../" + "0" * 46},
    ])
    return folder / "index", right, wrong


# --------------------------------------------------------------------------- Host header

@pytest.mark.parametrize("host, status", [
    (f"127.0.0.1:{PORT}", 200), (f"localhost:{PORT}", 200), (f"[::1]:{PORT}", 200), (f"LOCALHOST:{PORT}", 200),
    (f"evil.example:{PORT}", 421), ("evil.example", 421), ("localhost", 421), (f"127.0.0.1:{PORT + 1}", 421),
    (f"localhost.:{PORT}", 421), (f"127.0.0.1:{PORT}@evil.example", 421), ("", 421),
])
def test_only_loopback_host_headers_are_answered(client, host, status):
    for url in ("/", "/api/search?q=forest", "/image/forest_0.png", "/thumb/forest_0.png", "/static/search.js"):
        reply = client.get(url, headers={"Host": host})
        assert reply.status_code == status, (url, host)
        if status == 421:
            assert b"\x89PNG" not in reply.data and b"forest" not in reply.data


def test_a_request_without_a_host_header_is_misdirected(built):
    app = create_app(built, allowed_hosts=loopback_hosts(PORT))
    environ = EnvironBuilder(path="/api/search", query_string="q=forest").get_environ()
    del environ["HTTP_HOST"]
    _, status, headers = run_wsgi_app(app, environ, buffered=True)
    assert status.startswith("421") and dict(headers)["X-Frame-Options"] == "DENY"


def test_port_80_also_answers_the_bare_names(built):
    client = create_app(built, allowed_hosts=loopback_hosts(80)).test_client()
    assert client.get("/", headers={"Host": "localhost"}).status_code == 200
    assert client.get("/", headers={"Host": "127.0.0.1:80"}).status_code == 200
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 421


def test_an_app_not_yet_told_its_address_answers_nothing(built):
    assert create_app(built).test_client().get("/", headers=HOST).status_code == 421


# --------------------------------------------------------------------------- headers

@pytest.mark.parametrize("url, status", [
    ("/", 200), ("/api/search?q=forest", 200), ("/image/forest_0.png", 200), ("/thumb/forest_0.png", 200),
    ("/static/search.js", 200), ("/static/search.css", 200), ("/api/search", 400), ("/image/nothing.png", 404),
    ("/image/../../etc/passwd", 404),
    ("/api/search?q=%3F%21", 400),   # "?!": nothing left after PIR's caption normalisation, a one-line error
])
def test_every_response_carries_the_security_headers(client, url, status):
    reply = client.get(url, headers=HOST)
    assert reply.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers[name] == value, (url, name)
    csp = reply.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp


def test_the_page_has_no_inline_script_or_style(client):
    page = client.get("/", headers=HOST).get_data(as_text=True)
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/search.js">']
    assert "<style" not in page and not re.search(r"\s(style|on\w+)=", page)   # no style= or onclick=
    assert client.get("/static/search.js", headers=HOST).mimetype in ("text/javascript", "application/javascript")


# --------------------------------------------------------------------------- an index from elsewhere

def test_a_foreign_root_is_refused_without_root(foreign, capsys):
    index_dir, _, _ = foreign
    assert serve.main([str(index_dir), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names the root /," in err[0] and "not built" in err[0] and "--root PATH" in err[0]
    assert trusted_root(load_index(index_dir), "/") == Path("/")   # what --root / serves from


def test_with_root_a_file_is_served_only_when_its_size_and_sha256_match(foreign):
    index_dir, right, wrong = foreign
    client = create_app(index_dir, root="/", allowed_hosts=loopback_hosts(PORT)).test_client()
    assert client.get(f"/image/{str(right)[1:]}", headers=HOST).data == right.read_bytes()
    refused = client.get(f"/image/{str(wrong)[1:]}", headers=HOST)
    assert refused.status_code == 409 and wrong.read_bytes() not in refused.data
    assert client.get("/image/etc/passwd", headers=HOST).status_code == 404      # not an image: never sent
    assert client.get("/thumb/etc/passwd", headers=HOST).status_code == 404      # its sha256 climbs out


def test_a_file_swapped_after_indexing_is_no_longer_served(built, monkeypatch):
    monkeypatch.setattr(serve, "RACY_NS", 0)   # keep verdicts for files changed just now, as for old ones
    hashed = []
    monkeypatch.setattr(serve, "_sha256_fd", lambda fd, real=serve._sha256_fd: hashed.append(fd) or real(fd))
    client = create_app(built, allowed_hosts=loopback_hosts(PORT)).test_client()
    path = load_index(built).root / "beach_0.png"
    original, stamp = path.read_bytes(), path.stat()
    assert client.get("/image/beach_0.png", headers=HOST).data == original
    assert client.get("/image/beach_0.png", headers=HOST).data == original
    assert len(hashed) == 1   # the verdict is kept for this version of the file
    try:
        time.sleep(0.05)   # past the file system's ctime tick
        with open(path, "r+b") as fh:   # same size, same inode, same mtime: only the bytes (and ctime) differ
            fh.seek(-20, os.SEEK_END)
            fh.write(bytes(20))
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        swapped = client.get("/image/beach_0.png", headers=HOST)
        assert swapped.status_code == 409 and path.read_bytes() not in swapped.data
        time.sleep(0.05)
        path.with_name(".swap.png").write_bytes(b"x" * len(original))   # another file renamed over it
        os.replace(path.with_name(".swap.png"), path)
        assert client.get("/image/beach_0.png", headers=HOST).status_code == 409
    finally:
        time.sleep(0.05)
        path.write_bytes(original)
    assert client.get("/image/beach_0.png", headers=HOST).data == original   # the indexed bytes again


def test_a_thumbnail_link_out_of_the_index_folder_is_404(built, client, tmp_path):
    index = load_index(built)
    thumb = index.thumbnail(next(e for e in index.entries if e.path == "airport_0.png"))
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(thumb.read_bytes())
    saved = thumb.with_name(thumb.name + ".saved")
    os.replace(thumb, saved)
    try:
        os.symlink(outside, thumb)
        assert client.get("/thumb/airport_0.png", headers=HOST).status_code == 404
    finally:
        thumb.unlink()
        os.replace(saved, thumb)
    assert client.get("/thumb/airport_0.png", headers=HOST).status_code == 200


# --------------------------------------------------------------------------- indexes built here

def test_a_root_inside_the_index_folder_needs_no_record(tmp_path, encoder, checkpoint):
    """The index stage's layout (data/index/source), or a folder handed over whole: the images inside it."""
    write_images(tmp_path / "images", 1)
    build_index(tmp_path / "images", tmp_path / "index", encoder, checkpoint, progress=False)
    os.replace(tmp_path / "images", tmp_path / "index" / "source")
    identity = load_index(tmp_path / "index").generation / IDENTITY
    identity.write_text(json.dumps({**json.loads(identity.read_text()), "root": "source"}))
    assert str((tmp_path / "index").resolve()) not in known_indexes.known()
    assert trusted_root(load_index(tmp_path / "index")) == (tmp_path / "index" / "source").resolve()


def test_an_index_built_elsewhere_by_the_library_is_refused(built):
    with pytest.raises(ValueError, match="--root PATH"):
        trusted_root(load_index(built))


def test_the_record_lives_in_the_test_state_folder_and_survives_corruption(tmp_path, capsys):
    assert known_indexes.record_path().parent == Path(os.environ["PIR_STATE_HOME"])
    assert "pir-test-state-" in str(known_indexes.record_path())   # tests/conftest.py: never the real home
    path = known_indexes.record_path()
    saved = path.read_bytes() if path.exists() else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{not json")
        assert known_indexes.known() == {} and "treating it as empty" in capsys.readouterr().err
        assert known_indexes.record(tmp_path / "idx", tmp_path / "images")
        assert known_indexes.built_here(tmp_path / "idx", tmp_path / "images")
        assert not known_indexes.built_here(tmp_path / "idx", tmp_path)
    finally:
        if saved is None:
            path.unlink()
        else:
            path.write_bytes(saved)


@pytest.fixture(scope="module")
def server(tmp_path_factory, checkpoint):
    """`pir index` then `pir serve` (no --root) on a free port, as a user runs them; (url, port)."""
    from pir_tools.search import index_main

    folder = tmp_path_factory.mktemp("served")
    write_images(folder / "images", 2)
    assert index_main([str(folder / "images"), "--checkpoint", str(checkpoint), "--out", str(folder / "index"),
                       "--scene-from-name"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "pir_tools.cli", "serve", str(folder / "index"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line + proc.stdout.read() if proc.poll() is not None else line
        yield f"http://127.0.0.1:{found.group(1)}", int(found.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _get(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def test_pir_serve_answers_an_index_built_by_pir_index_on_its_bound_port_only(server):
    _, port = server
    assert _get(port, "/api/search?q=forest&top=2", f"127.0.0.1:{port}")[0] == 200
    assert _get(port, "/api/search?q=forest&top=2", f"localhost:{port}")[0] == 200
    for host in (f"evil.example:{port}", "evil.example", None):
        status, body = _get(port, "/api/search?q=forest&top=2", host)
        assert status == 421 and b"forest" not in body, host


def test_the_page_works_in_chromium_under_its_csp(server):
    """The real browser enforces the CSP: the page's script (a file) runs, fetches the API and renders
    the hits, and their thumbnails load (each figure gets class "loaded" on the image's load event)."""
    browser.chromium()
    url, _ = server
    dom = browser.dump_dom(f"{url}/?q=a+forest&top=4", wait_ms=5000)
    assert dom.count('class="hit-img"') == 4, dom[-3000:]
    assert dom.count('class="hit loaded"') == 4, "thumbnails did not load"
    assert "4 results for" in dom


def test_the_page_files_ship_in_the_wheel():
    """pyproject's package-data covers the template, scripts, styles and vendored Leaflet: an installed
    `pir serve` has them."""
    import fnmatch
    import tomllib

    package = Path(serve.__file__).parent
    patterns = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["pir_tools"]
    shipped = [p for folder in ("templates", "static") for p in (package / folder).rglob("*") if p.is_file()]
    assert {p.name for p in shipped} >= {"search.html", "search.js", "search.css", "map.js", "leaflet.js",
                                         "leaflet.css", "layers.png", "LICENSE"}
    assert all(any(fnmatch.fnmatch(p.relative_to(package).as_posix(), pat) for pat in patterns) for p in shipped)
