"""ONNX: `pir export CKPT --onnx DIR` (pir.models.onnx_export) and `pir index SOURCE --onnx DIR`
(pir.search.onnx_encoder). A plain clip-tiny export (with --hub beside it) and a PIR export with both heads:
their graphs give torch's vectors through onnxruntime, preprocess.json and the tokenizer are written, the
numpy resize is eval_transform's byte for byte, changed files and external data outside the folder are
refused; the index onnxruntime builds is torch's (same rows, same order, cosine >= 0.999), records the
source checkpoint so `pir search` works on it, never mixes rows of two engines, and builds in a process
where torch cannot be imported at all. One file: the exports share the exporter's warm-up (seconds)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pir import files
from pir.config import model_config
from pir.data.eval_resize import eval_resize
from pir.data.text import load_tokenizer, tokenize
from pir.data.transforms import eval_transform
from pir.models import create_model
from pir.models.checkpoint import save_checkpoint
from pir.models.onnx_export import TOLERANCE
from pir.search import onnx_encoder as fmt
from pir.search.encoder import load_encoder
from pir.search.index import build_index, load_index
from pir_tools.export import main as export
from pir_tools.search import index_main, search_main

from tests.search.conftest import CAPTIONS as SCENE_CAPTIONS
from tests.search.conftest import write_images

ROOT = Path(__file__).resolve().parents[2]

CAPTIONS = ["A Forest with many green trees!", "beach", "an airport with two planes beside a long runway " * 6]


@pytest.fixture(scope="module")
def clip_export(tmp_path_factory) -> tuple[Path, Path, str]:
    """(checkpoint, ONNX folder, what the export printed): a plain clip-tiny checkpoint exported with --hub and
    --onnx in one call (the cheapest CLIP tower to export: no PIR heads)."""
    root = tmp_path_factory.mktemp("onnx_export")
    cfg = model_config("clip-tiny", use_vir=False, use_lca=False)
    torch.manual_seed(5)
    save_checkpoint(root / "clip.pt", create_model(cfg), cfg, epoch=2, model_key="onnx-clip")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert export([str(root / "clip.pt"), "--onnx", str(root / "onnx"), "--hub", str(root / "hub"),
                       "--metrics", str(root / "none.json")]) == 0
    return root / "clip.pt", root / "onnx", printed.getvalue()


def test_the_folder_holds_both_graphs_the_spec_and_the_bpe_vocabulary(clip_export):
    checkpoint, folder, printed = clip_export
    assert sorted(p.name for p in folder.iterdir()) == [fmt.IMAGE, fmt.PREPROCESS, fmt.TEXT, fmt.TOKENIZER]
    assert [p.name for p in (folder / fmt.TOKENIZER).iterdir()] == [fmt.CLIP_BPE_FILE]
    assert (checkpoint.parent / "hub" / "config.json").is_file()   # --hub beside --onnx, each its own folder
    spec = fmt.read_spec(folder)
    cfg = model_config("clip-tiny")
    assert spec["preset"] == "clip-tiny" and spec["embed_dim"] == 64 and isinstance(spec["opset"], int)
    assert spec["image"]["image_size"] == 112 and spec["image"]["dtype"] == "uint8"
    assert spec["image"]["shape"] == ["batch", 3, 112, 112] and spec["image"]["channels"] == "RGB"
    assert spec["image"]["mean"] == list(cfg.image_mean) and spec["image"]["std"] == list(cfg.image_std)
    assert "bicubic" in spec["image"]["resize"] and "antialias" in spec["image"]["resize"]
    assert spec["text"]["inputs"] == {"input_ids": "int64", "attention_mask": "int64"}
    assert (spec["text"]["max_tokens"], spec["text"]["max_words"]) == (cfg.max_tokens, cfg.max_words)
    assert spec["text"]["tokenizer"]["kind"] == fmt.CLIP_BPE
    assert spec["checkpoint"]["path"] == str(checkpoint.resolve()) and spec["checkpoint"]["epoch"] == 2
    assert spec["checkpoint"]["sha256"] == files.sha256_path(checkpoint)
    assert spec["files"] == {name: files.sha256_file(folder / name) for name in (fmt.IMAGE, fmt.TEXT)}
    assert {"torch", "onnx", "onnxscript", "onnxruntime"} <= set(spec["versions"])
    check = spec["check"]
    assert check["tolerance"] == TOLERANCE and check["images"] >= 2 and check["captions"] >= 2
    assert check["image_max_abs_diff"] <= TOLERANCE and check["text_max_abs_diff"] <= TOLERANCE
    # the max differences are printed as they are recorded
    assert f"image {check['image_max_abs_diff']:.2e}, text {check['text_max_abs_diff']:.2e}" in printed


def test_onnxruntime_gives_torchs_vectors_from_the_same_files(clip_export):
    checkpoint, folder, _ = clip_export
    ours, reference = fmt.load_onnx_encoder(folder, threads=1), load_encoder(checkpoint)
    assert (ours.dim, ours.cfg.image_size, ours.preset, ours.engine) == (64, 112, "clip-tiny", "onnxruntime")
    rng = np.random.default_rng(2)
    rgbs = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((300, 200, 3), (112, 112, 3), (40, 90, 3))]
    pixels = [ours.preprocess(rgb) for rgb in rgbs]
    for mine, theirs in zip(pixels, [reference.preprocess(rgb) for rgb in rgbs]):
        np.testing.assert_array_equal(mine, theirs)   # numpy resize == eval_transform, byte for byte
    batch = np.stack(pixels)
    assert np.abs(ours.encode_images(batch) - reference.encode_images(batch)).max() < 1e-5
    assert np.abs(ours.encode_images(batch[1:2]) - reference.encode_images(batch[1:2])).max() < 1e-5
    assert np.abs(ours.encode_texts(CAPTIONS) - reference.encode_texts(CAPTIONS)).max() < 1e-5


@pytest.mark.parametrize("shape,size", [((48, 48), 32), ((32, 32), 112), ((600, 400), 224), ((17, 300), 64),
                                        ((255, 257), 224), ((1000, 1000), 112), ((1, 5), 32), ((7, 7), 112),
                                        ((224, 224), 224)])
def test_the_numpy_resize_is_eval_transform_byte_for_byte(shape, size):
    rng = np.random.default_rng(sum(shape) + size)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    smooth = np.stack([128 + 127 * np.sin(x / 7 + c) * np.cos(y / 5) for c in range(3)]).astype(np.uint8)
    for image in (rng.integers(0, 256, (3, *shape), dtype=np.uint8), smooth):
        expected = eval_transform(size)(torch.from_numpy(image)).numpy()
        np.testing.assert_array_equal(eval_resize(image, size), expected)


def test_only_an_empty_folder_or_an_earlier_onnx_export_is_replaced(clip_export, tmp_path, capsys):
    checkpoint, folder, _ = clip_export
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    assert export([str(checkpoint), "--onnx", str(occupied)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"pir export: {occupied}: a folder with other files") and "\n" not in error
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    assert export([str(checkpoint), "--onnx", str(tmp_path / "file")]) == 1
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:   # one folder for two targets
        export([str(checkpoint), "--onnx", str(tmp_path / "same"), "--hub", str(tmp_path / "same")])
    assert usage.value.code == 2 and not (tmp_path / "same").exists()
    assert fmt.is_onnx_export(folder) and not fmt.is_onnx_export(occupied)


def _tampered(folder: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(folder, copy)
    return copy


def test_a_changed_graph_or_spec_is_refused(clip_export, tmp_path):
    _, folder, _ = clip_export
    changed = _tampered(folder, tmp_path, "changed")
    with open(changed / fmt.IMAGE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ValueError, match="not the file `pir export --onnx` wrote") as caught:
        fmt.load_onnx_encoder(changed)
    assert "\n" not in str(caught.value)
    newer = _tampered(folder, tmp_path, "newer")
    spec = json.loads((newer / fmt.PREPROCESS).read_text())
    (newer / fmt.PREPROCESS).write_text(json.dumps({**spec, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        fmt.load_onnx_encoder(newer)
    with pytest.raises(ValueError, match="not a folder `pir export --onnx` wrote"):
        fmt.load_onnx_encoder(tmp_path)


def _graph_with_external_data(folder: Path, location: str) -> Path:
    """A one-node graph whose only weight lies in external data at ``location`` (as a hostile file would say)."""
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "8")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight])
    path = folder / fmt.IMAGE
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


def test_external_data_may_only_name_files_inside_the_folder(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(2, np.float32).tobytes())
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "inside.data").write_bytes(np.ones(2, np.float32).tobytes())
    assert fmt.external_files(_graph_with_external_data(folder, "inside.data")) == ["inside.data"]
    os.symlink(secret, folder / "link.data")
    for location in ("../secret.bin", str(secret), "link.data", "sub/../../secret.bin", "missing.data"):
        with pytest.raises(ValueError, match="refused") as caught:
            fmt.external_files(_graph_with_external_data(folder, location))
        assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- PIR, indexing

# Installed before anything else is imported: `import torch` (and torch.*) fails as if torch were absent.
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test: {name}")
sys.meta_path.insert(0, NoTorch())
"""


