"""Sharded corpora: `pir shards` writes img2dataset-layout tars, fetch prepares val/test from them, and the
trainer streams train through webdataset (real tars, real webdataset, a tiny generated dataset)."""

from __future__ import annotations

import dataclasses
import json
import signal
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.data.data_fixtures import FILES
from tests.data.test_fetch_stage import run_fetch
from tests.prepared_fixture import make_prepared
from pir.config import TrainConfig, model_config
from pir.data import shards
from pir.data.loader import set_epoch
from pir.data.prepared import load_prepared
from pir.data.stream import ShardStream, _image_id, stream_loader, train_stream
from pir.data.text import load_tokenizer
from pir_tools.shards import main as pir_shards

MODEL = model_config("tiny", image_size=56, swin_depths=(1, 1), swin_heads=(1, 2), text_layers=1, embed_dim=64,
                     heads=2, max_tokens=24)
TRAIN = TrainConfig(epochs=1, global_batch_size=6, lr=1e-3, num_workers=0, pairs_per_image=0, precision="fp32")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """(prepared folder, its tokenizer, shard folder): 30 generated 64 px images, 2 captions each, 5 a shard."""
    root = tmp_path_factory.mktemp("sharded")
    _, tokenizer = make_prepared(root / "prepared", images=30, image_size=64, classes=3, captions_per_image=2,
                                 split=(0.6, 0.2, 0.2), vocab_size=200)
    assert pir_shards([str(root / "prepared"), str(root / "shards"), "--shard-size", "5"]) == 0
    return root / "prepared", tokenizer, root / "shards"


def stream_of(folder: Path, **settings) -> ShardStream:
    manifest = shards.read_manifest(folder)
    train = manifest["splits"]["train"]
    return ShardStream(str(folder), tuple(shards.split_shards(folder, manifest, "train")), train["images"],
                       train["captions"], tuple(manifest["classes"]), **{"cache_res": 64, "shuffle_buffer": 7,
                                                                         **settings})


def unpadded(batch) -> list[tuple[int, tuple[int, ...]]]:
    return [(int(i), tuple(ids[mask.bool()].tolist()))
            for i, ids, mask in zip(batch["image_ids"], batch["input_ids"], batch["attention_mask"])]


def test_brace_patterns_expand_as_open_clip_gives_them():
    assert shards.expand_pattern("/d/{00000..00002}.tar") == ["/d/00000.tar", "/d/00001.tar", "/d/00002.tar"]
    assert shards.expand_pattern("/d/{a,b}-{8..10}.tar::/e/x.tar") == [
        "/d/a-8.tar", "/d/a-9.tar", "/d/a-10.tar", "/d/b-8.tar", "/d/b-9.tar", "/d/b-10.tar", "/e/x.tar"]
    assert shards.is_shard_pattern("/d/{0..3}.tar") and not shards.is_shard_pattern("/d/rsitmd.zip")
    for pattern, message in (("/d/{0..3.tar", "unbalanced or nested braces"), ("/d/{{0..1}}.tar", "nested"),
                             ("/d/{x}.tar", "neither a range"), ("pipe:curl -s h/{0..1}.tar", "local files only"),
                             ("/d/a.tar::https://h/{0..1}.tar", "local files only"), ("/d/{0..1}.zip", "not a .tar"),
                             ("/d/{0,0}.tar", "listed twice"), ("/d/{0..9}{0..999999}.tar", "more than")):
        with pytest.raises(ValueError, match=message) as caught:
            shards.expand_pattern(pattern)
        assert "\n" not in str(caught.value)


