"""``pir bench``: the benchmark -> reports/bench.json and a table.

Not part of the DVC pipeline (timings are not reproducible outputs); same keys every run. The package's
doc (pir_tools.bench) says which module measures which section.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from pir_tools.bench.options import BenchOptions, sizes_for

ONLY = ("clip", "search", "baselines", "onnx")


def _log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def parse_args(argv: list[str] | None, reports: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pir bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; numbers not meaningful)")
    parser.add_argument("--skip-paper", action="store_true", help="skip the paper-preset measurements")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd CPU train steps (minutes of compiling for the paper preset)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=reports / "bench.json")
    parser.add_argument("--only", choices=ONLY, default=None,
                        help="measure only these rows and update them in --out (clip: train_cpu/train_gpu_bf16 "
                             "clip-b32; search: the search section; baselines: pir baselines end to end; onnx: "
                             "onnxruntime against torch images/s and the export, tiny and paper presets; with "
                             "--quick tiny alone at batch 4, a smoke test)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, root: Path | None = None) -> None:
    """``pir bench [--quick] [--skip-paper] [--compile] [--device auto|cpu|cuda] [--out PATH] [--only ...]``."""
    from pir import files
    from pir.device import retain_freed_memory
    from pir.pipeline.params import PipelineConfig, load_params
    from pir.pipeline.paths import Paths
    from pir_tools.project import project_root

    root = root or project_root()
    args = parse_args(argv, Paths(root).reports)
    try:   # only the seed is read: the bench does not need the rest of params.yaml to be runnable
        seed = PipelineConfig.from_params(load_params(root / "params.yaml")).seed
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    tuned = retain_freed_memory()      # as the train and evaluate stages run (pir.device)
    options = BenchOptions(quick=args.quick, skip_paper=args.skip_paper, compile=args.compile, device=args.device,
                           seed=seed)
    if args.only == "clip":
        files.write_json(args.out, _update_clip_rows(_read(args.out), options))
        print(f"updated {args.out}")
    elif args.only:
        section = _only_section(args.only, options, root)
        report = _read(args.out)
        report[args.only] = section
        files.write_json(args.out, report)
        print(json.dumps(section, indent=2))
        print(f"updated the {args.only} section of {args.out}")
    else:
        _full_run(options, root, args.out, tuned)


def _read(out: Path) -> dict[str, Any]:
    """The report being updated by ``--only``: its other sections stay as they are."""
    return json.loads(out.read_text()) if out.is_file() else {}


def _update_clip_rows(report: dict[str, Any], options: BenchOptions) -> dict[str, Any]:
    from pir_tools.bench.clip import CLIP_PRESET, clip_benchmarks
    from pir_tools.bench.machine import matmul_gflops

    gpu = torch.device("cuda") if options.device in ("auto", "cuda") and torch.cuda.is_available() else None
    sizes = sizes_for(options)
    rows = clip_benchmarks(options, sizes, matmul_gflops(torch.device("cpu"), sizes["matmul"]), gpu,
                           matmul_gflops(gpu, 4096) if gpu else None, log=_log)
    for section, row in rows.items():
        report.setdefault(section, {})[CLIP_PRESET] = row
        print(f"{section} {CLIP_PRESET}: " + json.dumps(row))
    return report


def _only_section(only: str, options: BenchOptions, root: Path) -> dict[str, Any]:
    """The ``baselines``, ``onnx`` or ``search`` section, measured on its own."""
    sizes = sizes_for(options)
    seed = options.seed
    with tempfile.TemporaryDirectory(prefix="pir-bench-") as workdir:
        if only == "baselines":
            from pir_tools.bench.baselines import baselines_benchmark
            return baselines_benchmark(root, Path(workdir) / "baselines", seed)
        if only == "onnx":
            from pir_tools.bench.onnx import onnx_rows
            presets = ("tiny",) if options.quick or options.skip_paper else ("tiny", "paper")
            return onnx_rows(presets, Path(workdir) / "onnx", 4 if options.quick else 32, 1 if options.quick else 5,
                             seed, log=_log)
        from pir_tools.bench.search import search_benchmark
        return search_benchmark(Path(workdir), sizes["index_images"], sizes["search_vectors"],
                                sizes["search_queries"], seed, ann_vectors=sizes["ann_vectors"],
                                ann_queries=sizes["ann_queries"])


def _full_run(options: BenchOptions, root: Path, out: Path, tuned: bool) -> None:
    from pir import files
    from pir_tools.bench.report import run_benchmarks
    from pir_tools.bench.table import table

    with tempfile.TemporaryDirectory(prefix="pir-bench-") as workdir:
        report = run_benchmarks(options, Path(workdir), log=_log, root=root)
    report["machine"]["malloc_retains_freed_memory"] = tuned
    files.write_json(out, report)
    print(table(report))
    print(f"wrote {out}")
