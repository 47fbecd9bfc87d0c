"""Smoke test of the benchmark harness: tiny sizes, every section present, every number positive.

Timings are not asserted (they depend on the machine); shapes of the report and sanity are.
"""

from __future__ import annotations

import math

import pytest
import torch

from pir import device
from pir_tools.bench import clip, steps
from pir_tools.bench.memory import PeakMemory
from pir_tools.bench.official import official_style_benchmark, official_style_model
from pir_tools.bench.options import BenchOptions, sizes_for
from pir_tools.bench.report import run_benchmarks
from pir_tools.bench.table import table


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    options = BenchOptions(quick=True, skip_paper=True, device="cpu")
    return run_benchmarks(options, tmp_path_factory.mktemp("bench"), log=lambda _: None)


SECTIONS = ("machine", "options", "matmul_fp32_gflops", "loader", "train_cpu", "train_cpu_bf16",
            "train_cpu_compiled", "official_style", "train_gpu_bf16", "embed", "retrieval_metrics", "concurrent_train",
            "evaluation_protocols", "near_duplicates", "search", "baselines", "onnx")


def test_report_has_every_section_and_preset(report):
    assert set(report) == set(SECTIONS)
    for section in ("loader", "train_cpu", "train_cpu_bf16", "train_cpu_compiled", "embed"):
        assert set(report[section]) == {"tiny", "paper"} | ({"clip-b32"} if section == "train_cpu" else set())
        assert report[section]["paper"] == {"skipped": "--skip-paper"}
    assert report["train_cpu_compiled"]["tiny"] == {"skipped": "pass --compile"}
    assert report["baselines"] == {"skipped": "--quick"}   # minutes: `pir bench --only baselines`
    assert report["onnx"] == {"tiny": {"skipped": "--quick"}, "paper": {"skipped": "--quick"}}   # --only onnx
    assert report["official_style"] == {"paper": {"skipped": "--skip-paper"}}
    assert report["train_gpu_bf16"] == {"paper": {"skipped": "no CUDA device"}, "clip-b32": {"skipped": "--skip-paper"}}
    assert report["train_cpu"]["clip-b32"] == {"skipped": "--skip-paper"}
    assert report["concurrent_train"] == {"tiny": {"skipped": "--quick"}}
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["device"] == "cpu"
    protocols = report["evaluation_protocols"]
    assert protocols["resamples"] == 1000 and 0 < protocols["bootstrap_s"] and 0 < protocols["protocols_s"]
    audit = report["near_duplicates"]
    assert audit["pairs"] == audit["n_images"] * (audit["n_images"] - 1) // 2 and audit["all_pairs_s"] > 0
    assert audit["pairs_found"] == 0 and audit["hash_images_per_s"] > 0   # random 256-bit hashes are ~128 apart


def test_measurements_are_positive_and_finite(report):
    loader = report["loader"]["tiny"]
    assert loader["ours_samples_per_s"] > 0 and loader["pil_samples_per_s"] > 0
    assert loader["speedup"] == pytest.approx(loader["ours_samples_per_s"] / loader["pil_samples_per_s"])
    for section in ("train_cpu", "train_cpu_bf16"):
        row = report[section]["tiny"]
        assert row["batch_size"] == 4 and row["precision"] == ("fp32" if section == "train_cpu" else "bf16")
        assert row["tokens"] == steps.typical_lengths(4, 47).max() and row["fold_text"] is True
        for key in ("median_step_s", "samples_per_s", "flops_per_sample", "achieved_gflops"):
            assert math.isfinite(row[key]) and row[key] > 0, (section, key)
        assert row["peak_memory_mb"] > 0 and row["rss_growth_mb"] >= 0
    embed = report["embed"]["tiny"]
    assert embed["images_per_s"] > 0 and embed["texts_per_s"] > 0 and embed["texts"] == 5 * embed["images"]
    assert report["matmul_fp32_gflops"]["cpu"] > 0
    assert report["retrieval_metrics"]["identical"] is True
    search = report["search"]
    assert search["index_images_per_s"] > 0 and search["rerun_embedded"] == 0 and search["vectors"] == 1000
    assert 0 < search["search_median_ms"] <= search["query_median_ms"]
    ann = search["ann"]   # 300 vectors here; the real run measures 1,000,000
    assert ann["vectors"] == 300 and 0 <= ann["recall_at_10"] <= 1 and ann["query_ms"] > 0
    assert ann["bytes_per_vector"] > 0 and ann["build_s"] > 0 and ann["kind"] == "IVF-PQ"
    assert set(ann["targets"]) == {"recall_at_10", "query_ms", "bytes_per_vector"}


def test_table_lists_every_measurement(report):
    text = table(report)
    for label in ("loader tiny speedup", "train_cpu tiny", "train_cpu_bf16 tiny", "embed tiny images",
                  "retrieval_metrics", "train_cpu paper", "near-duplicate audit", "ANN query", "recall@10"):
        assert label in text