@pytest.fixture(scope="module")
def pir_export(tiny_project, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(checkpoint, tokenizer folder, ONNX folder): a PIR checkpoint with both heads (VIR and LCA, one block
    each, one Swin stage and one BERT layer: the smallest graphs that hold every part) exported with --onnx."""
    root = tmp_path_factory.mktemp("onnx_index")
    tokenizer = tiny_project / "data" / "fetch" / "tokenizer"
    cfg = model_config("tiny", vocab_size=len(load_tokenizer(tokenizer)), image_size=32, filter_size=2, instru_num=1,
                       cycle_num=1, text_layers=1, swin_depths=(1,), swin_heads=(1,))
    torch.manual_seed(1)
    save_checkpoint(root / "model" / "best.pt", create_model(cfg), cfg, epoch=4, model_key="onnx-index")
    assert export([str(root / "model" / "best.pt"), "--onnx", str(root / "onnx"), "--tokenizer", str(tokenizer)]) == 0
    return root / "model" / "best.pt", tokenizer, root / "onnx"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Six scene images (48 px: resized down) and a larger, non-square one."""
    folder = tmp_path_factory.mktemp("onnx_images") / "images"
    write_images(folder, 2)
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (90, 140, 3), dtype=np.uint8)).save(folder / "wide.png")
    return folder


