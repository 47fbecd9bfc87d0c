"""Image transforms on uint8 CHW tensors: train augmentation, eval resize, CLIP normalisation.

The train augmentation of docs/recipes-and-data.md, "Data preparation in detail" (RandomResizedCrop, horizontal flip, a
RandAugment restricted to the released op list) is re-implemented here: for the same
parameters every op gives the bytes of its ``torchvision.transforms.v2`` counterpart
(tests/data/test_loader.py), through lookup tables, precomputed warps and integer arithmetic
that are cheaper per uint8 image. Every random draw comes from the caller's generator (the
loader seeds one per item). ``normalize_images`` turns uint8 batches into CLIP-normalised
floats on the target device.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

# CLIP's normalisation constants (the released configs normalise with these), the default of
# model.image_mean / model.image_std.
from pir.config import CLIP_MEAN, CLIP_STD


# RandAugment as in the released code (BLIP's RandomAugment): levels out of 10, each chosen
# op applied with probability 1/2, grey fill for geometric ops.
RANDAUG_OPS = ("identity", "autocontrast", "equalize", "brightness", "sharpness",
               "shear_x", "shear_y", "translate_x", "translate_y", "rotate")
RANDAUG_MAX_LEVEL = 10
RANDAUG_APPLY_PROB = 0.5
RANDAUG_FILL = 128                   # grey, as BLIP's (128, 128, 128)
TRANSLATE_FRACTION = 10 / 224        # BLIP translates by up to 10 px on 224 px images

# Uniform draws one item's augmentation can need: 10 crop attempts x 4, a flip, 3 per RandAugment op.
DRAWS_PER_ITEM = 48


class Uniforms:
    """Uniform [0, 1) numbers drawn from ``generator`` a block at a time.

    One torch call per item instead of one per decision: at ~15 decisions an item, the
    per-call overhead of tiny ``torch.rand`` calls was a tenth of the loader's time.
    """

    def __init__(self, generator: torch.Generator | None, block: int = DRAWS_PER_ITEM):
        self.generator = generator
        self.block = block
        self.values: list[float] = []

    def next(self) -> float:
        if not self.values:   # refilled, never cut short: a rare extra crop attempt just draws more
            self.values = torch.rand(self.block, generator=self.generator, dtype=torch.float64).tolist()[::-1]
        return self.values.pop()

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.next()

    def below(self, high: int) -> int:
        """An integer in [0, high)."""
        return min(int(self.next() * high), high - 1)


def _uniforms(source: torch.Generator | Uniforms | None) -> Uniforms:
    return source if isinstance(source, Uniforms) else Uniforms(source)


@functools.lru_cache(maxsize=64)
def _warp_source(op: str, negative: bool, size: int, level: float) -> np.ndarray:
    """int64 [S*S]: the flat source pixel of every output pixel for one geometric op; S*S = fill.

    RandAugment's geometric ops use a fixed magnitude, so for a given (op, sign, size)
    the nearest-neighbour warp is a constant permutation: computing it once by warping an
    image of pixel indices with v2.functional, then gathering, gives F.affine/F.rotate's
    exact result at a fraction of the cost of a grid_sample per image.
    """
    sign = -1.0 if negative else 1.0
    index = torch.arange(size * size, dtype=torch.float32).view(1, size, size)   # exact below 2**24
    if op == "rotate":
        warped = F.rotate(index, sign * level * 30.0, fill=[-1.0])
    else:
        if op.startswith("shear"):
            # BLIP shears by a matrix coefficient (0.3 at level 10); v2 wants degrees.
            degrees = sign * math.degrees(math.atan(level * 0.3))
            shear, shift = ([degrees, 0.0] if op == "shear_x" else [0.0, degrees]), [0, 0]
        else:
            pixels = round(sign * level * TRANSLATE_FRACTION * size)
            shear, shift = [0.0, 0.0], ([pixels, 0] if op == "translate_x" else [0, pixels])
        warped = F.affine(index, angle=0.0, translate=shift, scale=1.0, shear=shear, fill=[-1.0])
    source = warped.flatten().long().numpy()
    source[source < 0] = size * size          # points at the grey column appended by _warp
    return source


def _warp(image: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Nearest-neighbour warp of a [3,S,S] uint8 array by a precomputed source index.

    numpy's take along the pixel axis of a [3, S*S+1] array (last column grey) is ~3x
    faster than torch.take + masked_fill, and needs no mask.
    """
    channels, height, width = image.shape
    flat = np.empty((channels, height * width + 1), dtype=np.uint8)
    flat[:, :-1] = image.reshape(channels, -1)
    flat[:, -1] = RANDAUG_FILL
    return np.take(flat, source, axis=1).reshape(channels, height, width)


