"""pir serve's map (docs/search-and-geo.md, "Serving", "Map"): footprints of georeferenced hits in the API,
each scene's quicklook warped exactly onto Web Mercator and served only for files the index lists, window
rows shown as their crops, a web base map (and the CSP origin it needs) only when asked for, Leaflet
vendored; and the page in a real Chromium: footprints, quicklooks, a hit opened, no request off the machine."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine

from pir.data.geo import Scene, Window, bounds_footprint, parse_numbers
from pir.search.index import build_index, load_index
from pir_tools import serve, serve_map
from pir_tools.serve import ALLOWED_HOSTS, SECURITY_HEADERS, create_app, loopback_hosts

from tests import browser
from tests.search.conftest import write_images

UTM31 = "EPSG:32631"
PIXEL = 10.0
TILES = ("airport", "beach", "forest", "farmland", "river", "residential", "parking", "storagetanks",
         "pond", "port", "playground", "industrial", "bridge", "stadium", "meadow", "viaduct")   # a 4 x 4 mosaic
TILE = 128


def write_geotiff(path: Path, rgb: np.ndarray, origin: tuple[float, float]) -> None:
    """[H, W, 3] uint8 as a tiled GeoTIFF, 10 m pixels from ``origin`` (top-left) in UTM zone 31N."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=rgb.shape[1], height=rgb.shape[0], count=3, dtype="uint8",
                       crs=UTM31, transform=Affine(PIXEL, 0, origin[0], 0, -PIXEL, origin[1]), tiled=True,
                       blockxsize=64, blockysize=64) as out:
        out.write(np.moveaxis(rgb, -1, 0))


@pytest.fixture(scope="module")
def geo_index(tmp_path_factory, encoder, checkpoint) -> Path:
    """16 adjacent 128 px GeoTIFF tiles (the built-in synthetic dataset's scenes, 1.28 km each, in France)."""
    from pir.config import SyntheticConfig
    from pir.data.synthetic import render_image

    folder = tmp_path_factory.mktemp("serve_map")
    cfg = SyntheticConfig(image_size=TILE)
    for k, name in enumerate(TILES):
        row, col = divmod(k, 4)
        rgb, _ = render_image(name, cfg, np.random.default_rng(k))
        write_geotiff(folder / "tiles" / f"{name}_{k}.tif", rgb,
                      (500_000 + col * TILE * PIXEL, 5_000_000 - row * TILE * PIXEL))
    build_index(folder / "tiles", folder / "index", encoder, checkpoint, progress=False,
                scenes=lambda rel: rel.split("_")[0])
    return folder / "index"


@pytest.fixture(scope="module")
def geo_client(geo_index):
    return create_app(geo_index, allowed_hosts=loopback_hosts(80)).test_client()   # the client sends Host: localhost


@pytest.fixture(scope="module")
def plain_client(tmp_path_factory, encoder, checkpoint):
    folder = tmp_path_factory.mktemp("serve_plain")
    write_images(folder / "images", 1)
    build_index(folder / "images", folder / "index", encoder, checkpoint, progress=False)
    return create_app(folder / "index", allowed_hosts=loopback_hosts(80)).test_client()


# a 384 x 256 scene of 32 px blocks of random colours, far enough from zone 31's central meridian (3 E) that
# north in UTM is not north in Web Mercator (a lon/lat box around it would misplace its pixels)
SCENE_ORIGIN = (700_000.0, 5_000_000.0)
BLOCK = 32