def _vectors(index) -> np.ndarray:
    return np.asarray(index.vectors, np.float32)


def test_the_text_graph_and_its_torch_free_tokenizer_match_torch(pir_export):
    checkpoint, tokenizer, folder = pir_export
    ours, reference = fmt.load_onnx_encoder(folder, threads=1), load_encoder(checkpoint, tokenizer)
    captions = [*SCENE_CAPTIONS[:3], "A FOREST, with many green things!", "forestbeach " * 20]   # 6 pieces a word
    ids, mask = ours._text_path()[1](captions)   # the `tokenizers` library alone, no transformers
    expected_ids, expected_mask = tokenize(reference.tokenizer, captions, reference.cfg.max_tokens,
                                           reference.cfg.max_words)
    np.testing.assert_array_equal(ids, expected_ids.numpy())
    np.testing.assert_array_equal(mask, expected_mask.numpy())
    assert ids.shape[1] == reference.cfg.max_tokens   # the long caption was cut, the rest padded to it
    assert np.abs(ours.encode_texts(captions) - reference.encode_texts(captions)).max() < 1e-5
    assert np.abs(ours.query_text("a beach") - reference.query_text("a beach")).max() < 1e-5


def test_an_onnx_index_is_the_torch_index_and_pir_search_reads_it(pir_export, images, tmp_path, capsys):
    checkpoint, tokenizer, folder = pir_export
    build_index(images, tmp_path / "torch", load_encoder(checkpoint, tokenizer), checkpoint, progress=False)
    assert index_main([str(images), "--onnx", str(folder), "--out", str(tmp_path / "onnx"), "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("indexed 7 new, 0 unchanged, 0 unreadable")
    by_torch, by_onnx = load_index(tmp_path / "torch"), load_index(tmp_path / "onnx")
    assert [e.path for e in by_onnx.entries] == [e.path for e in by_torch.entries]   # same rows, same order
    assert [(e.width, e.height) for e in by_onnx.entries] == [(e.width, e.height) for e in by_torch.entries]
    a, b = _vectors(by_onnx), _vectors(by_torch)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.999 and np.abs(a - b).max() < 1e-3   # float16 rows: 1e-3 is a few steps
    identity = by_onnx.identity
    assert identity["engine"] == "onnxruntime" and by_torch.identity["engine"] == "torch"
    assert identity["checkpoint_sha256"] == by_torch.identity["checkpoint_sha256"]
    assert (by_onnx.folder / identity["checkpoint"]).resolve() == checkpoint.resolve()
    assert (by_onnx.folder / identity["onnx"]).resolve() == folder.resolve()
    assert identity["preset"] == by_torch.identity["preset"] and identity["epoch"] == 4
    assert identity["image_size"] == 32 and identity["dim"] == by_torch.identity["dim"]
    assert sorted(p.name for p in (by_onnx.generation / "tokenizer").iterdir()) == \
        sorted(p.name for p in (folder / fmt.TOKENIZER).iterdir())
    # pir search loads the recorded torch checkpoint (sha256 checked) and the tokenizer the index kept
    assert search_main([str(tmp_path / "onnx"), "a forest with many things", "--top", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_rows_are_reused_only_from_the_same_engine_and_graph(pir_export, images, tmp_path, capsys):
    checkpoint, tokenizer, folder = pir_export
    out = str(tmp_path / "index")
    assert index_main([str(images), "--onnx", str(folder), "--out", out]) == 0
    assert index_main([str(images), "--onnx", str(folder), "--out", out]) == 0
    assert capsys.readouterr().out.strip().endswith("indexed 0 new, 7 unchanged, 0 unreadable")
    # torch over an onnxruntime generation: every row embedded again, none mixed in
    assert index_main([str(images), "--checkpoint", str(checkpoint), "--tokenizer", str(tokenizer), "--out", out]) == 0
    assert capsys.readouterr().out.strip().endswith("indexed 7 new, 0 unchanged, 0 unreadable")
    assert load_index(out).identity["engine"] == "torch"


def test_index_builds_where_torch_cannot_be_imported(pir_export, images, tmp_path):
    _, _, folder = pir_export
    out = tmp_path / "index"
    code = NO_TORCH + (
        "from pir_tools.cli import main\n"
        f"code = main(['index', {str(images)!r}, '--onnx', {str(folder)!r}, '--out', {str(out)!r}])\n"
        "print('torch imported:', any(m == 'torch' or m.startswith('torch.') for m in sys.modules))\n"
        "sys.exit(code)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "indexed 7 new, 0 unchanged, 0 unreadable" in run.stdout and "torch imported: False" in run.stdout
    identity = json.loads((load_index(out).generation / "index.json").read_text())
    assert identity["engine"] == "onnxruntime" and len(load_index(out).entries) == 7


def test_the_command_line_refusals(pir_export, images, tmp_path, capsys, monkeypatch):
    checkpoint, tokenizer, folder = pir_export
    out = str(tmp_path / "index")
    for argv in ([str(images), "--out", out], [str(images), "--onnx", str(folder), "--checkpoint", str(checkpoint),
                                               "--out", out],
                 [str(images), "--onnx", str(folder), "--tokenizer", str(tokenizer), "--out", out]):
        with pytest.raises(SystemExit) as usage:
            index_main(argv)
        assert usage.value.code == 2
    capsys.readouterr()
    monkeypatch.setenv("WORLD_SIZE", "2")   # under torchrun
    assert index_main([str(images), "--onnx", str(folder), "--out", out]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("pir index: --onnx runs in one process") and "\n" not in error
    assert not Path(out).exists()