def _per_channel_lut(image: np.ndarray, luts: np.ndarray) -> np.ndarray:
    """out[c] = luts[c][image[c]]: any per-pixel uint8 map as a table lookup."""
    out = np.empty_like(image)
    for channel in range(image.shape[0]):     # 3 table lookups, not a loop over pixels
        np.take(luts[channel], image[channel], out=out[channel])
    return out


@functools.lru_cache(maxsize=16)
def _brightness_lut(factor: float) -> np.ndarray:
    # the very expression F.adjust_brightness evaluates per pixel, evaluated once per value
    return torch.arange(256, dtype=torch.uint8).mul(factor).clamp_(0, 255).to(torch.uint8).numpy()


def _autocontrast(image: np.ndarray) -> np.ndarray:
    """F.autocontrast as a per-channel lookup table (same float32 arithmetic, so the same bytes)."""
    flat = image.reshape(image.shape[0], -1)
    minimum = torch.from_numpy(flat.min(axis=1).astype(np.float32)).view(-1, 1)
    maximum = torch.from_numpy(flat.max(axis=1).astype(np.float32)).view(-1, 1)
    constant = maximum == minimum
    inv_scale = (maximum - minimum).mul_(1.0 / 255)
    minimum[constant] = 0.0
    inv_scale[constant] = 1.0
    values = torch.arange(256, dtype=torch.float32).view(1, -1)
    return _per_channel_lut(image, values.sub(minimum).div_(inv_scale).clamp_(0, 255).to(torch.uint8).numpy())


