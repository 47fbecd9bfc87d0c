"""pir index --tile/--stride: large scenes indexed window by window (rows, bounds, thumbnails, reuse, the
stretch of deep scenes, memory bounded by the window), and pir search's window column and --geojson."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from rasterio.windows import Window as RioWindow

import pir.data.geo as geo
from pir.data.geo import Window, geo_fields, parse_numbers, read_georef, window_grid
from pir.data.images import read_rgb
from pir.search.index import build_index, load_index
from pir.search.plan import Tiling
from pir.search.windows import window_fields
from pir_tools.search import index_main, search_main

from tests.search.conftest import scene_pixels
from tests.search.test_geo import ORIGIN, PIXEL, UTM31, write_scene

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT, TILE, STRIDE = 600, 500, 256, 200


def _scene_values(seed: int = 0, bands: int = 3, dtype=np.uint8, high: int = 255) -> np.ndarray:
    """[C, H, W]: smooth gradients plus noise, so windows differ from one another."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(xx * high / WIDTH), (yy * high / HEIGHT), ((xx + yy) * high / (WIDTH + HEIGHT))] +
                    [(xx * yy * high / (WIDTH * HEIGHT))] * (bands - 3))
    return np.clip(base * 0.8 + rng.integers(0, high // 5, base.shape), 0, high).astype(dtype)


def _vector(encoder, rgb: np.ndarray) -> np.ndarray:
    return encoder.encode_images(np.asarray(encoder.preprocess(rgb))[None])[0]


def _index(source, out, encoder, checkpoint, **kw):
    return build_index(source, out, encoder, checkpoint, progress=False, batch_size=4, **kw)


def test_a_scene_is_indexed_window_by_window_and_reused_by_window(tmp_path, encoder, checkpoint):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_scene(scenes / "scene.tif", _scene_values())
    tiling = Tiling(TILE, STRIDE)
    first = _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=tiling)
    grid = window_grid(WIDTH, HEIGHT, TILE, STRIDE)
    assert (first.new, first.unchanged, first.unreadable) == (len(grid), 0, [])
    index = load_index(tmp_path / "index")
    assert index.identity["tiling"] == {"tile": TILE, "stride": STRIDE}
    assert [Window.parse(e.window) for e in index.entries] == grid
    assert all((e.path, e.width, e.height, e.crs) == ("scene.tif", TILE, TILE, UTM31) for e in index.entries)
    # window 0's bounds from the transform by hand: 256 px of 10 m from the top-left corner
    assert parse_numbers(index.entries[0].bounds) == (ORIGIN[0], ORIGIN[1] - TILE * PIXEL, ORIGIN[0] + TILE * PIXEL,
                                                      ORIGIN[1])
    georef = read_georef(scenes / "scene.tif")
    assert [geo_fields(georef, w) for w in grid] == window_fields(georef, grid)   # one reprojection = one each
    for e in index.entries:
        west, south, east, north = parse_numbers(e.lonlat)
        assert 2.99 < west < east < 3.1 and 45.0 < south < north < 45.2
    # one thumbnail per window, named by the file's sha256 and the window
    thumbs = [index.thumbnail(e) for e in index.entries]
    assert len(set(thumbs)) == len(grid) and thumbs[0].name == f"{index.entries[0].sha256}-0-0-256-256.jpg"
    assert len({t.read_bytes() for t in thumbs}) == len(grid)
    # a window's vector is the encoder's vector of the same crop of the scene read whole
    whole = read_rgb(scenes / "scene.tif")
    for row in (0, 4, len(grid) - 1):
        w = grid[row]
        crop = whole[w.row:w.row + w.height, w.col:w.col + w.width]
        assert np.allclose(index.vectors[row].astype(np.float32), _vector(encoder, crop), atol=2e-3)

    again = _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=tiling)
    assert (again.new, again.unchanged) == (0, len(grid))
    os.utime(scenes / "scene.tif", ns=(1, 1))   # touched: hashed, and every window reused by (sha256, window)
    touched = _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=tiling)
    assert (touched.new, touched.unchanged) == (0, len(grid))
    assert np.array_equal(load_index(tmp_path / "index").vectors, index.vectors)

    retiled = _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=Tiling(128, 128))
    assert (retiled.new, retiled.unchanged) == (len(window_grid(WIDTH, HEIGHT, 128, 128)), 0)


