"""Every measurement of reports/bench.json, in order: ``run_benchmarks``.

The keys are the same on every run: a row not measured (``--quick``, ``--skip-paper``, no GPU, no
``--compile``) is written as ``{"skipped": why}`` under its usual key, so the report's shape never changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from pir.config import ModelConfig
from pir_tools.bench.baselines import baselines_benchmark
from pir_tools.bench.clip import CLIP_PRESET, clip_benchmarks
from pir_tools.bench.concurrent_train import concurrent_train_benchmark
from pir_tools.bench.dataset import make_bench_dataset
from pir_tools.bench.embed import embed_benchmark
from pir_tools.bench.gpu import gpu_benchmark
from pir_tools.bench.loader import LOADER_CASES, loader_benchmark
from pir_tools.bench.machine import machine_info, matmul_gflops
from pir_tools.bench.near_duplicates import near_duplicates_benchmark
from pir_tools.bench.official import official_style_benchmark
from pir_tools.bench.onnx import onnx_rows
from pir_tools.bench.options import BenchOptions, preset_model, sizes_for, skipped
from pir_tools.bench.retrieval import benchmark_retrieval_metrics, protocols_benchmark
from pir_tools.bench.search import search_benchmark
from pir_tools.bench.steps import StepCase, train_step_benchmark

Log = Callable[[str], None]
# The CPU train-step sections and embed: one model per preset serves them all.
MODEL_SECTIONS = ("train_cpu", "train_cpu_bf16", "train_cpu_compiled", "embed")


def run_benchmarks(options: BenchOptions, workdir: Path, log: Log = print,
                   root: Path | None = None) -> dict[str, Any]:
    """Every measurement of reports/bench.json; ``workdir`` holds the temporary datasets and files,
    ``root`` is the project whose stage scripts the concurrency row runs."""
    sizes = sizes_for(options)
    cpu = torch.device("cpu")
    want_cuda = options.device in ("auto", "cuda") and torch.cuda.is_available()
    gpu = torch.device("cuda") if want_cuda else None
    report: dict[str, Any] = {"machine": machine_info(gpu or cpu), "options": dataclasses.asdict(options)}

    log("matmul peak")
    peak = matmul_gflops(cpu, sizes["matmul"])
    report["matmul_fp32_gflops"] = {"cpu": peak, "gpu": matmul_gflops(gpu, 4096) if gpu else None}
    report["loader"] = _loader_rows(options, sizes, workdir, log)
    report.update(_model_rows(options, sizes, workdir, peak, log))

    log("official_style paper")
    report["official_style"] = {"paper": skipped("--skip-paper") if options.skip_paper else official_style_benchmark(
        sizes["paper_batch"], sizes["official_rounds"], sizes["warmup"], sizes["steps"], options.seed)}
    report["train_gpu_bf16"] = {"paper": skipped("no CUDA device") if gpu is None else
                                gpu_benchmark(options, sizes, gpu, report["matmul_fp32_gflops"]["gpu"])}
    clip_rows = ({"train_cpu": skipped("--skip-paper"), "train_gpu_bf16": skipped("--skip-paper")}
                 if options.skip_paper else
                 clip_benchmarks(options, sizes, peak, gpu, report["matmul_fp32_gflops"]["gpu"], log))
    for section, row in clip_rows.items():
        report[section][CLIP_PRESET] = row

    report.update(_project_rows(options, workdir, root, log))
    report.update(_library_rows(options, sizes, workdir, log))
    return report


def _loader_rows(options: BenchOptions, sizes: dict[str, int], workdir: Path, log: Log) -> dict[str, Any]:
    rows = {}
    for case in LOADER_CASES:
        if case.name == "paper" and options.skip_paper:
            rows[case.name] = skipped("--skip-paper")
            continue
        log(f"loader {case.name}")
        rows[case.name] = loader_benchmark(case, workdir, sizes["loader_images"], sizes["loader_batch"],
                                           sizes["loader_batches"], sizes["loader_repeats"])
    return rows


def _model_rows(options: BenchOptions, sizes: dict[str, int], workdir: Path, peak: float,
                log: Log) -> dict[str, dict[str, Any]]:
    """The MODEL_SECTIONS of each preset: the preset's model is built once and serves them all."""
    rows: dict[str, dict[str, Any]] = {section: {} for section in MODEL_SECTIONS}
    cpu = torch.device("cpu")
    prepared, tokenizer = make_bench_dataset(workdir / "prepared_embed", sizes["embed_images"], 128, options.seed)
    for preset in ("tiny", "paper"):
        if preset == "paper" and options.skip_paper:
            for section in MODEL_SECTIONS:
                rows[section][preset] = skipped("--skip-paper")
            continue
        log(f"model {preset}")
        model, cfg = preset_model(preset, cpu, options.seed)
        for section, key, case in _cpu_step_cases(preset, cfg, sizes, options):
            log(f"{section} {key}")
            if case is None:
                rows[section][key] = skipped("pass --compile")
                continue
            row = train_step_benchmark(model, cfg, case, cpu, options.seed)
            row["fraction_of_matmul_peak"] = row["achieved_gflops"] / peak
            rows[section][key] = row
        log(f"embed {preset}")
        rows["embed"][preset] = embed_benchmark(model, cfg, prepared, tokenizer, sizes["embed_images"], 32, cpu)
        del model                # before the next preset's model is built
    return rows


