import numpy as np
import pytest

from pir_tools.experiments import ABLATION, METRIC_KEYS, ablation_figure, experiment_name, markdown_table, set_param_args, summarise


def fake_run(base: float) -> dict[str, float]:
    return {k: base + i for i, k in enumerate(METRIC_KEYS)}


def test_set_param_args_use_hydra_syntax():
    args = set_param_args({"model.use_vir": False, "seed": 3, "train.crop_scale": (0.5, 1.0)})
    assert args == ["-S", "model.use_vir=false", "-S", "seed=3", "-S", "train.crop_scale=[0.5,1.0]"]


def test_ablation_variants_switch_the_paper_components():
    by_name = {v.name: v.overrides for v in ABLATION}
    assert not any(by_name["baseline"].values())
    assert all(by_name["full"].values())
    assert experiment_name("abl", ABLATION[0], 2) == "abl-baseline-s2"


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = summarise({"full": [fake_run(10), fake_run(14)], "baseline": [fake_run(5)]},
                     {"full": [0, 1], "baseline": [0]})
    assert [r.variant.name for r in rows] == ["baseline", "full"]  # table order, not dict order
    full = rows[1]
    assert full.mean["txt_r1"] == pytest.approx(12.0)
    assert full.std["txt_r1"] == pytest.approx(np.std([10, 14], ddof=1))
    assert rows[0].std["r_mean"] == 0.0
    table = markdown_table(rows)
    assert "12.00 ± 2.83" in table and table.count("\n") == 4


def test_figure_is_a_png(tmp_path):
    rows = summarise({"full": [fake_run(10)]}, {"full": [0]})
    ablation_figure(rows, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_table_shows_intervals_and_whether_differences_exceed_the_seed_spread():
    def run(r_mean: float) -> dict:
        return {**fake_run(0), "r_mean": r_mean, "ci95": {"r_mean": [r_mean - 1, r_mean + 1]}}

    rows = summarise({"baseline": [run(30.0), run(30.5), run(29.5)], "vir": [run(35.0), run(35.5), run(34.5)],
                      "lca": [run(30.0), run(34.0), run(26.0)]},
                     {"baseline": [0, 1, 2], "vir": [0, 1, 2], "lca": [0, 1, 2]})
    assert rows[0].r_mean.interval_kind == "t over seeds" and rows[0].r_mean.mean == pytest.approx(30.0)
    table = markdown_table(rows).splitlines()
    assert "mR 95% CI" in table[0] and "Δ mR vs baseline" in table[0]
    vir, lca = (next(line for line in table if line.startswith(f"| + {name}")) for name in ("VIR", "LCA"))
    assert "+5.00 (yes: Welch t-test" in vir and "+0.00 (no: Welch t-test" in lca
    lone = summarise({"baseline": [run(30.0)], "full": [run(31.0)]}, {"baseline": [0], "full": [0]})
    assert "29.00–31.00 (bootstrap)" in markdown_table(lone)
    assert "+1.00 (no: bootstrap intervals overlap)" in markdown_table(lone)