def test_a_deep_scene_shares_one_stretch_computed_once(tmp_path, encoder, checkpoint, monkeypatch):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_scene(scenes / "deep.tif", _scene_values(1, bands=4, dtype=np.uint16, high=4000))
    computed = []
    stretch = geo.Scene._scene_stretch
    monkeypatch.setattr(geo.Scene, "_scene_stretch", lambda self: computed.append(1) or stretch(self))
    result = _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=Tiling(TILE, TILE), bands=(3, 2, 1),
                    workers=2)
    grid = window_grid(WIDTH, HEIGHT, TILE, TILE)
    assert (result.new, result.unreadable) == (len(grid), [])
    assert len(computed) == 1      # once for the scene, not per window, batch or thread
    index = load_index(tmp_path / "index")
    # the scene-wide stretch: a window is the crop of the whole scene stretched at once (as read_rgb does)
    whole = read_rgb(scenes / "deep.tif", (3, 2, 1))
    w = grid[-1]
    crop = whole[w.row:w.row + w.height, w.col:w.col + w.width]
    assert np.allclose(index.vectors[-1].astype(np.float32), _vector(encoder, crop), atol=2e-3)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")   # plain.tif
def test_folder_of_scenes_and_a_png_search_columns_and_geojson(tmp_path, encoder, checkpoint, capsys):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_scene(scenes / "scene.tif", _scene_values(2))
    write_scene(scenes / "plain.tif", _scene_values(5)[:, :300, :300], crs=None)   # windows, not georeferenced
    Image.fromarray(scene_pixels(0, 0)).save(scenes / "photo.png")
    _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=Tiling(TILE, STRIDE))
    rows = load_index(tmp_path / "index").entries
    assert [e.path for e in rows] == (["photo.png"] + ["plain.tif"] * 4
                                      + ["scene.tif"] * len(window_grid(WIDTH, HEIGHT, TILE, STRIDE)))
    assert rows[0].window == "" and not rows[0].georef
    assert [e.window for e in rows[1:5]] == ["0,0,256,256", "44,0,256,256", "0,44,256,256", "44,44,256,256"]
    assert not any(e.georef or e.bounds or e.lonlat for e in rows[1:5])

    out, sheet = tmp_path / "hits.geojson", tmp_path / "sheet.png"
    assert search_main([str(tmp_path / "index"), "a forest", "--top", "100", "--geojson", str(out),
                        "--sheet", str(sheet)]) == 0
    captured = capsys.readouterr()
    lines = [line.split("\t") for line in captured.out.splitlines()]
    assert len(lines) == len(rows)
    for fields in lines:                       # score<TAB>path[<TAB>col,row,width,height]
        assert len(fields) == (3 if fields[1].endswith(".tif") else 2)
        assert len(fields) == 2 or Window.parse(fields[2]).width == TILE
    assert "5 of 14 hits are not georeferenced" in captured.err
    # the contact sheet shows a window hit's own crop: its thumbnail, pasted at the hit's tile (5 a row,
    # 200 x 243 px each with the window's caption line, under a 24 px title)
    rank = next(k for k, fields in enumerate(lines) if len(fields) == 3)
    hit = next(e for e in rows if e.window == lines[rank][2])
    with Image.open(load_index(tmp_path / "index").thumbnail(hit)) as thumb, Image.open(sheet) as page:
        at = ((rank % 5) * 200 + 4 + (192 - thumb.width) // 2, 24 + (rank // 5) * 243 + 4 + (192 - thumb.height) // 2)
        tile = page.convert("RGB").crop((*at, at[0] + thumb.width, at[1] + thumb.height))
        assert np.array_equal(np.asarray(tile), np.asarray(thumb.convert("RGB")))

    collection = json.loads(out.read_text())   # a JSON round trip; then RFC 7946 by hand
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(rows) - 5
    ranks = []
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        (ring,) = feature["geometry"]["coordinates"]
        assert len(ring) >= 4 and ring[0] == ring[-1]
        area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))
        assert area > 0                        # the outer ring counter-clockwise
        assert all(-180 <= lon <= 180 and -90 <= lat <= 90 for lon, lat in ring)
        props = feature["properties"]
        assert set(props) == {"rank", "score", "path", "scene", "window", "label"}
        assert props["path"] == "scene.tif" and props["scene"] == str(scenes.resolve() / "scene.tif")
        assert len(props["window"]) == 4 and props["label"] is None
        w = Window(*props["window"])
        lons, lats = zip(*ring)
        west, south, east, north = parse_numbers(geo_fields(read_georef(scenes / "scene.tif"), w)["lonlat"])
        assert np.allclose((min(lons), min(lats), max(lons), max(lats)), (west, south, east, north), atol=1e-6)
        ranks.append(props["rank"])
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)

    # an index with no georeferenced row: one line, nothing written
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(scene_pixels(1, 0)).save(photos / "a.png")
    _index(photos, tmp_path / "plain", encoder, checkpoint)
    assert search_main([str(tmp_path / "plain"), "a forest", "--geojson", str(tmp_path / "none.geojson")]) == 1
    err = capsys.readouterr().err
    assert "none of its rows is georeferenced" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none.geojson").exists()


