"""Where and how a process computes: device choice, autocast precision, CPU malloc tuning.

One home for what the trainer, evaluation, the scene prior and the bench all need, so none of
them imports another's package for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import platform

import numpy as np
import torch

from pir.config import effective_precision


def resolve_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a GPU is a clear error."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is visible")
    if preference not in ("cpu", "cuda"):
        raise ValueError(f"train.device must be auto, cpu or cuda, got {preference!r}")
    return torch.device(preference)


def precision_context(device: torch.device | str, precision: str, cpu_bf16: bool = False):
    """bf16 autocast on CUDA when ``precision == "bf16"``; on CPU only if ``cpu_bf16`` asks for it."""
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be bf16 or fp32, got {precision!r}")
    device_type = torch.device(device).type
    if effective_precision(precision, device_type, cpu_bf16) == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's model name (its instruction set picks the kernels, and so the last bits)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def numerics_record(device: torch.device | str = "cpu") -> dict:
    """What fixes a stage's numbers beside its params: intra-op threads, the software that computes, the
    processor, and the GPU and CUDA version where one computes. Each stage writes it into its report
    under "runtime" and tags its MLflow run with it (docs/workflows.md, "Reproducibility contract")."""
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu": cpu_model(), "device": device.type,
            "gpu": torch.cuda.get_device_name(device) if on_gpu else None,
            "cuda": torch.version.cuda if on_gpu else None}


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.lru_cache(maxsize=1)
def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of unmapping it; True if applied.

    glibc serves every allocation above 32 MiB (a batch of 64 float images at 224 px is
    38 MiB) with a fresh mmap and unmaps it on free, so each batch pays a page fault per
    4 KiB on first touch: 16 ms of a 20 ms normalisation. Served from the heap and kept
    there, the same work takes 4 ms. The cost: the process's resident memory stays at its
    peak. A no-op (False) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))
