"""Where and how a run computes: device and precision choices, and the thread count and size
ceilings of every stage process (``RuntimeConfig``)."""

from __future__ import annotations

from dataclasses import dataclass

from pir.config.values import check, coerce

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("bf16", "fp32")
# torch.set_num_threads and OpenMP take any count; no machine has more hardware threads than this.
MAX_THREADS = 4096


def effective_precision(precision: str, device_type: str, cpu_bf16: bool = False) -> str:
    """What a run computes in: bf16 autocast on CUDA, on CPU only when ``cpu_bf16`` asks; else fp32."""
    return "bf16" if precision == "bf16" and (device_type == "cuda" or cpu_bf16) else "fp32"


@dataclass(frozen=True)
class RuntimeConfig:
    """How many threads a stage process computes with: part of what a run computes (pir.threads); and
    ceilings on the params whose size is memory, checked across sections by ``PipelineConfig``."""
    threads: int = 2                # intra-op threads of torch, numpy's BLAS and scikit-learn's OpenMP; fixed,
                                    # whatever else runs (a different count gives different bytes)
    # Ceilings (docs/recipes-and-data.md, "How a run's values are resolved"): a value past one, such as a batch with three zeros
    # too many, ends in one line instead of a machine out of memory. Far above every recipe (the paper's:
    # batch 256, 224 px images, a 256 px cache); raise one to go past it. They never change results.
    max_batch_size: int = 65536     # train.global_batch_size, evaluate.batch_size, scene_prior.batch_size
    max_image_side: int = 2048      # model.image_size, data.cache_res, synthetic.image_size (pixels)
    max_images: int = 100_000       # synthetic.images (RSICD has 10,921)

    def __post_init__(self) -> None:
        for key in ("threads", "max_batch_size", "max_image_side", "max_images"):
            # exact integers also when built directly (RuntimeConfig(threads="4")), as from params
            object.__setattr__(self, key, coerce(getattr(self, key), int, key))
        check(self.threads >= 1, "threads", self.threads,
              "a number >= 1 (fixed: the thread count changes the numbers, so it never follows the machine's load)")
        check(self.threads <= MAX_THREADS, "threads", self.threads, f"at most {MAX_THREADS}")
        for key in ("max_batch_size", "max_image_side", "max_images"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "must be >= 1")
