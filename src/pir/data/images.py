"""Decode an image file (or embedded bytes) once into uint8 RGB at the cache resolution.

8-bit images (L, P, RGB, RGBA, ...) are converted to RGB as they are. Images with
more than 8 bits per sample cannot go through ``convert("RGB")``: PIL casts a
16-bit band, saturating everything above 255 (a 0..4000 TIFF comes out 96% white),
and it opens 16-bit RGB as RGB keeping only the high byte (0..4000 becomes 0..15).
So they are rescaled from their own range instead:

- single band ``I;16*``, ``I`` (int32) and ``F`` (float) images, read by PIL at
  full depth, and 16-bit RGB/RGBA (TIFF or PNG), read at full depth by decoding
  the high and the low byte of each sample separately (no extra dependency);
- a linear 2nd-98th percentile stretch **per band** to 0..255, values beyond
  clipped. Per band because the bands of 16-bit sensors have unrelated gains and
  offsets, and because it is what GIS viewers show by default (QGIS's 2-98%
  cumulative cut). Non-finite values (float no-data) become 0; a band whose
  percentiles coincide falls back to its min..max.

Other deep layouts (16-bit CMYK or LA, ...) are refused. So are images smaller
than ``MIN_SIDE`` (16) pixels on a side: upsampling fewer pixels than that to
the cache resolution makes a blur, not an image, and such files are most likely
thumbnails or broken exports. Images smaller than the cache resolution but not
tiny are upsampled (bicubic), like any other.

Images larger than ``max_pixels`` (width x height, default ``DEFAULT_MAX_PIXELS``)
are refused from their header, before a pixel is decoded: a small file can declare
a huge image (docs/recipes-and-data.md, "Image size cap").
"""

from __future__ import annotations

import io
import math
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pir.config import DEFAULT_MAX_PIXELS
from pir.errors import bytes_text, count_text

IMAGE_EXTENSIONS = (".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp")
MIN_SIDE = 16
STRETCH_PERCENTILES = (2.0, 98.0)
_DEEP_SINGLE_BAND = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_DEEP_MULTI_BAND = ("RGB", "RGBA", "RGBX")   # modes PIL fills from a 16-bit raw mode (high byte only)
_STRETCH_SAMPLE = 1_000_000                  # percentiles from at most this many pixels per band
# tifffile decodes every band (and page) of a TIFF at its own sample size before three are picked, so the
# decoded array, and each tile or strip, is also held to this many bytes per pixel of the cap (4 bands of
# 16 bits, or 2 of float32, at the full cap): hundreds of bands cannot get around the pixel cap.
BYTES_PER_CAPPED_PIXEL = 8
_PIL_CAP_LOCK = threading.Lock()


class ImageRefused(ValueError):
    """A readable image this pipeline will not import; str() is the one-line reason."""


def _rawmodes(image: Image.Image) -> list[str]:
    """The raw mode of each tile (PNG gives a str, TIFF a tuple starting with it)."""
    return [tile.args if isinstance(tile.args, str) else tile.args[0] for tile in image.tile]


def _is_deep_multi_band(image: Image.Image) -> bool:
    return any(raw.endswith((";16L", ";16B", ";16N")) for raw in _rawmodes(image))


def _other_byte(rawmode: str) -> str:
    """``RGB;16L`` -> ``RGB;16B``: the same samples, unpacked from their other (low) byte."""
    end = rawmode[-1] if rawmode[-1] != "N" else ("L" if sys.byteorder == "little" else "B")
    return rawmode[:-1] + ("B" if end == "L" else "L")


def _read_low_bytes(image: Image.Image) -> np.ndarray:
    image.tile = [tile._replace(args=_other_byte(tile.args) if isinstance(tile.args, str)
                                else (_other_byte(tile.args[0]), *tile.args[1:])) for tile in image.tile]
    return np.asarray(image)


def _cap(max_pixels: int | None) -> int:
    return DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels


def check_size(width: int, height: int, max_pixels: int | None = None) -> None:
    """ImageRefused for an image too small to embed or above the pixel cap; from the header, before decoding."""
    if min(width, height) < MIN_SIDE:
        raise ImageRefused(f"image is {width}x{height} pixels, smaller than the {MIN_SIDE}x{MIN_SIDE} minimum")
    cap = _cap(max_pixels)
    if width * height > cap:
        raise ImageRefused(f"image is {width}x{height} pixels ({count_text(width * height)}), above the "
                           f"{count_text(cap)}-pixel cap; raise it with --max-pixels / data.max_image_pixels")


def _open(source: Path | bytes, max_pixels: int | None = None) -> Image.Image:
    """Open an image (PIL reads the header only) and check its size against the cap before any decoding.

    PIL has a cap of its own (Image.MAX_IMAGE_PIXELS, process-wide, 89 M: a warning above it, an error
    above twice that) that would answer first, differently, and below a raised cap. So it is set aside
    while the header is read, under a lock, and left at least at our cap: the load-time check PIL's TIFF
    reader repeats never fires on an image admitted here. Every PIL open of this module goes through here.
    """
    cap = _cap(max_pixels)
    with _PIL_CAP_LOCK:
        pil_cap = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        finally:
            Image.MAX_IMAGE_PIXELS = None if pil_cap is None else max(pil_cap, cap)
    try:
        check_size(image.size[0], image.size[1], cap)
    except ImageRefused:
        image.close()
        raise
    return image


