"""The test-time resize of pir.data.transforms.eval_transform in numpy alone, for runtimes without torch
(pir.search.onnx_encoder, ``pir index --onnx``).

eval_transform resizes a uint8 CHW image to S x S with torchvision's ``F.resize(BICUBIC, antialias=True)``,
which on a CPU hands uint8 images to torch's own uint8 kernel (``_upsample_bicubic2d_aa``: torch's port of
Pillow-SIMD's resampler). That kernel is integer arithmetic, and this module repeats it step for step:

- per axis, Keys' cubic filter (a = -0.5) stretched by the scale when shrinking (the antialias), its taps
  computed in float64 as torch does and normalised to sum 1;
- the taps turned into int16 with the precision torch picks (the most bits that keep the largest tap
  below 2**15), rounded half away from zero;
- the width pass first (skipped when the width is already S), then the height pass, each summing
  pixel x tap in int32 from 2**(precision - 1), shifting right by the precision and clipping to 0..255,
  so the intermediate image is uint8 as in torch.

So the output is byte for byte torch's on x86 CPUs (its AVX2 kernel and its generic one compute the same
integers; tests/search/test_onnx_index.py checks sizes up, down and non-square). What is left: torch on a
GPU, or a torch whose kernel changes, may differ by one grey level in a few pixels; Pillow's own BICUBIC
resize (int32 taps, 22 bits) differs from both by one level in ~0.2-20 % of pixels (measured), which is
why Pillow is not used here.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_A = -0.5   # Keys' cubic convolution parameter: torch's and Pillow's bicubic


def _cubic(x: np.ndarray) -> np.ndarray:
    """torch's HelperInterpCubic::aa_filter, the same float64 expression (order of operations included)."""
    x = np.abs(x)
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    far = ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=64)
def taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(source index int64 [size_out, K], int16-valued taps int32 [size_out, K], precision bits) of one axis:
    output i = (sum_k in[index[i, k]] * taps[i, k] + 2**(precision-1)) >> precision, clipped to 0..255."""
    scale = size_in / size_out
    support = 2.0 * scale if scale >= 1.0 else 2.0          # interp_size 4 / 2, stretched when shrinking
    width = int(math.ceil(support)) * 2 + 1
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    center = scale * (np.arange(size_out) + 0.5)
    low = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)      # C++ casts truncate
    high = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), size_in)
    k = np.arange(width)
    valid = k[None, :] < (high - low)[:, None]
    weights = np.where(valid, _cubic(((k[None, :] + low[:, None]) - center[:, None] + 0.5) * invscale), 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(total != 0, weights / np.where(total != 0, total, 1.0), weights)
    largest = weights.max()
    precision = 0
    while precision < 22 and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = weights * (1 << precision)
    ints = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32)
    index = np.minimum(low[:, None] + k[None, :], size_in - 1)   # padding taps are 0: any valid index
    return index, ints, precision


def _resize_axis(image: np.ndarray, axis: int, size: int) -> np.ndarray:
    index, weights, precision = taps(image.shape[axis], size)
    shape = list(image.shape)
    shape[axis] = size
    # int32 as torch's kernel: |sum| <= 255 * sum|taps| < 2**31 at any precision it picks
    acc = np.full(shape, 1 << (precision - 1), np.int32)
    view = [1] * image.ndim
    view[axis] = -1
    for k in range(weights.shape[1]):    # one vectorised pass per tap: memory stays one output image
        column = weights[:, k]
        if column.any():
            acc += np.take(image, index[:, k], axis=axis).astype(np.int32) * column.reshape(view)
    return np.clip(acc >> precision, 0, 255).astype(np.uint8)


def eval_resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [C, H, W] -> uint8 [C, size, size]: eval_transform(size) without torch (the module doc)."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 [C, H, W] image, got {image.dtype} {list(image.shape)}")
    if image.shape[2] != size:
        image = _resize_axis(image, 2, size)
    if image.shape[1] != size:
        image = _resize_axis(image, 1, size)
    return image
