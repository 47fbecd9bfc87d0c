"""The baselines command's parts that need no DVC run: argument parsing, the known-weights table, the
report and figure (the queue/collect helpers are the ablation's, exercised by tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pir.evaluation.metrics import METRIC_KEYS
from pir_tools.baselines import Baseline, baselines_figure, dry_run_line, markdown_table, parse_spec
from pir_tools.cli import main as cli


def touch(folder: Path, name: str) -> Path:
    (folder / name).write_bytes(b"")
    return folder / name


def test_specs_give_name_preset_activation_and_seen(tmp_path):
    touch(tmp_path, "RemoteCLIP-ViT-L-14.pt")
    touch(tmp_path, "mine.pt")
    remote = parse_spec("RemoteCLIP-L14=RemoteCLIP-ViT-L-14.pt", "clip-b32", tmp_path)   # relative to the project
    assert (remote.preset, remote.seen, remote.activation, remote.experiment) == \
        ("clip-l14", "yes", "quickgelu", "baseline-RemoteCLIP-L14")
    mine = parse_spec(f"Mine={tmp_path / 'mine.pt'}", "clip-b16", tmp_path)
    assert (mine.preset, mine.seen, mine.activation, mine.weights) == ("clip-b16", "unknown", "gelu", str(tmp_path / "mine.pt"))
    for name, preset in (("RS5M_ViT-H-14.pt", "clip-h14"), ("RemoteCLIP-RN50.pt", "clip-rn50"),
                         ("RN50x4.pt", "clip-b32")):                          # RN50x4 is another width
        assert parse_spec(f"X={name}", "clip-b32", tmp_path, must_exist=False).preset == preset
    for bad, message in (("nopath", "expected NAME=PATH"), ("x=/nowhere/w.pt", "weights not found"),
                         ("x=mine.pt:seen:unseen", "seen given twice")):
        with pytest.raises(SystemExit, match=message):
            parse_spec(bad, "clip-b32", tmp_path)


@pytest.mark.parametrize("suffixes,seen,activation", [(":seen", "yes", "gelu"), (":unseen:quickgelu", "no", "quickgelu"),
                                                       (":quickgelu:unseen", "no", "quickgelu"), (":gelu", "unknown", "gelu")])
def test_suffixes_override_seen_and_activation_in_any_order(suffixes, seen, activation, tmp_path):
    touch(tmp_path, "mine.pt")
    mine = parse_spec(f"Mine=mine.pt{suffixes}", "clip-b32", tmp_path)
    assert (mine.weights, mine.seen, mine.activation) == (str(tmp_path / "mine.pt"), seen, activation)
    remote = parse_spec(f"R=/nowhere/RemoteCLIP-ViT-B-32.pt{suffixes}", "clip-b32", tmp_path, must_exist=False)
    assert remote.activation == (activation if "gelu" in suffixes else "quickgelu")


def test_dry_run_prints_one_line_each_from_names_alone(tmp_path, capsys, monkeypatch):
    import pir_tools.baselines as baselines
    monkeypatch.setattr(baselines, "queue_experiment", lambda *a: pytest.fail("a dry run queues nothing"))
    (tmp_path / "RS5M_ViT-B-32_RET-2.pt").write_bytes(b"not even a checkpoint")   # never opened
    baselines.main(["--dry-run", "Remote=/nowhere/RemoteCLIP-ViT-B-32.pt", "Geo=RS5M_ViT-B-32_RET-2.pt",
                    "H14=/nowhere/RS5M_ViT-H-14.pt:gelu", "Mine=/nowhere/mine.pt:seen"], root=tmp_path)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("Remote: /nowhere/RemoteCLIP-ViT-B-32.pt (not found: fine in a dry run); preset "
                               "clip-b32; activation quickgelu (RemoteCLIP-ViT-B-32.pt: RemoteCLIP, initialised "
                               "from OpenAI's CLIP")
    assert "seen RSICD/RSITMD train: yes (RemoteCLIP's training data" in lines[0]
    assert lines[1].startswith(f"Geo: {tmp_path / 'RS5M_ViT-B-32_RET-2.pt'}; preset clip-b32; activation quickgelu")
    assert "seen RSICD/RSITMD train: yes (GeoRSCLIP fine-tuned on RET-2" in lines[1]
    assert "preset clip-h14; activation gelu (given on the command line)" in lines[2]
    assert "activation gelu (mine.pt: not in the known-weights table" in lines[3]
    assert lines[3].endswith("seen RSICD/RSITMD train: yes (given on the command line)")


def test_table_and_figure(tmp_path):
    rows = [Baseline("A", str(tmp_path / "RS5M_ViT-B-32_RET-2.pt"), "clip-b32", "yes", "RET-2", "quickgelu", "GeoRSCLIP"),
            Baseline("B", str(tmp_path / "ViT-B-32.pt"), "clip-b32", "no", "OpenAI", "quickgelu", "OpenAI"),
            Baseline("C", str(tmp_path / "c.pt"), "clip-b32", "unknown", "?", "gelu", "?")]
    metrics = {"baseline-A": dict.fromkeys(METRIC_KEYS, 50.0), "baseline-B": dict.fromkeys(METRIC_KEYS, 20.5)}
    table = markdown_table(rows, metrics).splitlines()
    assert "| activation |" in table[0] and "seen RSICD/RSITMD train?" in table[0] and len(table) == 2 + 3
    assert table[0].count("|") == table[1].count("|") == table[2].count("|")
    assert "| A | clip-b32 | quickgelu | `RS5M_ViT-B-32_RET-2.pt` | yes (RET-2) | 50.00" in table[2]
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
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(str(tmp_path / "ViT-B-32.pt")))   # OpenAI's layout: code inside
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
    assert [q["model.clip_activation"] for q in queued] == ["quickgelu", "quickgelu"]   # set explicitly
    # "++": params.yaml has no such key, and DVC's -S adds one only so
    assert all(set_param_args(q)[-2:] == ["-S", "++model.allow_torchscript=true"] for q in queued)


def test_hub_ids_are_taken_as_they_are_and_read_by_name(tmp_path):
    remote = parse_spec("R=hf-hub:chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt@main:unseen", "clip-b16", tmp_path)
    assert (remote.weights, remote.preset, remote.activation, remote.seen) == (
        "hf-hub:chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt@main", "clip-b32", "quickgelu", "no")
    assert "Hub id: resolved when the experiment runs" in dry_run_line(remote)
    assert "`RemoteCLIP-ViT-B-32.pt`" in markdown_table([remote], {})
    with pytest.raises(SystemExit, match="baseline X = hf-hub:a/b/../b.pt: .*stay inside the repository"):
        parse_spec("X=hf-hub:a/b/../b.pt", "clip-b32", tmp_path)