def test_flops_per_sample_scale_with_the_model():
    from pir.config import model_config
    small = model_config("tiny")
    wider = model_config("tiny", swin_embed_dim=64, swin_heads=(2, 4, 8))
    counts = []
    for cfg in (small, wider):
        torch.manual_seed(0)
        from pir.models import create_model
        counts.append(steps.flops_per_sample(create_model(cfg), cfg, torch.device("cpu")))
    assert 0 < counts[0] < counts[1]


def test_retain_freed_memory_is_idempotent():
    assert device.retain_freed_memory() == device.retain_freed_memory()


def test_typical_lengths_follow_rsitmd_and_cap_at_max_tokens():
    lengths = steps.typical_lengths(8, 47)
    assert lengths.tolist() == sorted(lengths.tolist(), reverse=True)
    assert lengths.max() == 20 and 12 < lengths.float().mean() < 14      # measured on rsitmd_train.json
    assert steps.typical_lengths(128, 47).max() == 27
    assert steps.typical_lengths(128, 16).max() == 16


def test_random_batch_pads_to_the_longest_caption():
    from pir.config import model_config
    cfg = model_config("paper")
    batch = steps.random_batch(cfg, 3, lengths=torch.tensor([9, 21, 5]))
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, 21)
    assert batch["attention_mask"].sum(1).tolist() == [9, 21, 5]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()
    assert steps.random_batch(cfg, 2)["attention_mask"].all()            # default: the worst case


def test_flops_grow_with_caption_length():
    from pir.models import create_model
    from pir.config import model_config
    cfg = model_config("tiny")
    torch.manual_seed(0)
    model = create_model(cfg)
    short, long = (steps.flops_per_sample(model, cfg, torch.device("cpu"), lengths=torch.full((2,), t))
                   for t in (12, 40))
    assert 0 < short < long


def test_folding_lowers_the_flops_of_a_ragged_batch():
    from pir.models import create_model
    from pir.config import model_config
    cfg = model_config("tiny")
    torch.manual_seed(0)
    model = create_model(cfg)
    ragged = torch.tensor([40, 30, 12, 8])
    folded = steps.flops_per_sample(model, cfg, torch.device("cpu"), lengths=ragged)
    with steps.model_options(model, fold_text=False):
        padded = steps.flops_per_sample(model, cfg, torch.device("cpu"), lengths=ragged)
    assert model.cfg.fold_text and folded < padded


def test_peak_memory_covers_what_the_block_held():
    memory = PeakMemory(torch.device("cpu"))
    with memory.watch():
        block = torch.ones(64 * 2**20 // 4)                     # 64 MiB, touched
        held_mb = (memory._status_kib("VmRSS") or 0) / 2**10
        del block
    assert memory.peak_mb >= held_mb - 1 and memory.peak_mb > 0 and memory.growth_mb >= 0
    assert memory.measure in ("process peak RSS", "process lifetime peak RSS")


def test_official_style_reference_is_the_same_model_run_the_official_way():
    from pir.data.transforms import normalize_images
    from pir.models import create_model
    from pir.config import model_config
    cfg = model_config("tiny")
    torch.manual_seed(0)
    ours = create_model(cfg)
    torch.manual_seed(0)
    official = official_style_model(cfg)
    assert not official.cfg.text_mask and official.text_encoder.config._attn_implementation == "eager"
    assert not any(m.fused_attn for m in official.vision_encoder.modules() if hasattr(m, "fused_attn"))
    assert not any(p.requires_grad for p in official.scene_prior.parameters())
    assert official.train().scene_prior.training and not ours.train().scene_prior.training
    batch = steps.random_batch(cfg, 4, lengths=torch.full((4,), 9))   # no padding: masks change nothing
    ours.eval(), official.eval()
    with torch.no_grad():
        for encode in ("encode_image", "encode_text"):
            args = (normalize_images(batch["images"]),) if encode == "encode_image" else \
                (batch["input_ids"], batch["attention_mask"])
            torch.testing.assert_close(getattr(official, encode)(*args), getattr(ours, encode)(*args),
                                       atol=1e-5, rtol=0)


def test_official_style_benchmark_runs_both_sides_in_fresh_processes():
    row = official_style_benchmark(batch_size=2, rounds=1, warmup=1, steps=1, preset="tiny")
    assert row["preset"] == "tiny" and row["timed_steps_per_round"] == 1
    assert row["ours_samples_per_s"] > 0 and row["official_style_samples_per_s"] > 0
    assert row["speedup"] == pytest.approx(row["official_style_samples_per_s"] ** -1 * row["ours_samples_per_s"])


def test_clip_rows_time_the_trainers_step_on_clip_towers(monkeypatch):
    """The clip-b32 rows' code path, on the clip-tiny preset (same towers, CPU-test sized)."""
    monkeypatch.setattr(clip, "CLIP_PRESET", "clip-tiny")
    options = BenchOptions(quick=True, skip_paper=False, device="cpu")
    rows = clip.clip_benchmarks(options, sizes_for(options), 1.0, None, None, log=lambda _: None)
    assert rows["train_gpu_bf16"] == {"skipped": "no CUDA device"}
    row = rows["train_cpu"]
    assert row["preset"] == "clip-tiny" and row["fold_text"] is False and row["samples_per_s"] > 0
    assert row["flops_per_sample"] > 0 and row["precision"] == "fp32"
