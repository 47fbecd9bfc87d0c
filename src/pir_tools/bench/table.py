"""The human-readable summary ``pir bench`` prints after writing reports/bench.json: one line a number."""

from __future__ import annotations

from typing import Any, Iterator

from pir_tools.bench.onnx import table_rows as onnx_table_rows

TRAIN_SECTIONS = ("train_cpu", "train_cpu_bf16", "train_cpu_compiled", "train_gpu_bf16")


class _Lines:
    """The table being written: ``add`` one measurement; ``measured`` a section's rows, skipped ones
    written as such (so that a partial report still prints, and says what it left out)."""

    def __init__(self) -> None:
        self.lines = [f"{'measurement':<34} {'value':>14}  unit"]

    def add(self, name: str, value: Any, unit: str) -> None:
        text = f"{value:14.2f}" if isinstance(value, (int, float)) else f"{str(value):>14}"
        self.lines.append(f"{name:<34} {text}  {unit}")

    def measured(self, report: dict[str, Any], section: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, row in report[section].items():
            if "skipped" in row:
                self.add(f"{section} {name}", "skipped", row["skipped"])
            else:
                yield name, row


def table(report: dict[str, Any]) -> str:
    """The human-readable summary printed by ``pir bench``."""
    out = _Lines()
    out.add("matmul fp32 (cpu)", report["matmul_fp32_gflops"]["cpu"], "GFLOP/s")
    for name, row in out.measured(report, "loader"):
        out.add(f"loader {name} ours", row["ours_samples_per_s"], "samples/s")
        out.add(f"loader {name} PIL baseline", row["pil_samples_per_s"], "samples/s")
        out.add(f"loader {name} speedup", row["speedup"], f"x (target >= {row['target_speedup']:g})")
    _train_steps(out, report)
    for name, row in out.measured(report, "official_style"):
        out.add(f"official-style {name} (batch {row['batch_size']}, {row['tokens']} tok)",
                row["official_style_samples_per_s"], "samples/s (reference: see report)")
        out.add("  ours, same rounds", row["ours_samples_per_s"], "samples/s")
        out.add("  speedup", row["speedup"], f"x (target >= {row['target_speedup']:g})")
    for name, row in out.measured(report, "embed"):
        out.add(f"embed {name} images", row["images_per_s"], "images/s")
        out.add(f"embed {name} texts", row["texts_per_s"], "texts/s")
    _concurrent_train(out, report)
    _evaluation(out, report)
    _search(out, report.get("search"))
    baselines = report.get("baselines")
    if baselines and "skipped" not in baselines:
        out.add("pir baselines, one ViT-B-32 file", baselines["wall_s"],
                f"s end to end (target <= {baselines['target_s']:g} s)")
        out.add("  scene prior trained", str(baselines["scene_prior_trained"]), "(CLIP-CL takes none)")
    onnx_table_rows(report, out.add)
    return "\n".join(out.lines)


def _train_steps(out: _Lines, report: dict[str, Any]) -> None:
    for section in TRAIN_SECTIONS:
        for name, row in out.measured(report, section):
            out.add(f"{section} {name} (batch {row['batch_size']}, {row['tokens']} tok)", row["samples_per_s"],
                    f"samples/s (captions average {row['mean_tokens']:.1f} tokens; "
                    f"{'folded' if row['fold_text'] else 'padded'})")
            out.add("  median step", row["median_step_s"], "s")
            if "compile_s" in row:
                out.add("  compile (first step)", row["compile_s"], "s")
            out.add("  peak memory", row["peak_memory_mb"], f"MiB ({row['memory_measure']})")
            out.add("  achieved", row["achieved_gflops"], "GFLOP/s")
            if "fraction_of_matmul_peak" in row:
                out.add("  of matmul peak", 100 * row["fraction_of_matmul_peak"], "%")
            if "rsitmd_50_epochs_hours" in row:
                out.add("  50 RSITMD epochs", row["rsitmd_50_epochs_hours"], "h (estimate)")


def _concurrent_train(out: _Lines, report: dict[str, Any]) -> None:
    for name, row in out.measured(report, "concurrent_train"):
        out.add(f"two {name} train stages back to back", row["back_to_back_s"], f"s ({row['cores']} cores)")
        out.add(f"  side by side, {row['threads']} threads each", row["side_by_side_s"],
                f"s ({row['ratio']:.2f}x; target <= {row['target_ratio']:g}x; same bytes: {row['identical']})")
        if "side_by_side_spinning_s" in row:
            out.add("  side by side, spinning OpenMP threads", row["side_by_side_spinning_s"],
                    f"s ({row['ratio_spinning']:.2f}x)")


def _evaluation(out: _Lines, report: dict[str, Any]) -> None:
    """retrieval_metrics, and the protocols and audit rows where the report has them."""
    metrics = report["retrieval_metrics"]
    out.add(f"retrieval_metrics {metrics['n_images']}x{metrics['n_texts']}", metrics["vectorised_s"] * 1000, "ms")
    out.add("  per-query argsort loop", metrics["loop_s"] * 1000, "ms")
    out.add("  speedup", metrics["speedup"], f"x (identical: {metrics['identical']})")
    protocols = report.get("evaluation_protocols")
    if protocols:
        out.add(f"all three protocols {protocols['n_images']}x{protocols['n_texts']}",
                protocols["protocols_s"] * 1000, "ms")
        out.add(f"  bootstrap interval, {protocols['resamples']} resamples", protocols["bootstrap_s"] * 1000,
                f"ms (target <= {protocols['target_bootstrap_s'] * 1000:g} ms)")
    audit = report.get("near_duplicates")
    if audit:
        out.add(f"near-duplicate audit, {audit['n_images']} images", audit["all_pairs_s"],
                f"s for {audit['pairs']} pairs (target <= {audit['target_all_pairs_s']:g} s)")
        out.add("  perceptual hash, 256 px images", audit["hash_images_per_s"], "images/s")


def _search(out: _Lines, search: dict[str, Any] | None) -> None:
    if not search:
        return
    out.add(f"pir index {search['preset']} ({search['index_images']} x {search['tile_px']} px)",
            search["index_images_per_s"], "images/s (cpu)")
    out.add("  rerun, nothing changed", search["rerun_s"], f"s ({search['rerun_embedded']} embedded)")
    out.add(f"text query, {search['vectors']:,} x {search['dim']}", search["query_median_ms"],
            f"ms median (target < {search['target_query_ms']:g} ms)")
    out.add("  of which encoding / search", search["encode_median_ms"],
            f"ms / {search['search_median_ms']:.2f} ms (load average {search['load_average_1min']:.1f})")
    ann = search.get("ann")
    if not ann:
        return
    p, t = ann["params"], ann["targets"]
    out.add(f"ANN query, {ann['vectors']:,} x {ann['dim']}", ann["query_ms"],
            f"ms median, re-ranking included (target <= {t['query_ms']:g} ms; "
            f"load average {ann['load_average_1min']:.1f})")
    out.add("  recall@10 against exact", ann["recall_at_10"], f"(target >= {t['recall_at_10']:g})")
    out.add("  index memory", ann["bytes_per_vector"], f"bytes/vector (target <= {t['bytes_per_vector']:g}; "
            f"+ {ann['float16_bytes_per_vector']} of float16 on disk)")
    out.add("  build (train + add)", ann["build_s"], f"s, {ann['kind']} nlist {p['nlist']}, PQ {p['m']}x{p['nbits']}, "
            f"nprobe {p['nprobe']}, rerank {p['rerank']} ({ann['threads']} threads)")
