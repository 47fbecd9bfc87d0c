"""The ``machine`` and ``matmul_fp32_gflops`` sections: what ran the bench, and its practical peak."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device)}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def sync(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so that a timer around them measures the work, not the launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5,
                  dtype: torch.dtype = torch.float32) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size``-square matmul: the machine's practical peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