def test_writer_layout_manifest_and_same_bytes_again(sharded, tmp_path, finetune_root):
    prepared_dir, _, folder = sharded
    prepared = load_prepared(prepared_dir)
    manifest = json.loads((folder / shards.MANIFEST).read_text())
    assert (manifest["format"], manifest["format_version"], manifest["dataset"], manifest["seed"]) == \
        ("pir-shards", 1, "synthetic", 0)
    assert manifest["classes"] == prepared.classes and manifest["shard_size"] == 5
    for split in ("train", "val", "test"):
        view = prepared.split(split)
        entry = manifest["splits"][split]
        assert (entry["images"], entry["captions"]) == (view.n_images, view.n_texts)
        assert [s["name"] for s in entry["shards"]] == [f"{split}-{n:05d}.tar" for n in range(-(-view.n_images // 5))]
    with tarfile.open(folder / "val-00000.tar") as tar:
        members = tar.getmembers()
        assert [m.name for m in members[:3]] == ["val-000000000.png", "val-000000000.txt", "val-000000000.json"]
        assert {(m.mtime, m.uid, m.uname) for m in members} == {(0, 0, "")}
        meta = json.loads(tar.extractfile(members[2]).read())
        record = next(r for r in prepared.records if r.file == meta["file"])
        assert meta == {"key": "val-000000000", "file": record.file, "split": "val", "scene": record.scene,
                        "source": f"pixels.npy row {prepared.records.index(record)}"}
        assert tar.extractfile(members[1]).read().decode().splitlines() == list(record.captions)
    # the same source and seed give the same bytes; rewriting with bigger shards drops the stale ones
    again = tmp_path / "again"
    assert pir_shards([str(prepared_dir), str(again), "--shard-size", "5"]) == 0
    assert (again / shards.MANIFEST).read_bytes() == (folder / shards.MANIFEST).read_bytes()
    assert pir_shards([str(prepared_dir), str(again), "--shard-size", "100"]) == 0
    assert sorted(p.name for p in again.iterdir()) == ["shards.json", "test-00000.tar", "train-00000.tar",
                                                       "val-00000.tar"]

    # a dataset folder (RSITMD layout): each image's own bytes under its own extension
    out = tmp_path / "rsitmd"
    assert pir_shards([str(finetune_root), str(out), "--dataset", "rsitmd", "--shard-size", "4"]) == 0
    samples = list(shards.iter_samples(shards.split_shards(out, shards.read_manifest(out), "test")))
    assert [shards.sample_meta(s)["file"] for s in samples] == FILES["test"]
    first = shards.sample_meta(samples[0])
    assert first["source"] == "test/airport_8.tif" and first["scene"] == "airport"
    assert samples[0]["tif"] == (finetune_root / "test" / "airport_8.tif").read_bytes()
    assert pir_shards([str(finetune_root / "rsitmd_train.json"), str(tmp_path / "x")]) == 1   # needs --dataset


def test_one_epoch_streams_every_training_pair_exactly_once(sharded):
    _, tokenizer, folder = sharded
    stream = stream_of(folder)
    loader = stream_loader(stream, tokenizer, TRAIN, MODEL, seed=0)
    assert len(loader) == stream.captions // TRAIN.global_batch_size == 6
    set_epoch(loader, 0)
    seen = Counter(pair for batch in loader for pair in unpadded(batch))
    expected = Counter()
    for sample in shards.iter_samples(stream.shards):
        image_id = _image_id(sample["__url__"], sample["__key__"])
        batch = loader.dataset.collate([{"image": torch.zeros(3, 1, 1, dtype=torch.uint8), "caption": c,
                                         "image_id": image_id, "label": 0} for c in shards.sample_captions(sample)])
        expected.update(unpadded(batch))
    assert seen == expected and sum(seen.values()) == 36
    # a batch is uint8 at the model's size; epochs reshuffle; a bare pattern needs samples_per_epoch
    batch = next(iter(loader))
    assert batch["images"].shape == (6, 3, 56, 56) and batch["images"].dtype == torch.uint8
    set_epoch(loader, 1)
    assert unpadded(next(iter(loader))) != unpadded(batch)
    with pytest.raises(ValueError, match="set data.samples_per_epoch"):
        dataclasses.replace(stream, images=None, captions=None).epoch_pairs(0)


def test_fewer_shards_than_ranks_times_workers_resamples_instead_of_hanging(sharded, capsys):
    _, tokenizer, folder = sharded
    stream = stream_of(folder, samples_per_epoch=24)
    stream = dataclasses.replace(stream, shards=stream.shards[:3])   # 3 train shards; 2 ranks x 2 workers = 4 slots
    loader = stream_loader(stream, tokenizer, dataclasses.replace(TRAIN, num_workers=2), MODEL, seed=0, rank=0,
                           world_size=2)
    assert "draws shards with replacement" in capsys.readouterr().err
    signal.alarm(60)   # a hang fails the test instead of the suite
    try:
        set_epoch(loader, 0)
        batches = list(loader)
    finally:
        signal.alarm(0)
    assert len(batches) == len(loader) == 4 and {len(b["image_ids"]) for b in batches} == {3}


def test_fetch_prepares_val_test_from_shards_and_train_streams(sharded, tmp_path):
    prepared_dir, _, folder = sharded
    repo = tmp_path / "project"
    repo.mkdir()
    # a bare pattern is train only: it needs data.eval_source and data.samples_per_epoch
    pattern = str(folder / "train-{00000..00003}.tar")
    failed = run_fetch(repo, {"dataset": "rsitmd", "source": pattern})
    assert "set data.eval_source" in failed and "\n" not in failed
    failed = run_fetch(repo, {"dataset": "rsitmd", "source": pattern, "eval_source": str(folder)})
    assert "set data.samples_per_epoch" in failed
    for name in ("broken-0.tar", "broken-1.tar"):
        (tmp_path / name).write_bytes(b"not a tar" * 100)
    failed = run_fetch(repo, {"dataset": "rsitmd", "source": f"{tmp_path}/broken-{{0..2}}.tar",
                              "eval_source": str(folder), "samples_per_epoch": 12})
    assert "broken-2.tar: shard of data.source not found" in failed
    failed = run_fetch(repo, {"dataset": "rsitmd", "source": f"{tmp_path}/broken-{{0..1}}.tar", "cache_res": 64,
                              "eval_source": str(folder), "samples_per_epoch": 12})
    assert "broken-0.tar: not a readable tar shard" in failed and "\n" not in failed

    assert run_fetch(repo, {"dataset": "rsitmd", "source": str(folder), "cache_res": 64}) is None
    original, fetched = load_prepared(prepared_dir), load_prepared(repo / "data" / "fetch")
    kept = [i for split in ("val", "test") for i, r in enumerate(original.records) if r.split == split]
    assert fetched.records == [original.records[i] for i in kept]     # val/test only, as they were
    assert (fetched.pixels == original.pixels[kept]).all()             # PNG in the shards: the same pixels
    record = fetched.train_shards
    assert record["source"] == str(folder) and len(record["shards"]) == 4 == len(record["sha256"])
    assert (record["images"], record["captions"]) == (18, 36)
    report = json.loads((repo / "reports" / "data.json").read_text())
    assert report["images"]["train"] == 0 and report["train_shards"]["tokenizer_captions"] == 36

    # the trainer streams train from the shards the stage recorded (pir.pipeline.train does the same calls)
    from pir.config import DataConfig
    from pir.models import create_model
    from pir.training.launch import DistContext
    from pir.training.state import TrainState
    from pir.training.trainer import TrainOutputs, train

    tokenizer = load_tokenizer(repo / "data" / "fetch" / "tokenizer")
    stream = train_stream(fetched, DataConfig(cache_res=64, samples_per_epoch=12))   # 2 steps of 6
    model_cfg = dataclasses.replace(MODEL, vocab_size=len(tokenizer))
    torch.manual_seed(0)
    summary = train(create_model(model_cfg), fetched, tokenizer, model_cfg, TRAIN, seed=0,
                    state=TrainState(tmp_path / "state", "k"), outputs=TrainOutputs(tmp_path / "best.pt",
                                                                                    tmp_path / "last.pt"),
                    ctx=DistContext(torch.device("cpu")), log=lambda line: None, stream=stream)
    assert summary.curves[0]["samples"] == 12 and "val_r_mean" in summary.curves[0]
    assert (tmp_path / "best.pt").is_file()
