"""The fetch stage end to end in a temporary project: a synthetic run, then a bad zipped import."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from unittest import mock

import yaml

from tests.data.data_fixtures import write_finetune, write_images
from pir.data.prepared import load_prepared
from pir.data.text import load_tokenizer
from pir.pipeline.entry import main
from pir.pipeline import fetch
REPO = Path(__file__).resolve().parents[2]


def run_fetch(root: Path, data: dict, synthetic: dict | None = None) -> str | None:
    """params.yaml with ``data``/``synthetic`` changes, then fetch through the stage scripts' entry
    point; None on success, else the one-line exit message."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(data)
    params["synthetic"].update(synthetic or {})
    params["model"]["image_size"] = 32        # small caches below are only valid for a small model input
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with mock.patch.dict(os.environ):
        os.environ.pop("DVC_ROOT", None)     # downloads go under the project itself
        try:
            main(fetch, root)
            return None
        except SystemExit as exc:
            return str(exc.code)


def test_fetch_synthetic_then_bad_import_leaves_outputs(tmp_path, capsys):
    repo = tmp_path / "project"
    repo.mkdir()
    done = run_fetch(repo, {"dataset": "synthetic", "cache_res": 40},
                     {"images": 60, "image_size": 32, "classes": 12})
    assert done is None, done
    prepared = load_prepared(repo / "data" / "fetch")
    assert prepared.pixels.shape == (60, 40, 40, 3) and len(prepared.classes) == 12   # resized to cache_res
    report = json.loads((repo / "reports" / "data.json").read_text())
    assert report["dataset"] == "synthetic" and report["classes"] == 12
    assert sum(report["images"].values()) == 60 and sum(report["captions"].values()) == 300
    assert report["tokenizer_vocab"] == len(load_tokenizer(repo / "data" / "fetch" / "tokenizer"))
    assert (repo / "reports" / "figures" / "data_samples.png").stat().st_size > 10_000

    # a zipped real dataset with a corrupt image: extracted, then a one-line error naming the image,
    # and the previous outputs untouched
    source = tmp_path / "src"
    source.mkdir()
    write_finetune(source)
    write_images(source, in_split_folders=True)
    (source / "val" / "beach_7.tif").write_bytes(b"garbage")
    archive = tmp_path / "rsitmd.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in source.rglob("*"):
            zf.write(path, Path("RSITMD") / path.relative_to(source))
    before = {p: p.read_bytes() for p in [repo / "data" / "fetch" / "dataset.json", repo / "reports" / "data.json"]}
    failed = run_fetch(repo, {"dataset": "rsitmd", "source": str(archive)})
    assert failed.startswith("fetch: ") and "beach_7.tif" in failed and "unreadable" in failed
    assert "\n" not in failed and "beach_7.tif" in capsys.readouterr().err   # every problem listed too
    assert all(p.read_bytes() == data for p, data in before.items())
    assert (repo / "data" / "downloads" / "rsitmd" / "RSITMD" / "rsitmd_val.json").exists()


def test_fetch_applies_the_safety_caps_of_params(tmp_path):
    """data.max_archive_bytes / max_archive_ratio reach the extraction, data.max_image_pixels the decoding."""
    source = tmp_path / "src"
    source.mkdir()
    write_finetune(source)
    write_images(source, in_split_folders=True)   # 24x24 images
    archive = tmp_path / "rsitmd.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in source.rglob("*"):
            zf.write(path, Path("RSITMD") / path.relative_to(source))
    repo = tmp_path / "project"
    repo.mkdir()
    failed = run_fetch(repo, {"dataset": "rsitmd", "source": str(archive), "max_archive_bytes": 1000})
    assert "above the 1000 bytes limit on extracted archives" in failed and "data.max_archive_bytes" in failed
    failed = run_fetch(repo, {"dataset": "rsitmd", "source": str(archive), "max_archive_ratio": 1.0,
                              "max_image_pixels": 24 * 24 - 1})
    assert "image is 24x24 pixels (576), above the 575-pixel cap" in failed and "\n" not in failed