def _blocks() -> np.ndarray:
    colours = np.random.default_rng(7).integers(0, 256, (256 // BLOCK, 384 // BLOCK, 3), dtype=np.uint8)
    return np.kron(colours, np.ones((BLOCK, BLOCK, 1), np.uint8))


@pytest.fixture(scope="module")
def window_index(tmp_path_factory, encoder, checkpoint) -> Path:
    """One scene indexed as six 128 px windows (`pir index --tile 128`)."""
    from pir.search.plan import Tiling

    folder = tmp_path_factory.mktemp("serve_windows")
    write_geotiff(folder / "scene" / "blocks.tif", _blocks(), SCENE_ORIGIN)
    build_index(folder / "scene", folder / "index", encoder, checkpoint, progress=False, tiling=Tiling(128, 128))
    assert len(load_index(folder / "index").entries) == 6
    return folder / "index"


@pytest.fixture(scope="module")
def window_client(window_index):
    return create_app(window_index, allowed_hosts=loopback_hosts(80)).test_client()


# --------------------------------------------------------------------------- the API

def test_hits_of_a_georeferenced_index_carry_footprints_and_a_plain_index_has_no_map(geo_client, geo_index,
                                                                                       plain_client):
    index = load_index(geo_index)
    info = geo_client.get("/api/info").get_json()
    assert info["georeferenced"] == info["images"] == 16 and info["basemap"] is None
    assert sorted(r["path"] for r in info["rasters"]) == sorted(e.path for e in index.entries)
    hits = geo_client.get("/api/search?q=an+airport+with+many+things&top=5").get_json()
    assert len(hits) == 5
    for hit in hits:
        entry = next(e for e in index.entries if e.path == hit["path"])
        expected = bounds_footprint(entry.crs, parse_numbers(entry.bounds))
        assert np.allclose(hit["footprint"], expected, atol=1e-6) and hit["footprint"][0] == hit["footprint"][-1]
        west, south, east, north = parse_numbers(entry.lonlat)
        lon, lat = np.array(hit["footprint"]).T
        assert np.allclose([lon.min(), lat.min(), lon.max(), lat.max()], [west, south, east, north], atol=1e-6)
        assert hit["window"] == "" and hit["quicklook"] == f"/api/quicklook/{hit['path']}"
    page = geo_client.get("/").get_data(as_text=True)
    assert 'id="map"' in page and "leaflet/leaflet.js" in page and "map.js" in page

    plain = plain_client.get("/api/search?q=forest&top=3").get_json()
    assert len(plain) == 3 and all(h["footprint"] is None and h["quicklook"] is None for h in plain)
    assert plain_client.get("/api/info").get_json()["rasters"] == []
    page = plain_client.get("/").get_data(as_text=True)
    assert 'id="map"' not in page and "leaflet" not in page   # the page as it was
    assert plain_client.get(f"/quicklook/{plain[0]['path']}").status_code == 404   # not georeferenced


# --------------------------------------------------------------------------- quicklooks

def _png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)))


