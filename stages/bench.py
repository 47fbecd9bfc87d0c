"""Benchmark stage: measure the data path, train step, embedding and metrics -> reports/bench.json.

    python stages/bench.py [--quick] [--skip-paper] [--compile] [--device auto|cpu|cuda] [--out PATH]

Not part of the DVC pipeline (timings are not reproducible outputs); same keys every run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common

from pir import device, files
from pir.bench import BenchOptions, run_benchmarks, table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; numbers not meaningful)")
    parser.add_argument("--skip-paper", action="store_true", help="skip the paper-preset measurements")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd CPU train steps (minutes of compiling for the paper preset)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=common.PATHS.reports / "bench.json")
    args = parser.parse_args(argv)
    # as the train and evaluate stages run: freed batches stay in the heap (see pir.device)
    tuned = device.retain_freed_memory()
    options = BenchOptions(quick=args.quick, skip_paper=args.skip_paper, compile=args.compile, device=args.device,
                           seed=common.configs().seed)
    with tempfile.TemporaryDirectory(prefix="pir-bench-") as workdir:
        report = run_benchmarks(options, Path(workdir), log=lambda msg: print(f"[bench] {msg}", flush=True))
    report["machine"]["malloc_retains_freed_memory"] = tuned
    files.write_json(args.out, report)
    print(table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
