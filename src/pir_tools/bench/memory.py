"""Peak memory of a timed block (the train-step rows' ``peak_memory_mb`` and ``rss_growth_mb``)."""

from __future__ import annotations

import contextlib
import platform
from typing import Iterator

import torch


class PeakMemory:
    """Peak memory over a block, measured without disturbing the block's timing.

    CUDA: the allocator's peak. CPU on Linux: the kernel's resident-set high-water mark
    (VmHWM), reset at the start of the block through /proc/self/clear_refs; elsewhere the
    process's lifetime peak (ru_maxrss). Both include the model, optimiser and everything
    else alive. ``growth_mb`` is the peak minus the resident set at the start: with freed
    memory retained (pir.device) a later case reuses an earlier one's heap and may grow by ~0.
    (Sampling RSS from a thread every 2 ms instead slowed the timed steps by 5-15 % on 2 cores.)
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = 0.0
        self.growth_mb = 0.0
        self.measure = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"

    @staticmethod
    def _status_kib(field: str) -> int | None:
        try:
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
        except (OSError, StopIteration):
            return None

    def _reset_cpu_peak(self) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")            # 5 = reset the peak resident set size (Linux >= 4.0)
            return self._status_kib("VmHWM") is not None
        except OSError:
            return False

    @contextlib.contextmanager
    def watch(self) -> Iterator["PeakMemory"]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            yield self
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        if self._reset_cpu_peak():
            start = self._status_kib("VmRSS") / 2**10
            yield self
            self.peak_mb = self._status_kib("VmHWM") / 2**10
        else:
            start = self._lifetime_peak_mb()
            yield self
            self.measure = "process lifetime peak RSS"
            self.peak_mb = self._lifetime_peak_mb()
        self.growth_mb = max(0.0, self.peak_mb - start)

    @staticmethod
    def _lifetime_peak_mb() -> float:
        import resource
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # KiB on Linux, bytes on macOS
        return maxrss / 2**20 if platform.system() == "Darwin" else maxrss / 2**10