def test_a_quicklook_is_the_scene_warped_exactly_onto_web_mercator(window_client, window_index):
    from rasterio.warp import transform

    meta = window_client.get("/api/quicklook/blocks.tif").get_json()
    reply = window_client.get(meta["image"])
    assert reply.status_code == 200 and reply.mimetype == "image/png"
    rgba = _png(reply.data)
    assert rgba.shape == (meta["height"], meta["width"], 4) and max(rgba.shape[:2]) <= serve_map.QUICKLOOK_SIDE
    west, south, east, north = meta["bounds"]
    (x0, x1), (y0, y1) = transform("EPSG:4326", "EPSG:3857", [west, east], [south, north])
    # each block's centre, from the scene's transform to Web Mercator, to the PNG pixel Leaflet puts there
    cols, rows = np.meshgrid(np.arange(BLOCK // 2, 384, BLOCK), np.arange(BLOCK // 2, 256, BLOCK))
    xs = SCENE_ORIGIN[0] + (cols.ravel() + 0.5) * PIXEL   # north-up, 10 m pixels
    ys = SCENE_ORIGIN[1] - (rows.ravel() + 0.5) * PIXEL
    mx, my = transform(UTM31, "EPSG:3857", list(xs), list(ys))
    px = ((np.array(mx) - x0) / (x1 - x0) * rgba.shape[1]).astype(int)
    py = ((y1 - np.array(my)) / (y1 - y0) * rgba.shape[0]).astype(int)
    expected = _blocks()[rows.ravel(), cols.ravel()]
    assert np.abs(rgba[py, px, :3].astype(int) - expected).max() <= 1
    assert (rgba[py, px, 3] == 255).all()
    # the scene is turned against the Mercator grid here: the image's corners lie outside it, transparent
    assert rgba[0, 0, 3] == rgba[-1, -1, 3] == 0 and 0.02 < (rgba[..., 3] == 0).mean() < 0.2
    small = create_app(window_index, allowed_hosts=loopback_hosts(80), quicklook_side=100).test_client()
    meta = small.get("/api/quicklook/blocks.tif").get_json()
    assert max(meta["width"], meta["height"]) == 100 == max(_png(small.get(meta["image"]).data).shape[:2])


def test_quicklooks_are_cached_in_memory_and_computed_once(geo_index, monkeypatch):
    made = []
    real = serve_map.make_quicklook
    monkeypatch.setattr(serve_map, "make_quicklook", lambda *args: made.append(args) or real(*args))
    client = create_app(geo_index, allowed_hosts=loopback_hosts(80)).test_client()
    for _ in range(3):
        assert client.get("/quicklook/beach_1.tif").status_code == 200
    assert client.get("/api/quicklook/beach_1.tif").status_code == 200 and len(made) == 1


@pytest.mark.parametrize("url", [
    "/quicklook/not_listed.tif", "/quicklook/../index/CURRENT", "/quicklook/%2e%2e/%2e%2e/etc/passwd",
    "/quicklook//etc/passwd", "/api/quicklook/..%2fscene%2fblocks.tif", "/api/quicklook/blocks.tif/..",
    "/image/blocks.tif?window=1,1,128,128",            # not a window the index lists
    "/image/blocks.tif?window=../../etc/passwd", "/thumb/blocks.tif?window=0,0,999,999",
    "/thumb/blocks.tif",                                # the file has window rows only
    "/api/search?like=blocks.tif&window=5,5,10,10",
])
def test_quicklooks_and_crops_only_for_what_the_index_lists(window_client, url):
    assert window_client.get(url).status_code == 404


def test_a_swapped_scene_gets_no_quicklook_or_crop(window_index, tmp_path):
    client = create_app(window_index, allowed_hosts=loopback_hosts(80)).test_client()
    path = load_index(window_index).root / "blocks.tif"
    saved = tmp_path / "saved.tif"
    shutil.copy2(path, saved)
    try:
        with open(path, "r+b") as fh:   # same size, other bytes
            fh.seek(-64, os.SEEK_END)
            fh.write(bytes(64))
        for url in ("/quicklook/blocks.tif", "/api/quicklook/blocks.tif", "/image/blocks.tif?window=0,0,128,128"):
            assert client.get(url).status_code == 409, url
    finally:
        shutil.copy2(saved, path)
    assert client.get("/image/blocks.tif?window=0,0,128,128").status_code == 200


# --------------------------------------------------------------------------- window rows

def test_a_window_row_is_shown_as_exactly_its_crop(window_client, window_index):
    index = load_index(window_index)
    hits = window_client.get("/api/search?like=blocks.tif&window=128,128,128,128&top=6").get_json()
    assert hits[0]["window"] == "128,128,128,128" and hits[0]["score"] == pytest.approx(1.0, abs=2e-3)
    assert len({h["window"] for h in hits}) == 6
    with Scene(index.root / "blocks.tif") as scene:
        for hit in hits:
            assert hit["image"] == f"/image/blocks.tif?window={hit['window']}"
            crop = window_client.get(hit["image"])
            assert crop.status_code == 200 and crop.mimetype == "image/png"
            assert np.array_equal(_png(crop.data), scene.window_rgb(Window.parse(hit["window"])))
            entry = next(e for e in index.entries if e.window == hit["window"])
            assert window_client.get(hit["thumb"]).data == index.thumbnail(entry).read_bytes()
            assert np.allclose(hit["footprint"], bounds_footprint(entry.crs, parse_numbers(entry.bounds)), atol=1e-6)
    original = window_client.get("/image/blocks.tif")   # the file itself, as for any indexed path
    assert original.status_code == 200 and original.data == (index.root / "blocks.tif").read_bytes()


# --------------------------------------------------------------------------- network: none unless asked

OSM = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


def test_the_csp_allows_a_base_map_origin_only_when_asked(geo_index, geo_client, capsys):
    assert geo_client.get("/").headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    assert "img-src 'self';" in SECURITY_HEADERS["Content-Security-Policy"]
    app = create_app(geo_index, allowed_hosts=loopback_hosts(80), basemap=OSM, attribution="© OSM <b>x</b>")
    client = app.test_client()
    for url in ("/", "/api/info", "/static/map.js", "/nothing"):
        csp = client.get(url).headers["Content-Security-Policy"]
        assert "img-src 'self' https://tile.openstreetmap.org;" in csp and "script-src 'self';" in csp, url
    assert client.get("/api/info").get_json()["basemap"] == {"url": OSM, "attribution": "© OSM <b>x</b>"}
    page = client.get("/").get_data(as_text=True)
    assert f'data-basemap="{OSM}"' in page and 'data-attribution="© OSM &lt;b&gt;x&lt;/b&gt;"' in page
    assert serve_map.basemap_source("https://{s}.tile.example.org:8443/{z}/{x}/{y}.png") == \
        "https://*.tile.example.org:8443"
    for bad in ("javascript:alert(1)", "https://a.example; script-src *", "https://a.example'/x", "ftp://a/{z}",
                "https://user:pw@a.example/{z}", "https://[::1]/{z}"):
        with pytest.raises(ValueError, match="--basemap"):
            serve_map.basemap_source(bad)
    root = load_index(geo_index).root
    assert serve.main([str(geo_index), "--root", str(root), "--port", "0", "--basemap", "javascript:x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--basemap" in err[0]


def test_the_map_page_references_local_files_only(geo_client):
    page = geo_client.get("/").get_data(as_text=True)
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/leaflet/leaflet.js">',
                                                  '<script src="/static/map.js">', '<script src="/static/search.js">']
    assert all(url.startswith("/static/") for url in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert "<style" not in page and not re.search(r"\s(style|on\w+)=", page)
    assert 'data-basemap=""' in page
    for name in ("map.js", "search.js", "search.css"):
        text = geo_client.get(f"/static/{name}").get_data(as_text=True)
        assert "http" not in text and "//" not in re.sub(r"^\s*//.*$|\s//.*$", "", text, flags=re.M), name
    css = geo_client.get("/static/leaflet/leaflet.css").get_data(as_text=True)
    assert set(re.findall(r"url\(([^)]*)\)", css)) <= {"#default#VML", "images/layers.png", "images/layers-2x.png",
                                                        "images/marker-icon.png"}


def test_vendored_leaflet_is_the_npm_release_its_readme_names():
    folder = Path(serve.__file__).parent / "static" / "leaflet"
    readme = (folder / "README.md").read_text()
    assert "Leaflet 1.9.4" in readme and "npm pack leaflet@1.9.4" in readme and "sha512-" in readme
    listed = dict(reversed(line.split()) for line in readme.splitlines() if re.match(r"^\s+[0-9a-f]{64}\s+\S+$", line))
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "README.md")
    assert sorted(listed) == files
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert 't.version="1.9.4"' in (folder / "leaflet.js").read_text()


# --------------------------------------------------------------------------- in Chromium

def _page_requests(netlog: Path, origin: str) -> list[str]:
    """The URLs of the requests a page of ``origin`` made (its initiator), from Chromium's --log-net-log;
    Chromium's own background requests (Google's hosts, with no initiator) are not the page's."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"]
            if e["type"] == start and e.get("params", {}).get("initiator") == origin]


def test_the_map_in_chromium_footprints_quicklooks_and_an_opened_hit(geo_index, tmp_path, monkeypatch):
    """Chromium enforces the CSP: Leaflet, map.js and search.js (files) run, the 6 hits' footprints are SVG
    paths in the overlay pane, every tile's quicklook loads as an image overlay, #hit=1 opens hit 1 as a click
    on its footprint does (the popup with its thumbnail, its result marked), and every request the page made
    (Chromium's network log) went to the server's own origin. (The docs' picture of the map is made from the
    trained model by scripts/docs_images.py; this test's model is untrained.)"""
    browser.chromium()
    from werkzeug.serving import make_server

    monkeypatch.chdir(geo_index.parent)   # `pir serve index`: the page names the folder as given
    app = create_app(Path(geo_index.name), allowed_hosts=())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    app.config[ALLOWED_HOSTS] = loopback_hosts(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        url = f"http://127.0.0.1:{port}/?q=an+airport+with+many+things&top=6#hit=1"
        netlog = tmp_path / "netlog.json"
        dom = browser.dump_dom(url, wait_ms=5000, extra=[f"--log-net-log={netlog}"])
        shot = Path(os.environ.get("PIR_KEEP_SHOT", tmp_path)) / "serve_map.png"
        browser.screenshot(url, shot, size=(1280, 760), wait_ms=5000)
        print(f"DOM and screenshot after {time.perf_counter() - started:.1f} s")
    finally:
        server.shutdown()
        thread.join(timeout=10)
    pane = dom[dom.index("leaflet-overlay-pane"):]
    assert len(re.findall(r'<path class="footprint leaflet-interactive"', pane)) == 6, dom[-3000:]
    assert len(re.findall(r'<img[^>]*class="[^"]*quicklook[^"]*loaded', dom)) == 16, "quicklooks did not load"
    assert dom.count('class="leaflet-tooltip rank-label') == 6
    popup = dom[dom.index("leaflet-popup-content"):]
    first = re.search(r'<figure class="hit[^"]*" data-path="([^"]+)" data-rank="1"', dom)
    assert first and "selected" in first.group(0), "hit 1 not marked"
    assert f'src="/thumb/{first.group(1)}"' in popup[:2000] and "#1 " in popup[:2000]
    assert len(re.findall(r'<figure class="hit[^"]*\bloaded\b', dom)) == 6 and "6 results for" in dom
    origin = f"http://127.0.0.1:{port}"
    by_page = _page_requests(netlog, origin)
    assert len(by_page) > 30 and all(url.startswith(origin + "/") for url in by_page), by_page
