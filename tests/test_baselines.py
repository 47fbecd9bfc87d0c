"""The baselines command's parts that need no DVC run: argument parsing, the known-weights table, the
report and figure (the queue/collect helpers are the ablation's, exercised by tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pir.evaluation.metrics import METRIC_KEYS
from pir_tools.baselines import Baseline, baselines_figure, markdown_table, parse_spec, seen_by_name
from pir_tools.cli import main as cli


def touch(folder: Path, name: str) -> Path:
    (folder / name).write_bytes(b"")
    return folder / name


@pytest.mark.parametrize("name,seen", [("RS5M_ViT-B-32_RET-2.pt", "yes"), ("RemoteCLIP-ViT-L-14.pt", "yes"),
                                       ("ViT-B-32.pt", "no"), ("RS5M_ViT-B-32.pt", "unknown"),
                                       ("my_clip.pt", "unknown")])
def test_known_weights_say_what_they_have_seen(name, seen):
    assert seen_by_name(Path(name))[0] == seen


def test_specs_give_name_preset_and_seen_override(tmp_path):
    touch(tmp_path, "RemoteCLIP-ViT-L-14.pt")
    touch(tmp_path, "mine.pt")
    remote = parse_spec("RemoteCLIP-L14=RemoteCLIP-ViT-L-14.pt", "clip-b32", tmp_path)   # relative to the project
    assert (remote.preset, remote.seen, remote.experiment) == ("clip-l14", "yes", "baseline-RemoteCLIP-L14")
    mine = parse_spec(f"Mine={tmp_path / 'mine.pt'}:seen", "clip-b16", tmp_path)
    assert (mine.preset, mine.seen, mine.path) == ("clip-b16", "yes", tmp_path / "mine.pt")
    for bad, message in (("nopath", "expected NAME=PATH"), ("x=/nowhere/w.pt", "weights not found")):
        with pytest.raises(SystemExit, match=message):
            parse_spec(bad, "clip-b32", tmp_path)


def test_table_and_figure(tmp_path):
    rows = [Baseline("A", tmp_path / "RS5M_ViT-B-32_RET-2.pt", "clip-b32", "yes", "RET-2"),
            Baseline("B", tmp_path / "ViT-B-32.pt", "clip-b32", "no", "OpenAI"),
            Baseline("C", tmp_path / "c.pt", "clip-b32", "unknown", "?")]
    metrics = {"baseline-A": dict.fromkeys(METRIC_KEYS, 50.0), "baseline-B": dict.fromkeys(METRIC_KEYS, 20.5)}
    table = markdown_table(rows, metrics).splitlines()
    assert "seen RSICD/RSITMD train?" in table[0] and len(table) == 2 + 3
    assert "| A | clip-b32 | `RS5M_ViT-B-32_RET-2.pt` | yes (RET-2) | 50.00" in table[2]
    assert table[4].endswith("n/a |")
    baselines_figure(rows, metrics, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_lists_the_command(capsys):
    assert cli(["help"]) == 0
    assert "pir baselines NAME=PATH" in capsys.readouterr().err


def test_torchscript_archives_need_allow_torchscript(tmp_path, monkeypatch):
    import warnings

    import torch

    import pir_tools.baselines as baselines
    from pir_tools.experiments import set_param_args
    with warnings.catch_warnings():   # torch marks jit.script deprecated; OpenAI's files are TorchScript all the same
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "ViT-B-32.pt"))   # OpenAI's layout: code inside
    torch.save({"w": torch.zeros(1)}, tmp_path / "RemoteCLIP-ViT-B-32.pt")
    queued = []
    monkeypatch.setattr(baselines, "queue_experiment", lambda root, name, overrides, extra: queued.append(overrides))
    monkeypatch.setattr(baselines, "run_queue", lambda root, jobs: None)
    monkeypatch.setattr(baselines, "collect", lambda root, rows: "")
    specs = ["Remote=RemoteCLIP-ViT-B-32.pt", "OpenAI=ViT-B-32.pt"]
    with pytest.raises(SystemExit) as caught:                  # refused before anything is queued
        baselines.main(specs, root=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"baseline OpenAI: {tmp_path / 'ViT-B-32.pt'}: a TorchScript archive")
    assert "--allow-torchscript" in message and "runs code from the file" in message and "\n" not in message
    assert queued == []
    baselines.main(["--allow-torchscript", *specs], root=tmp_path)
    assert [q["model.clip_weights"] for q in queued] == [str(tmp_path / n) for n in ("RemoteCLIP-ViT-B-32.pt",
                                                                                     "ViT-B-32.pt")]
    # "++": params.yaml has no such key, and DVC's -S adds one only so
    assert all(set_param_args(q)[-2:] == ["-S", "++model.allow_torchscript=true"] for q in queued)