def test_pir_index_takes_one_scene_file_beside_its_index(tmp_path, checkpoint, capsys):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_scene(scenes / "scene.tif", _scene_values(3))
    out = scenes / "scene-index"    # beside the scene, inside its folder: only the scene is indexed
    args = [str(scenes / "scene.tif"), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert index_main(args) == 1 and "give --tile" in capsys.readouterr().err
    assert not out.exists()
    assert index_main(args + ["--tile", "300"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "indexed 4 new, 0 unchanged, 0 unreadable"
    index = load_index(out)
    assert index.root == scenes.resolve() and {e.path for e in index.entries} == {"scene.tif"}
    assert index.identity["tiling"] == {"tile": 300, "stride": 300}
    assert index_main([str(scenes), "--checkpoint", str(checkpoint), "--out", str(out), "--tile", "300"]) == 1
    assert "lies inside the folder being indexed" in capsys.readouterr().err


def test_refusals_and_failures_are_one_line_per_scene_or_window(tmp_path, encoder, checkpoint, monkeypatch):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_scene(scenes / "scene.tif", _scene_values(4))
    capped = _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=Tiling(TILE, STRIDE),
                    max_pixels=TILE * TILE - 1)
    assert capped.new == 0 and [p for p, _ in capped.unreadable] == ["scene.tif"]
    assert "above the" in capped.unreadable[0][1]
    # the pixel cap holds per window: a scene above it is indexed in windows below it
    whole = _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=Tiling(TILE, STRIDE),
                   max_pixels=TILE * TILE)
    assert whole.new == len(window_grid(WIDTH, HEIGHT, TILE, STRIDE)) and whole.unreadable == []
    import pir.search.windows as windows
    windows_cap = windows.MAX_WINDOWS
    try:
        windows.MAX_WINDOWS = 3
        many = _index(scenes, tmp_path / "many", encoder, checkpoint, tiling=Tiling(TILE, STRIDE))
    finally:
        windows.MAX_WINDOWS = windows_cap
    assert many.new == 0 and "window cap" in many.unreadable[0][1]
    (scenes / "broken.tif").write_bytes(b"II*\x00 not a tiff")   # one line for a scene GDAL cannot open
    broken = _index(scenes, tmp_path / "index", encoder, checkpoint, tiling=Tiling(TILE, STRIDE))
    assert [p for p, _ in broken.unreadable] == ["broken.tif"] and broken.unchanged == whole.new
    (scenes / "broken.tif").unlink()

    read = geo.Scene.window_rgb

    def damaged(self, window):
        if window.col == 200 and window.row == 0:
            raise RuntimeError("damaged block")
        return read(self, window)
    monkeypatch.setattr(geo.Scene, "window_rgb", damaged)
    one = _index(scenes, tmp_path / "damaged", encoder, checkpoint, tiling=Tiling(TILE, STRIDE))
    assert one.new == whole.new - 1
    assert one.unreadable == [("scene.tif", "window 200,0,256,256: unreadable image (RuntimeError: damaged block)")]
    write_scene(scenes / "deep.tif", _scene_values(6, bands=3, dtype=np.uint16, high=4000))

    def no_stretch(self):
        raise ValueError("no stretch")
    monkeypatch.setattr(geo.Scene, "_scene_stretch", no_stretch)
    deep = _index(scenes, tmp_path / "deep", encoder, checkpoint, tiling=Tiling(TILE, STRIDE))
    assert [line for line in deep.unreadable if line[0] == "deep.tif"] == [
        ("deep.tif", "unreadable image (ValueError: no stretch)")]   # every window failed: one line


# A scene of 3 x 24000 x 24000 uint8 (1.7 GB as one array), stored tiled and DEFLATE-compressed (~2 MB):
# under an address-space limit below the array, reading it whole fails and reading windows does not.
MEMORY_CHECK = textwrap.dedent("""
    import resource, sys
    from pir.data.geo import Scene, Window
    assert "torch" not in sys.modules
    with Scene(sys.argv[1], max_pixels=10**10) as scene:
        whole = scene.width * scene.height * 3
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        limit = used + whole // 2            # far above a window, below the scene
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            scene.window_rgb(Window(0, 0, scene.width, scene.height))
            print("whole: read")
        except MemoryError:
            print("whole: MemoryError")
        windows = scene.windows(1024, 1024)
        sample = windows[::len(windows) // 24]
        means = [float(scene.window_rgb(w).mean()) for w in sample]
        print(f"windows: {len(sample)} read, mean {max(means):.0f}")
""")


def test_reading_windows_is_bounded_by_the_window_not_the_scene(tmp_path):
    path, side = tmp_path / "big.tif", 24000
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs=UTM31,
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL), tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate") as out:
        out.write(np.full((3, 1024, 1024), 200, np.uint8), window=RioWindow(0, 0, 1024, 1024))
    assert path.stat().st_size < 20 << 20
    run = subprocess.run([sys.executable, "-c", MEMORY_CHECK, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "GDAL_CACHEMAX": "64"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == ["whole: MemoryError", "windows: 24 read, mean 200"]