def _cpu_step_cases(preset: str, cfg: ModelConfig, sizes: dict[str, int],
                    options: BenchOptions) -> Iterator[tuple[str, str, StepCase | None]]:
    """(section, key, case) of every CPU train-step measurement of a preset; case None = skipped.

    Captions have a typical RSITMD batch's lengths (typical_lengths). The paper preset is also
    timed without text folding (``paper_unfolded``: the padded batch, as before folding) and at
    the worst case, every caption at max_tokens (``paper_max_tokens``).
    """
    batch = sizes["tiny_batch" if preset == "tiny" else "paper_batch"]
    case = StepCase(preset, preset, batch, "fp32", sizes["warmup"], sizes["steps"])
    yield "train_cpu", preset, case
    if preset == "paper":
        yield "train_cpu", "paper_unfolded", dataclasses.replace(case, name="paper_unfolded", fold_text=False)
        yield "train_cpu", "paper_max_tokens", dataclasses.replace(case, name="paper_max_tokens", captions="max")
    yield "train_cpu_bf16", preset, dataclasses.replace(case, precision="bf16")
    yield "train_cpu_compiled", preset, dataclasses.replace(case, compile=True) if options.compile else None


def _project_rows(options: BenchOptions, workdir: Path, root: Path | None, log: Log) -> dict[str, Any]:
    """The rows that run the project's own commands and stages (minutes each): concurrent_train,
    baselines, onnx."""
    rows: dict[str, Any] = {}
    if options.quick or root is None:
        rows["concurrent_train"] = {"tiny": skipped("--quick" if options.quick else "no project root")}
    else:
        log("concurrent_train tiny (two training stages side by side)")
        rows["concurrent_train"] = {"tiny": concurrent_train_benchmark(root, workdir / "concurrent")}
    if options.quick or options.skip_paper or root is None:
        rows["baselines"] = skipped("--quick" if options.quick else "--skip-paper" if options.skip_paper
                                    else "no project root")
    else:
        log("baselines (pir baselines end to end: one ViT-B-32 file on the built-in data)")
        rows["baselines"] = baselines_benchmark(root, workdir / "baselines", options.seed)
    # ONNX: the cpu recipe's preset here (~20 s); the paper preset's row takes ~1.5 min: `pir bench --only onnx`
    paper_onnx = "--skip-paper" if options.skip_paper else "about 1.5 min: pir bench --only onnx"
    rows["onnx"] = ({"tiny": skipped("--quick"), "paper": skipped("--quick")} if options.quick else
                    onnx_rows(("tiny",), workdir / "onnx", seed=options.seed, skipped={"paper": paper_onnx}, log=log))
    return rows


def _library_rows(options: BenchOptions, sizes: dict[str, int], workdir: Path, log: Log) -> dict[str, Any]:
    """The evaluation, audit and search library code on RSICD-sized inputs."""
    rows: dict[str, Any] = {}
    log("retrieval_metrics")
    images = sizes["metric_images"]
    rows["retrieval_metrics"] = benchmark_retrieval_metrics(images, images * 5, options.seed,
                                                            repeats=sizes["metric_repeats"])
    log("evaluation_protocols (itm, dedup, pairwise; bootstrap interval)")
    rows["evaluation_protocols"] = protocols_benchmark(images, options.seed, sizes["metric_repeats"])
    log(f"near_duplicates (leakage audit, {sizes['audit_images']} images, all pairs)")
    rows["near_duplicates"] = near_duplicates_benchmark(sizes["audit_images"], sizes["audit_hashed"], options.seed)
    log("search (pir index throughput, text query latency, the approximate index)")
    rows["search"] = search_benchmark(workdir / "search", sizes["index_images"], sizes["search_vectors"],
                                      sizes["search_queries"], options.seed, ann_vectors=sizes["ann_vectors"],
                                      ann_queries=sizes["ann_queries"])
    return rows