def _equalize(image: np.ndarray) -> np.ndarray:
    """F.equalize (torchvision's integer algorithm) with numpy histograms and a lookup table."""
    channels = image.shape[0]
    pixels = image[0].size
    hist = np.stack([np.bincount(image[c].ravel(), minlength=256) for c in range(channels)])
    cum_hist = hist.cumsum(axis=1)
    last_bin = cum_hist.argmax(axis=1)
    step = (pixels - hist[np.arange(channels), last_bin]) // 255
    luts = np.zeros((channels, 256), dtype=np.uint8)
    luts[:, 1:] = np.clip((cum_hist[:, :-1] + step[:, None] // 2) // np.maximum(step, 1)[:, None], 0, 255)
    luts[step == 0] = np.arange(256, dtype=np.uint8)     # a (nearly) constant channel is left as is
    return _per_channel_lut(image, luts)


def _sharpen(image: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL/torchvision sharpness (equal to F.adjust_sharpness): blend with the SMOOTH-filtered image.

    SMOOTH is [[1,1,1],[1,5,1],[1,1,1]]/13 = (3x3 box sum + 4 x centre)/13, borders kept;
    done with integer shifted sums instead of torchvision's float grouped conv (faster at any size).
    """
    x = image.to(torch.int16)
    rows = x[:, :-2] + x[:, 1:-1] + x[:, 2:]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    blurred = x.clone()
    # +6 then floor == round: 13 is odd, so no value is exactly half-way
    blurred[:, 1:-1, 1:-1] = torch.div(box + 4 * x[:, 1:-1, 1:-1] + 6, 13, rounding_mode="floor")
    return torch.lerp(blurred.float(), x.float(), factor).clamp_(0, 255).to(torch.uint8)


class RestrictedRandAugment(nn.Module):
    """RandAugment over the op list in docs/recipes-and-data.md, "Data preparation in detail" (v2.RandAugment cannot restrict its ops).

    Draws ``num_ops`` ops with replacement from RANDAUG_OPS, applies each with probability
    1/2 and a random sign for signed ops, all from the given ``generator``. Every op equals
    its torchvision v2 counterpart on uint8 CHW tensors (tests/data/test_loader.py).
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 7):
        super().__init__()
        self.num_ops = num_ops
        self.level = magnitude / RANDAUG_MAX_LEVEL

    def _apply(self, op: str, image: torch.Tensor, negative: bool = False) -> torch.Tensor:
        # pixel maps and warps run on the tensor's numpy view (no copy): table lookups and
        # np.take beat torch's per-call overhead and its int64 gathers at these sizes
        if op == "identity":
            return image
        if op == "sharpness":
            return _sharpen(image, self.level * 1.8 + 0.1)
        pixels = image.numpy()
        if op == "autocontrast":
            out = _autocontrast(pixels)
        elif op == "equalize":
            out = _equalize(pixels)
        elif op == "brightness":
            out = np.take(_brightness_lut(self.level * 1.8 + 0.1), pixels)
        elif op in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate"):
            out = _warp(pixels, _warp_source(op, negative, image.shape[-1], self.level))
        else:
            raise ValueError(f"unknown RandAugment op {op!r}")
        return torch.from_numpy(out)

    def forward(self, image: torch.Tensor, generator: torch.Generator | Uniforms | None = None) -> torch.Tensor:
        draws = _uniforms(generator)
        for _ in range(self.num_ops):
            op = RANDAUG_OPS[draws.below(len(RANDAUG_OPS))]
            apply = draws.next() < RANDAUG_APPLY_PROB
            negative = draws.next() < 0.5
            if apply:
                image = self._apply(op, image, negative)
        return image


def crop_box(height: int, width: int, scale: Sequence[float], generator: torch.Generator | Uniforms | None,
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a RandomResizedCrop: torchvision's algorithm, drawn from ``generator``."""
    draws = _uniforms(generator)
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * draws.uniform(scale[0], scale[1])
        aspect = math.exp(draws.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return draws.below(height - h + 1), draws.below(width - w + 1), h, w
    # fallback: the largest centred crop within the ratio bounds
    in_ratio = width / height
    w, h = ((width, round(width / ratio[0])) if in_ratio < ratio[0] else
            (round(height * ratio[1]), height) if in_ratio > ratio[1] else (width, height))
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: torch.Tensor, top: int, left: int, height: int, width: int, size: int) -> torch.Tensor:
    """F.resized_crop(bicubic, antialias) on uint8 CHW, calling the same kernel without v2's wrappers."""
    crop = image[:, top:top + height, left:left + width].unsqueeze(0)
    return torch.nn.functional.interpolate(crop, size=(size, size), mode="bicubic", antialias=True,
                                           align_corners=False)[0]


class TrainAugment(nn.Module):
    """Train augmentation (docs/recipes-and-data.md, "Data preparation in detail") on a uint8 CHW tensor: RandomResizedCrop (bicubic, antialias),
    horizontal flip, RandAugment — every random draw from the caller's generator."""

    def __init__(self, image_size: int, crop_scale: Sequence[float] = (0.5, 1.0), hflip: bool = True,
                 randaug_ops: int = 2, randaug_magnitude: int = 7):
        super().__init__()
        self.image_size = image_size
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self.randaug = RestrictedRandAugment(randaug_ops, randaug_magnitude) if randaug_ops > 0 else None

    def forward(self, image: torch.Tensor, generator: torch.Generator | Uniforms | None = None) -> torch.Tensor:
        draws = _uniforms(generator)
        top, left, h, w = crop_box(image.shape[-2], image.shape[-1], self.crop_scale, draws)
        image = resized_crop(image, top, left, h, w, self.image_size)
        if self.hflip and draws.next() < 0.5:
            image = image.flip(-1)
        return self.randaug(image, draws) if self.randaug is not None else image


class EvalResize(nn.Module):
    """Test-time: resize to the model's input size, bicubic (a no-op when the cache already matches)."""

    def __init__(self, image_size: int):
        super().__init__()
        self.image_size = image_size

    def forward(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if tuple(image.shape[-2:]) == (self.image_size, self.image_size):
            return image
        return F.resize(image, [self.image_size, self.image_size], interpolation=InterpolationMode.BICUBIC,
                        antialias=True)


def train_transform(image_size: int, crop_scale: Sequence[float] = (0.5, 1.0), hflip: bool = True,
                    randaug_ops: int = 2, randaug_magnitude: int = 7) -> TrainAugment:
    return TrainAugment(image_size, crop_scale, hflip, randaug_ops, randaug_magnitude)


def eval_transform(image_size: int) -> EvalResize:
    return EvalResize(image_size)


@functools.lru_cache(maxsize=8)
def _scale_shift(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """[1,3,1,1] scale and shift with x*scale + shift == (x/255 - mean)/std, made once per device:
    building them per batch from Python lists is a blocking host-to-GPU copy every step."""
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    return (1 / (255.0 * std_t)).to(device), (-mean_t / std_t).to(device)


def normalize_images(images: torch.Tensor, device: torch.device | str | None = None,
                     mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD) -> torch.Tensor:
    """uint8 [B,3,S,S] -> float32 normalised by ``mean``/``std`` (the model config's ``image_mean``/
    ``image_std``, CLIP's by default) on ``device`` (non-blocking copy from pinned memory)."""
    images = images.to(device or images.device, non_blocking=True)
    scale, shift = _scale_shift(images.device, tuple(mean), tuple(std))
    # (x/255 - mean)/std as one in-place multiply-add on the fresh float copy (5x faster on CPU)
    return images.float().mul_(scale).add_(shift)


def image_stats(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the model's images are normalised with (its config's; CLIP's for a model without one)."""
    cfg = getattr(model, "cfg", None)
    return (tuple(cfg.image_mean), tuple(cfg.image_std)) if cfg is not None else (CLIP_MEAN, CLIP_STD)
