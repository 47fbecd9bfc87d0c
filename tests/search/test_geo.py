"""pir.data.geo: georeferencing of GeoTIFFs, window grids, windowed reads, and the manifest's georef columns."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from pir.data.geo import (Georef, Scene, Window, bounds_footprint, geo_fields, parse_numbers, read_georef,
                          window_grid)
from pir.data.images import ImageRefused, read_rgb

UTM31 = "EPSG:32631"
ORIGIN = (500_000.0, 5_000_000.0)   # UTM zone 31N: its central meridian, 3 degrees east, at ~45 degrees north
PIXEL = 10.0


def write_scene(path, values: np.ndarray, crs: str | None = UTM31, tiled: bool = True, **profile) -> None:
    """values [C, H, W] as a GeoTIFF (10 m pixels from ORIGIN in ``crs``; no georeferencing with crs=None)."""
    count, height, width = values.shape
    georef = {"crs": crs, "transform": from_origin(*ORIGIN, PIXEL, PIXEL)} if crs else {}
    blocks = {"tiled": True, "blockxsize": 64, "blockysize": 64} if tiled else {}
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=values.dtype,
                       **georef, **blocks, **profile) as out:
        out.write(values)


def test_window_grid_covers_the_scene_with_whole_windows():
    windows = window_grid(600, 500, 256, 200)
    assert [w.col for w in windows[:3]] == [0, 200, 344]          # the last column moved back to the edge
    assert sorted({w.row for w in windows}) == [0, 200, 244]
    assert all(w.width == 256 and w.height == 256 for w in windows)
    covered = np.zeros((500, 600), bool)
    for w in windows:
        covered[w.row:w.row + w.height, w.col:w.col + w.width] = True
    assert covered.all()
    assert window_grid(100, 80, 256, 256) == [Window(0, 0, 100, 80)]   # smaller than a tile: one whole window
    assert Window.parse(Window(1, 2, 3, 4).text()) == Window(1, 2, 3, 4) and Window.parse("") is None
    with pytest.raises(ValueError, match="--tile"):
        window_grid(100, 100, 8, 8)


def test_bounds_and_footprint_of_a_window_follow_the_transform():
    georef = Georef(UTM31, tuple(from_origin(*ORIGIN, PIXEL, PIXEL))[:6], 600, 500)
    window = Window(100, 50, 64, 32)
    assert georef.bounds(window) == (ORIGIN[0] + 1000, ORIGIN[1] - 820, ORIGIN[0] + 1640, ORIGIN[1] - 500)
    ring = georef.footprint(window)
    assert ring[0] == ring[-1] and len(ring) > 5
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))
    assert area > 0                                                   # counter-clockwise (RFC 7946)
    west, south, east, north = georef.lonlat_bounds(window)
    assert 3.0 < west < east < 3.03 and 45.0 < south < north < 45.2   # east of the central meridian, ~45 N
    assert np.allclose(bounds_footprint(UTM31, georef.bounds(window)), ring)
    fields = geo_fields(georef, window)
    assert fields["window"] == "100,50,64,32" and fields["crs"] == UTM31
    assert parse_numbers(fields["bounds"]) == georef.bounds(window)
    assert geo_fields(None) == {"window": "", "crs": "", "bounds": "", "lonlat": ""}


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")   # writing the plain TIFF
def test_read_georef_of_plain_files_and_of_a_vrt_disguised_as_tiff(tmp_path):
    write_scene(tmp_path / "geo.tif", np.zeros((3, 40, 50), np.uint8))
    write_scene(tmp_path / "plain.tif", np.zeros((3, 40, 50), np.uint8), crs=None)
    Image.new("RGB", (40, 40)).save(tmp_path / "photo.png")
    georef = read_georef(tmp_path / "geo.tif")
    assert georef.crs == UTM31 and (georef.width, georef.height) == (50, 40)
    assert read_georef(tmp_path / "plain.tif") is None and read_georef(tmp_path / "photo.png") is None
    # GDAL would follow a VRT's references to other files or URLs: only its GTiff driver opens a file here
    (tmp_path / "trap.tif").write_text(f'<VRTDataset rasterXSize="50" rasterYSize="40"><VRTRasterBand band="1">'
                                       f'<SimpleSource><SourceFilename>{tmp_path / "geo.tif"}</SourceFilename>'
                                       '</SimpleSource></VRTRasterBand></VRTDataset>')
    assert read_georef(tmp_path / "trap.tif") is None
    with pytest.raises(Exception, match="not recognized|not a supported|TIFF"):
        Scene(tmp_path / "trap.tif")


def test_windows_of_a_deep_scene_share_the_scene_stretch(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4000, (4, 200, 300)).astype(np.uint16)
    values[:, :100, :150] //= 8            # a dark corner: its own stretch would brighten it
    write_scene(tmp_path / "deep.tif", values)
    with Scene(tmp_path / "deep.tif", bands=(3, 2, 1)) as scene:
        assert scene.bands == (3, 2, 1) and len(scene.windows(100, 100)) == 6
        dark, bright = scene.window_rgb(Window(0, 0, 100, 100)), scene.window_rgb(Window(200, 100, 100, 100))
        assert dark.dtype == np.uint8 and dark.shape == (100, 100, 3)
        assert dark.mean() < bright.mean() / 4
        whole = np.concatenate([scene.window_rgb(w) for w in (Window(0, 0, 300, 200),)])
        assert np.array_equal(whole[100:200, 200:300], bright)   # a window is the same pixels as the scene's
        assert scene.quicklook(64).shape == (42, 64, 3)
    with pytest.raises(ImageRefused, match="bands"):
        Scene(tmp_path / "deep.tif", bands=(5, 2, 1))


def test_an_eight_bit_window_is_the_file_read_whole(tmp_path):
    values = np.random.default_rng(1).integers(0, 255, (3, 120, 130)).astype(np.uint8)
    write_scene(tmp_path / "rgb.tif", values)
    with Scene(tmp_path / "rgb.tif") as scene:
        crop = scene.window_rgb(Window(10, 20, 64, 48))
    assert np.array_equal(crop, read_rgb(tmp_path / "rgb.tif")[20:68, 10:74])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_scene_stored_as_one_huge_strip_is_refused_with_the_fix(tmp_path, monkeypatch):
    import pir.data.geo as geo
    # compressed: GDAL reads an uncompressed strip line by line, a compressed one only whole
    write_scene(tmp_path / "strip.tif", np.zeros((3, 256, 256), np.uint8), tiled=False, blockysize=256,
                compress="deflate")
    monkeypatch.setattr(geo, "MAX_BLOCK_BYTES", 64 * 1024)   # a 256x256x3 strip is 192 KiB
    with pytest.raises(ImageRefused, match="TILED=YES"):
        Scene(tmp_path / "strip.tif")


def test_index_rows_of_georeferenced_files_carry_bounds_in_crs_and_lonlat(tmp_path, checkpoint):
    from pir.search.index import build_index, load_index
    from tests.search.conftest import scene_pixels

    images = tmp_path / "images"
    images.mkdir()
    write_scene(images / "geo.tif", np.moveaxis(scene_pixels(0, 0, side=64), -1, 0))
    Image.fromarray(scene_pixels(1, 0)).save(images / "photo.png")
    from pir.search.encoder import load_encoder
    build_index(images, tmp_path / "index", load_encoder(checkpoint), checkpoint, progress=False)
    rows = {e.path: e for e in load_index(tmp_path / "index").entries}
    geo, photo = rows["geo.tif"], rows["photo.png"]
    assert geo.georef and geo.crs == UTM31 and geo.window == ""
    assert parse_numbers(geo.bounds) == (ORIGIN[0], ORIGIN[1] - 640, ORIGIN[0] + 640, ORIGIN[1])
    west, south, east, north = parse_numbers(geo.lonlat)
    assert 2.99 < west < east < 3.01 and 45.1 < south < north < 45.2
    assert not photo.georef and photo.bounds == "" and photo.lonlat == ""
