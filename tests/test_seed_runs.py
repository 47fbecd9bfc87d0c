"""Seed runs grouped under one MLflow parent per configuration, and the statistics it carries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pir.pipeline import tracking
from pir.evaluation.seeds import difference_beyond_spread, summarise_seeds
from pir.pipeline.seed_runs import (CONFIG_KEY_TAG, NESTED_UNDER, PARENT_TAG, config_key, group_seed_runs, logged_interval,
                           parent_label)


def test_summary_is_mean_std_and_t_interval():
    summary = summarise_seeds([30.0, 32.0, 34.0])
    assert summary.mean == 32.0 and summary.std == 2.0 and summary.interval_kind == "t over seeds"
    half = stats.t.ppf(0.975, 2) * 2.0 / np.sqrt(3)          # 4.97: three seeds give a wide interval
    assert summary.interval == pytest.approx((32.0 - half, 32.0 + half))


def test_a_lone_seed_carries_its_bootstrap_interval():
    assert summarise_seeds([30.0], bootstrap=(28.0, 31.5)).interval == (28.0, 31.5)
    assert summarise_seeds([30.0]).interval_kind == "none"


def test_difference_beyond_the_seed_spread():
    delta, beyond, how = difference_beyond_spread([30.0, 30.5, 29.5], [35.0, 35.5, 34.5])
    assert delta == pytest.approx(5.0) and beyond is True and how.startswith("Welch")
    delta, beyond, _ = difference_beyond_spread([30.0, 34.0, 26.0], [31.0, 35.0, 27.0])
    assert delta == pytest.approx(1.0) and beyond is False          # 1 point inside a 4-point spread
    assert difference_beyond_spread([30.0], [31.0], (29, 31), (30, 32))[1] is False
    assert difference_beyond_spread([30.0], [35.0], (29, 31), (34, 36))[1] is True
    assert difference_beyond_spread([30.0], [35.0])[1] is None


def test_config_key_ignores_only_the_seed():
    params = {"seed": 0, "model": {"use_vir": True}}
    assert config_key(params) == config_key({**params, "seed": 1})
    assert config_key(params) != config_key({**params, "model": {"use_vir": False}})


def _seed_run(root, exp_name, seed, key, r_mean, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", exp_name)
    with tracking.stage_run(root, "train", {"seed": seed, "train": {"lr": 1e-4}}, system_metrics=False) as run:
        run.set_tags({CONFIG_KEY_TAG: key})
        run.log_metrics({"test_r_mean": r_mean, "test_ci95_r_mean_low": r_mean - 2, "test_ci95_r_mean_high": r_mean + 2})
    return run.run_id


def test_seed_runs_nest_under_one_parent_with_their_statistics(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    first = _seed_run(tmp_path, "abl-full-s0", 0, "k1", 30.0, monkeypatch)
    other_config = _seed_run(tmp_path, "abl-vir-s0", 0, "k2", 20.0, monkeypatch)
    assert group_seed_runs(tmp_path, "k1") is None                 # one seed: nothing to group yet
    second = _seed_run(tmp_path, "abl-full-s1", 1, "k1", 34.0, monkeypatch)
    parent_id = group_seed_runs(tmp_path, "k1")
    client = MlflowClient(tracking.tracking_uri(tmp_path))
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "abl-full · seeds" and parent.data.tags[PARENT_TAG] == "k1"
    assert parent.data.metrics["test_r_mean"] == 32.0 and parent.data.metrics["n_seeds"] == 2
    assert parent.data.metrics["test_r_mean_std"] == pytest.approx(np.std([30, 34], ddof=1))
    assert parent.data.params["train.lr"] == "0.0001" and "seed" not in parent.data.params
    assert {client.get_run(r).data.tags.get(NESTED_UNDER) for r in (first, second)} == {parent_id}
    assert NESTED_UNDER not in client.get_run(other_config).data.tags
    # A third seed joins the same parent and updates its numbers; a lone configuration is grouped on demand.
    _seed_run(tmp_path, "abl-full-s2", 2, "k1", 38.0, monkeypatch)
    assert group_seed_runs(tmp_path, "k1") == parent_id
    assert client.get_run(parent_id).data.metrics["test_r_mean"] == 34.0
    assert client.get_run(parent_id).data.tags["pir_seeds"] == "0,1,2"
    lone = client.get_run(group_seed_runs(tmp_path, "k2", min_runs=1))
    assert lone.data.metrics["test_r_mean_ci95_low"] == 18.0     # the lone seed's bootstrap interval
    assert logged_interval(tmp_path, "abl-vir-s0") == (18.0, 22.0) and logged_interval(tmp_path, "nope") is None


def test_parent_label_falls_back_to_the_config_key():
    class Run:
        def __init__(self, name):
            self.data = type("D", (), {"tags": {"dvc_exp_name": name, CONFIG_KEY_TAG: "0123456789abcdef"}})()
    assert parent_label([Run("sweep-a-s0"), Run("sweep-a-s1")]) == "sweep-a"
    assert parent_label([Run("workspace"), Run("workspace")]) == "config 01234567"


def test_a_rerun_of_the_same_seed_counts_once(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    _seed_run(tmp_path, "workspace", 0, "k", 30.0, monkeypatch)
    _seed_run(tmp_path, "sweep-s0", 0, "k", 30.0, monkeypatch)
    assert group_seed_runs(tmp_path, "k") is None             # two runs, one seed: nothing to compare
    _seed_run(tmp_path, "sweep-s1", 1, "k", 34.0, monkeypatch)
    parent = MlflowClient(tracking.tracking_uri(tmp_path)).get_run(group_seed_runs(tmp_path, "k"))
    assert parent.data.metrics["n_seeds"] == 2 and parent.info.run_name == "sweep · seeds"
