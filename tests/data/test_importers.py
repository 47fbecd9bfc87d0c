"""Importers on small fixtures of every layout: splits, labels, val carving, validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.data_fixtures import FILES, captions_of, save_image, write_finetune, write_images, write_karpathy, write_parquet, write_precomp
from pir.data import importers
from pir.data.importers import ImportProblems, import_dataset, scene_from_filename


def load(root: Path, dataset: str = "rsitmd", **kwargs):
    return import_dataset(root, dataset, cache_res=16, seed=0, progress=False, **kwargs)


def by_file(ds):
    return {r.file: r for r in ds.records}


def test_scene_from_filename():
    assert scene_from_filename("storagetanks_12.tif") == "storagetanks"
    assert scene_from_filename("train/dense_residential_3.jpg") == "dense_residential"
    assert scene_from_filename("00017.jpg") is None
    assert scene_from_filename("airport.jpg") is None


def test_finetune_json_splits_labels_pixels(finetune_root):
    ds = load(finetune_root)
    assert ds.layout == "finetune"
    assert importers.split_counts(ds.records) == {s: len(f) for s, f in FILES.items()}
    assert ds.classes == ["airport", "beach"]
    records = by_file(ds)
    # train rows (one per caption) are grouped per image, in order
    assert records["airport_1.tif"].captions == tuple(captions_of("airport_1.tif"))
    # test rows have no label: derived from the filename prefix; numeric names are unknown (-1)
    assert records["beach_9.tif"].scene == "beach" and records["beach_9.tif"].label == 1
    assert records["00018.tif"].scene == "unknown" and records["00018.tif"].label == -1
    assert ds.pixels.shape == (len(ds.records), 16, 16, 3) and ds.pixels.dtype == np.uint8
    assert [r.split for r in ds.records] == sorted((r.split for r in ds.records), key=["train", "val", "test"].index)
    assert ds.pixels.std(axis=(1, 2, 3)).min() > 0   # real decoded content, not zeros


def test_class_list_names_unknown_images(finetune_root, tmp_path):
    class_list = tmp_path / "classes.txt"
    class_list.write_text("# file class\n00017.tif school\n00018.tif school\n")
    records = by_file(load(finetune_root, class_list=class_list))
    assert records["00017.tif"].scene == "school" and records["00018.tif"].label >= 0


def test_karpathy_flat_images(tmp_path):
    write_karpathy(tmp_path)
    write_images(tmp_path, in_split_folders=False)
    ds = load(tmp_path)
    assert ds.layout == "karpathy"
    assert importers.split_counts(ds.records) == {s: len(f) for s, f in FILES.items()}


def test_precomp_carves_val_by_image_seeded(tmp_path):
    write_precomp(tmp_path)
    write_images(tmp_path, in_split_folders=True)
    ds = load(tmp_path, val_fraction=0.5)
    counts = importers.split_counts(ds.records)
    n_train = len(FILES["train"]) + len(FILES["val"]) - len(FILES["val"])   # precomp train has only train files
    assert counts == {"train": n_train - 3, "val": 3, "test": len(FILES["test"])}
    assert all(len(r.captions) == 5 for r in ds.records)   # whole images moved, never single captions
    again = load(tmp_path, val_fraction=0.5)
    assert [r.split for r in again.records] == [r.split for r in ds.records]
    assert [r.file for r in ds.records if r.split == "test"] == FILES["test"]


def test_finetune_without_train_takes_precomp_minus_val_and_test(tmp_path):
    """PIR's RSICD train list = precomp train minus the published val images."""
    write_finetune(tmp_path, "rsicd", with_train=False)
    write_precomp(tmp_path)
    extra = tmp_path / "precomp"   # precomp train also lists the val images
    names = FILES["train"] + FILES["val"]
    (extra / "train_filename.txt").write_text("\n".join(names) + "\n")
    (extra / "train_caps.txt").write_text("\n".join(c for f in names for c in captions_of(f)) + "\n")
    write_images(tmp_path, in_split_folders=False)
    ds = load(tmp_path, "rsicd")
    assert ds.layout == "finetune+precomp"
    assert importers.split_counts(ds.records) == {s: len(f) for s, f in FILES.items()}


def test_parquet_layout(tmp_path):
    write_parquet(tmp_path)
    ds = load(tmp_path, "rsicd")
    assert ds.layout == "parquet"
    assert importers.split_counts(ds.records) == {s: len(f) for s, f in FILES.items()}
    assert by_file(ds)["beach_4.jpg"].scene == "beach"
    # the embedded bytes are decoded: the last test image was filled with value 10 * 2
    assert ds.records[-1].split == "test" and abs(float(ds.pixels[-1].mean()) - 20) < 3


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_image_names_the_file(finetune_root):
    (finetune_root / "val" / "beach_7.tif").unlink()
    with pytest.raises(ImportProblems) as exc:
        load(finetune_root)
    assert "beach_7.tif" in one_line(exc) and "not found" in str(exc.value)


def test_corrupt_image_names_the_file(finetune_root):
    (finetune_root / "test" / "airport_8.tif").write_bytes(b"not an image at all")
    with pytest.raises(ImportProblems) as exc:
        load(finetune_root)
    assert "airport_8.tif" in one_line(exc) and "unreadable" in str(exc.value)


def test_bad_json_names_the_file(finetune_root):
    (finetune_root / "rsitmd_val.json").write_text('[{"image": "val/x.tif", "caption": [')
    with pytest.raises(ValueError) as exc:
        load(finetune_root)
    assert "rsitmd_val.json" in one_line(exc) and "invalid JSON" in str(exc.value)


def rewrite_rows(path, edit) -> None:
    """Replace the JSON list in ``path`` by ``edit(rows)``."""
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def blank_third_caption(rows):
    rows[0]["caption"][2] = "   "
    return rows


def test_empty_caption_is_an_error_unless_dropped(finetune_root):
    rewrite_rows(finetune_root / "rsitmd_test.json", blank_third_caption)
    with pytest.raises(ImportProblems) as exc:
        load(finetune_root)
    assert "rsitmd_test.json" in one_line(exc) and "airport_8.tif" in str(exc.value) and "empty" in str(exc.value)
    ds = load(finetune_root, drop_empty=True)
    assert len(by_file(ds)["airport_8.tif"].captions) == 4


def test_duplicate_image_id(finetune_root):
    rewrite_rows(finetune_root / "rsitmd_val.json", lambda rows: rows + rows[:1])
    with pytest.raises(ImportProblems) as exc:
        load(finetune_root)
    assert "duplicate" in one_line(exc) and "airport_6.tif" in str(exc.value)


def test_image_in_two_splits(finetune_root):
    rewrite_rows(finetune_root / "rsitmd_test.json",
                 lambda rows: rows + [{"image": "test/airport_1.tif", "caption": captions_of("airport_1.tif")}])
    save_image(finetune_root / "test" / "airport_1.tif", 1)
    with pytest.raises(ImportProblems) as exc:
        load(finetune_root)
    assert "airport_1.tif" in one_line(exc) and "both train" in str(exc.value)


def test_no_annotations_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        load(tmp_path)
    assert str(tmp_path) in one_line(exc)


def test_precomp_caption_count_mismatch(tmp_path):
    write_precomp(tmp_path)
    caps = tmp_path / "precomp" / "train_caps.txt"
    caps.write_text(caps.read_text() + "one more caption\n")
    with pytest.raises(ValueError) as exc:
        load(tmp_path)
    assert "train_caps.txt" in one_line(exc)