def read_deep_rgb(source: Path | bytes, max_pixels: int | None = None) -> np.ndarray:
    """uint16 [H, W, 3] of a 16-bit RGB(A) file: PIL keeps the high byte, a second decode the low one."""
    with _open(source, max_pixels) as high, _open(source, max_pixels) as low:
        values = np.asarray(high).astype(np.uint16) << 8 | _read_low_bytes(low)
    return values[..., :3]


def stretch_limits(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per band (low, high) of [H, W, C] numbers: their 2nd..98th percentile (non-finite values left out),
    the band's min..max where the two coincide."""
    bands = values.reshape(-1, values.shape[-1])
    if not np.isfinite(bands).any(axis=0).all():
        raise ImageRefused("image has no finite pixel value in some band")
    sample = bands[::max(1, len(bands) // _STRETCH_SAMPLE)]   # a strided sample: percentiles of big tiles stay cheap
    sample = np.where(np.isfinite(sample), sample, np.nan).astype(np.float32)
    low, high = np.nanpercentile(sample, STRETCH_PERCENTILES, axis=0)
    flat = high <= low   # e.g. a mostly constant band: its full range instead
    low[flat], high[flat] = np.nanmin(sample, axis=0)[flat], np.nanmax(sample, axis=0)[flat]
    return low.astype(np.float32), high.astype(np.float32)


def apply_stretch(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """[H, W, C] numbers -> uint8, band c mapped linearly from low[c]..high[c] to 0..255 (clipped; non-finite -> 0)."""
    values = values.astype(np.float32)   # exact for 16-bit; int32 and float64 lose only low bits
    scaled = (values - low) * (255.0 / np.maximum(high - low, 1e-12)) + 0.5
    return np.nan_to_num(np.clip(scaled, 0, 255), nan=0.0, posinf=0.0, neginf=0.0).astype(np.uint8)


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """[H, W, C] numbers -> uint8, each band stretched linearly from its 2nd..98th percentile to 0..255."""
    return apply_stretch(values, *stretch_limits(values))


def to_rgb(image: Image.Image, source: Path | bytes, max_pixels: int | None = None) -> Image.Image:
    """8-bit RGB of an opened image; deep images stretched from their own range, never cast."""
    if image.mode in _DEEP_SINGLE_BAND:
        gray = stretch_to_uint8(np.asarray(image)[..., None])
        return Image.fromarray(np.repeat(gray, 3, axis=2))
    if _is_deep_multi_band(image):
        if image.mode not in _DEEP_MULTI_BAND:
            raise ImageRefused(f"16-bit {image.mode} images are not supported (convert to 8-bit or to 16-bit RGB)")
        return Image.fromarray(stretch_to_uint8(read_deep_rgb(source, max_pixels)))
    try:
        return image.convert("RGB")
    except ValueError:   # PIL: "conversion from X to RGB not supported"
        raise ImageRefused(f"image mode {image.mode} is not supported") from None


def decode_image(source: Path | bytes, size: int, max_pixels: int | None = None) -> np.ndarray:
    """Decode once to RGB and resize (bicubic) to the cache resolution; sizes checked from the header
    (too small, or above ``max_pixels``: None = DEFAULT_MAX_PIXELS) before decoding."""
    with _open(source, max_pixels) as image:
        image = to_rgb(image, source, max_pixels)
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


def decode_all(sources: list[Path | bytes], names: list[str], size: int, progress: bool, workers: int = 4,
               *, max_pixels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode every image into one uint8 array; unreadable or refused ones (above ``max_pixels`` too)
    become problems naming the file."""
    pixels = np.zeros((len(sources), size, size, 3), np.uint8)
    problems: list[str] = []

    def work(i: int) -> None:
        try:
            pixels[i] = decode_image(sources[i], size, max_pixels)
        except ImageRefused as exc:
            problems.append(f"{names[i]}: {exc}")
        except Exception as exc:  # PIL raises several types for corrupt files; report, do not crash mid-way
            problems.append(f"{names[i]}: unreadable image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")

    # PIL releases the GIL while decoding and resizing, so a few threads help on big datasets
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(tqdm(pool.map(work, range(len(sources))), total=len(sources), desc="decode images",
                  disable=not progress, mininterval=1.0))
    return pixels, sorted(problems)


# --------------------------------------------------------------------------- reading user imagery (pir index)
# TIFF goes through tifffile, not PIL: PIL opens only the band layouts it has modes for (no 4+ band
# uint16, no float multi-band, no planar-separate GeoTIFFs), while tifffile reads any band count, dtype
# and planar layout as one numpy array, ships pure-Python wheels (no GDAL to build or install), and is
# already a dependency. Georeferencing is not needed to embed pixels, so nothing GDAL adds is missed.
TIFF_EXTENSIONS = (".tif", ".tiff")


def _tiff_bands_last(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """A TIFF's first image as [H, W, C] (C = 1 for single-band), whatever its layout: interleaved (YXS),
    planar (SYX) or one band per page (QYX/IYX, as some GIS exports write stacks).

    Sizes come from tifffile's series shape (the header) and are checked before ``asarray`` allocates:
    width x height against the pixel cap, the whole decoded array and each tile or strip against
    ``BYTES_PER_CAPPED_PIXEL`` bytes per pixel of it. Tiles of a compressed file are still inflated whole
    by their codec (at most ~1000x the file's own size for deflate).
    """
    import tifffile

    cap = _cap(max_pixels)
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        keep = [i for i, axis in enumerate(series.axes) if series.shape[i] > 1 or axis in "YX"]   # drop length-1 axes
        shape, axes = [series.shape[i] for i in keep], "".join(series.axes[i] for i in keep)
        if len(shape) not in (2, 3) or not {"Y", "X"} <= set(axes):
            raise ImageRefused(f"TIFF has {len(shape)} dimensions ({axes}); expected one image of any band count")
        width, height = shape[axes.index("X")], shape[axes.index("Y")]
        check_size(width, height, cap)
        itemsize, budget = series.dtype.itemsize, cap * BYTES_PER_CAPPED_PIXEL
        decoded, chunk = math.prod(shape) * itemsize, math.prod(series.keyframe.chunks) * itemsize
        if max(decoded, chunk) > budget:
            what = (f"{width}x{height} pixels with {math.prod(shape) // (width * height)} band(s) of {series.dtype} "
                    f"({bytes_text(decoded)} decoded)" if decoded >= chunk else
                    f"stored in tiles or strips of {'x'.join(map(str, series.keyframe.chunks))} samples "
                    f"of {series.dtype} ({bytes_text(chunk)} each)")
            raise ImageRefused(f"image is {what}, above the {bytes_text(budget)} the {count_text(cap)}-pixel cap allows "
                               f"({BYTES_PER_CAPPED_PIXEL} bytes a pixel); raise it with --max-pixels / "
                               "data.max_image_pixels")
        values = series.asarray().reshape(shape)
    if values.ndim == 2:
        return values[..., None]
    band_axis = next((i for i, axis in enumerate(axes) if axis in "SC"), None)
    band_axis = band_axis if band_axis is not None else next(i for i, axis in enumerate(axes) if axis not in "YX")
    return np.moveaxis(values, band_axis, -1)


def rgb_band_numbers(count: int, bands: tuple[int, ...] | None) -> tuple[int, int, int]:
    """The three 1-based bands an image of ``count`` bands is read as: 1-band images as gray, 3-band ones
    as they are, others by ``bands`` (default 1,2,3, which is RGB for RGBA/RGBN files); ImageRefused else."""
    if count == 1:
        return (1, 1, 1)
    if count == 3:
        return (1, 2, 3)
    if count == 2:
        raise ImageRefused("image has 2 bands; only 1-, 3- and more-band images can be read")
    bands = bands or (1, 2, 3)
    if any(b < 1 or b > count for b in bands):
        raise ImageRefused(f"--bands {','.join(map(str, bands))} asks for a band the image does not have "
                           f"(it has {count})")
    return tuple(bands)


def select_bands(values: np.ndarray, bands: tuple[int, ...] | None, where: str) -> np.ndarray:
    """Three bands of a [H, W, C] array, the ones :func:`rgb_band_numbers` names."""
    picked = rgb_band_numbers(values.shape[-1], bands)
    return values if picked == (1, 2, 3) and values.shape[-1] == 3 else values[..., [b - 1 for b in picked]]


def read_rgb(path: str | Path, bands: tuple[int, ...] | None = None, *, max_pixels: int | None = None
             ) -> np.ndarray:
    """uint8 [H, W, 3] of an image file at full resolution.

    JPEG/PNG/BMP go through PIL (:func:`to_rgb`). TIFF goes through tifffile: three bands are picked
    (:func:`select_bands`); uint8 samples are kept as they are, any other dtype is stretched per band
    from its 2nd..98th percentile to 0..255 (:func:`stretch_to_uint8`, the rule the dataset importers use).
    Raises ImageRefused for images too small to embed, above ``max_pixels`` (None = DEFAULT_MAX_PIXELS;
    checked from the header, before decoding) or with an unsupported layout; other exceptions mean an
    unreadable file.
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_EXTENSIONS:
        with _open(path, max_pixels) as image:
            return np.asarray(to_rgb(image, path, max_pixels), dtype=np.uint8)
    values = _tiff_bands_last(path, max_pixels)
    rgb = select_bands(values, bands, str(path))
    return np.ascontiguousarray(rgb) if rgb.dtype == np.uint8 else stretch_to_uint8(rgb)


def parse_bands(text: str) -> tuple[int, ...]:
    """``"3,2,1"`` -> (3, 2, 1); three 1-based band numbers or ValueError."""
    try:
        bands = tuple(int(part) for part in text.split(","))
    except ValueError:
        bands = ()
    if len(bands) != 3 or min(bands) < 1:
        raise ValueError(f"--bands {text!r}: expected three 1-based band numbers such as 3,2,1")
    return bands
