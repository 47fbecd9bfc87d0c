"""The decoded-size cap (docs/recipes-and-data.md, "Image size cap"): images above it are refused from their header,
before any pixel is allocated, for TIFF (tifffile), the PIL formats and embedded bytes alike; the cap is
raised per call; Pillow's own process-wide cap neither answers first nor warns."""

from __future__ import annotations

import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.data.data_fixtures import HUGE, declared_tiff, png_bytes
from pir.config import DataConfig
from pir.data import download, images
from pir.data.images import DEFAULT_MAX_PIXELS, ImageRefused, decode_all, decode_image, read_rgb


def declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height 8-bit RGB, followed by a few bytes of data only."""
    return png_bytes(width, height, 8, bytes(1000))


def small_image(path: Path, fmt: str) -> Path:
    """48x40 random pixels in ``fmt`` (TIFF through tifffile, the reader pir index uses for it)."""
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    if fmt == "TIFF":
        tifffile.imwrite(path, pixels, photometric="rgb")
    else:
        Image.fromarray(pixels).save(path, format=fmt)
    return path


def test_declared_40000_tiff_is_refused_without_allocating(tmp_path):
    path = declared_tiff(tmp_path / "huge.tif")
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        began = time.perf_counter()
        for read in (lambda: read_rgb(path), lambda: decode_image(path, 64)):   # tifffile, then PIL
            with pytest.raises(ImageRefused) as exc:
                read()
            assert str(exc.value) == HUGE
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20 and time.perf_counter() - began < 5   # 4.5 GiB had it been decoded


def test_declared_huge_png_gets_our_message_not_pillows(tmp_path):
    # 1.6 G pixels is above twice Pillow's own cap: its DecompressionBombError would answer first
    (tmp_path / "huge.png").write_bytes(declared_png(40000, 40000))
    for read in (lambda: read_rgb(tmp_path / "huge.png"), lambda: decode_image(declared_png(40000, 40000), 64)):
        with pytest.raises(ImageRefused) as exc:
            read()
        assert str(exc.value) == HUGE


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("BMP", ".bmp"), ("TIFF", ".tif")])
def test_the_cap_is_per_call_and_raising_it_admits_the_image(tmp_path, fmt, suffix):
    path = small_image(tmp_path / f"small{suffix}", fmt)
    for read in (lambda cap: read_rgb(path, max_pixels=cap), lambda cap: decode_image(path, 32, cap)):
        with pytest.raises(ImageRefused) as exc:
            read(1000)
        assert str(exc.value) == ("image is 48x40 pixels (1.92 k), above the 1 k-pixel cap; "
                                  "raise it with --max-pixels / data.max_image_pixels")
        assert read(48 * 40).shape[-1] == 3   # exactly at the cap: admitted
        assert read(None).shape[-1] == 3      # the default


def test_decode_all_caps_files_and_embedded_bytes(tmp_path):
    path = small_image(tmp_path / "a.png", "PNG")
    pixels, problems = decode_all([path, path.read_bytes()], ["a.png", "rows.parquet:b.png"], 32, False,
                                  max_pixels=1000)
    assert problems == [f"{name}: image is 48x40 pixels (1.92 k), above the 1 k-pixel cap; raise it with "
                        "--max-pixels / data.max_image_pixels" for name in ("a.png", "rows.parquet:b.png")]
    pixels, problems = decode_all([path, path.read_bytes()], ["a.png", "b"], 32, False, max_pixels=48 * 40)
    assert problems == [] and pixels.std() > 0


def test_many_bands_are_held_to_bytes_per_capped_pixel(tmp_path):
    stack = np.random.default_rng(1).integers(0, 4000, (300, 40, 48)).astype(np.uint16)   # 300 bands, 1.1 MiB
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack", planarconfig="separate")
    with pytest.raises(ImageRefused) as exc:
        read_rgb(tmp_path / "stack.tif", max_pixels=48 * 40)   # allows 8 bytes a pixel: 15 KiB
    assert str(exc.value) == ("image is 48x40 pixels with 300 band(s) of uint16 (1.1 MiB decoded), above the "
                              "15 KiB the 1.92 k-pixel cap allows (8 bytes a pixel); raise it with --max-pixels / "
                              "data.max_image_pixels")
    assert read_rgb(tmp_path / "stack.tif", (3, 2, 1)).shape == (40, 48, 3)   # under the default cap


def test_pillow_cap_neither_answers_first_nor_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # Pillow would refuse 48x40 (above 2 x 100)
    png = small_image(tmp_path / "a.png", "PNG")
    Image.fromarray(read_rgb(png)).save(tmp_path / "a.tif")   # PIL's TIFF reader checks again when loading
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert read_rgb(png).shape == (40, 48, 3)
        assert decode_image(tmp_path / "a.tif", 32).shape == (32, 32, 3)
        assert decode_image(png.read_bytes(), 32).shape == (32, 32, 3)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS   # left at least at ours, never below it


def test_params_defaults_are_the_library_defaults():
    data = DataConfig()
    assert data.max_image_pixels == images.DEFAULT_MAX_PIXELS == 2 ** 27
    assert 10980 * 10980 <= images.DEFAULT_MAX_PIXELS < 40000 * 40000   # a whole Sentinel-2 tile fits
    assert data.max_archive_bytes == download.DEFAULT_MAX_ARCHIVE_BYTES
    assert data.max_archive_ratio == download.DEFAULT_MAX_ARCHIVE_RATIO
    for key in ("max_image_pixels", "max_archive_bytes", "max_archive_ratio"):
        with pytest.raises(ValueError, match=f"{key} = 0: must be >= 1"):
            DataConfig(**{key: 0})
