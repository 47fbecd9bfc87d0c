"""Importers on small fixtures of every layout: splits, labels, val carving, validation errors."""

from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.data_fixtures import (FILES, HUGE, captions_of, declared_tiff, png16_bytes, save_image, tiff_bytes,
                                      write_finetune, write_images, write_karpathy, write_parquet, write_precomp)
from pir.data import images, importers
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


def blank_third_caption(rows, text="   "):
    rows[0]["caption"][2] = text
    return rows


@pytest.mark.parametrize("text", ["   ", " ... !? "])   # punctuation only: nothing left for pre_caption
def test_empty_caption_is_an_error_unless_dropped(finetune_root, text):
    rewrite_rows(finetune_root / "rsitmd_test.json", lambda rows: blank_third_caption(rows, text))
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


# --------------------------------------------------------------------------- hardening: the walk

@pytest.fixture
def outside_root(tmp_path: Path) -> tuple[Path, Path]:
    """(dataset folder, a sibling folder outside it holding a same-named image)."""
    root, outside = tmp_path / "dataset", tmp_path / "outside"
    build("finetune", root)
    save_image(outside / "beach_7.tif", seed=99)
    return root, outside


def within(seconds: int, call):
    """``call()``, failed by SIGALRM if it runs longer (a looping walk must fail the test, not hang it)."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_walk_ends_on_link_loops_and_skips_links_out(outside_root):
    root, outside = outside_root
    (root / "loopa").symlink_to(".")
    (root / "loopb").symlink_to(".")
    (root / "val" / "up").symlink_to("..")
    (root / "self").symlink_to("self")            # ELOOP when followed
    (root / "out").symlink_to(outside)             # a folder outside the root
    (root / "out.tif").symlink_to(outside / "beach_7.tif")
    start = time.monotonic()
    ds = within(30, lambda: load(root))
    assert time.monotonic() - start < 30
    assert importers.split_counts(ds.records) == {s: len(f) for s, f in FILES.items()}
    assert ds.pixels.std(axis=(1, 2, 3)).min() > 0
    assert any("did not follow 2 link(s) leading outside" in note for note in ds.notes)


def test_image_only_behind_a_link_out_is_not_found(outside_root):
    root, outside = outside_root
    (root / "val" / "beach_7.tif").unlink()
    (root / "out").symlink_to(outside)
    with pytest.raises(ImportProblems) as exc:
        within(30, lambda: load(root))
    assert "beach_7.tif: image listed in rsitmd_val.json not found" in one_line(exc)
    assert f"did not follow 1 link(s) leading outside the dataset folder ({root / 'out'} -> {outside})" in str(exc.value)


# --------------------------------------------------------------------------- hardening: paths inside the root

def set_at(keys: tuple, value):
    """An edit of parsed JSON (or parquet rows) setting the item at ``keys`` to ``value``; DELETE removes it."""
    def edit(data):
        target = data
        for key in keys[:-1]:
            target = target[key]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
        return data
    return edit


class _Delete:
    """Marker: remove the key (its repr names it, so test ids are the same in every process: pytest-xdist)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()


def rewrite(path: Path, edit) -> None:
    """Apply ``edit`` to an annotation file: JSON data, parquet rows or text lines."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(edit(pq.read_table(path).to_pylist())), path)
    elif path.suffix == ".txt":
        path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    else:
        rewrite_rows(path, edit)


def build(layout: str, root: Path) -> None:
    """Annotations of ``layout`` and their images in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    {"finetune": write_finetune, "karpathy": write_karpathy, "precomp": write_precomp,
     "parquet": write_parquet}[layout](root)
    if layout != "parquet":
        write_images(root, in_split_folders=layout != "karpathy")


OUTSIDE = "<outside>"   # replaced by the absolute path of the image outside the root

ESCAPES = [
    ("finetune", "rsitmd_test.json", (0, "image"), OUTSIDE, "rsitmd_test.json: row 0: image '<outside>' is outside the dataset folder"),
    ("finetune", "rsitmd_train.json", (7, "image"), "../outside/beach_7.tif",
     "rsitmd_train.json: row 7: image '../outside/beach_7.tif' is outside the dataset folder"),
    ("finetune", "rsitmd_val.json", (1, "image"), "val/../../outside/beach_7.tif",
     "rsitmd_val.json: row 1: image 'val/../../outside/beach_7.tif' is outside the dataset folder"),
    ("karpathy", "dataset_rsitmd.json", ("images", 2, "filename"), OUTSIDE,
     "dataset_rsitmd.json: row 2: filename '<outside>' is outside the dataset folder"),
    ("karpathy", "dataset_rsitmd.json", ("images", 0, "filepath"), "..",
     "dataset_rsitmd.json: row 0: filepath '..' is outside the dataset folder"),
    ("precomp", "precomp/test_filename.txt", (0,), "../outside/beach_7.tif",
     "precomp/test_filename.txt: line 1: filename '../outside/beach_7.tif' is outside the dataset folder"),
    ("parquet", "data/test-00000-of-00001.parquet", (1, "filename"), OUTSIDE,
     "test-00000-of-00001.parquet: row 1: filename '<outside>' is outside the dataset folder"),
]


@pytest.mark.parametrize("layout, file, keys, path, message", ESCAPES, ids=[f"{c[0]}-{c[3]}" for c in ESCAPES])
def test_annotation_path_outside_the_root(tmp_path, monkeypatch, layout, file, keys, path, message):
    root, outside = tmp_path / "dataset", tmp_path / "outside" / "beach_7.tif"
    build(layout, root)
    save_image(outside, seed=99)
    rewrite(root / file, set_at(keys, str(outside) if path == OUTSIDE else path))
    opened = []
    real_open = images.Image.open
    monkeypatch.setattr(images.Image, "open", lambda source, *a, **k: opened.append(source) or real_open(source, *a, **k))
    with pytest.raises(ImportProblems) as exc:
        load(root, "rsicd" if layout == "parquet" else "rsitmd")
    assert message.replace(OUTSIDE, str(outside)) in one_line(exc)
    assert not any(isinstance(s, (str, Path)) and "outside" in str(s) for s in opened)   # never opened


def test_annotation_path_through_a_link_out(outside_root, monkeypatch):
    root, outside = outside_root
    (root / "escape").symlink_to(outside)
    rewrite_rows(root / "rsitmd_val.json", set_at((1, "image"), "escape/beach_7.tif"))
    opened = []
    monkeypatch.setattr("pir.data.importers.dataset.decode_all", lambda sources, *a, **k: opened.extend(sources))
    with pytest.raises(ImportProblems) as exc:
        load(root)
    assert ("rsitmd_val.json: row 1: image 'escape/beach_7.tif' leads outside the dataset folder through a link"
            in one_line(exc))
    assert not opened


# --------------------------------------------------------------------------- hardening: image depth and size

def gradient16(bands: int = 3) -> np.ndarray:
    """uint16 [32, 32, bands] ramps spread over 0..4000, a different offset per band."""
    ramp = np.add.outer(np.arange(32), np.arange(32)) * 60
    return np.stack([(ramp + 80 * k) % 4001 for k in range(bands)], -1).astype(np.uint16)


def assert_contrast_kept(pixels: np.ndarray, source: np.ndarray) -> None:
    assert pixels.dtype == np.uint8 and pixels.std() > 50 and (pixels == 255).mean() < 0.05
    for band in range(pixels.shape[-1]):   # the same ramps, rescaled: high and low bytes put together right
        assert np.corrcoef(pixels[..., band].ravel(), source[..., min(band, source.shape[-1] - 1)].ravel())[0, 1] > 0.98


def test_16bit_gray_tiff_is_stretched_not_saturated(tmp_path):
    values = np.random.default_rng(0).integers(0, 4001, (64, 64)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "gray16.tif")
    with Image.open(tmp_path / "gray16.tif") as image:
        assert image.mode == "I;16" and (np.asarray(image.convert("RGB")) == 255).mean() > 0.9   # what a cast does
    pixels = images.decode_image(tmp_path / "gray16.tif", 64)
    assert_contrast_kept(pixels, values[..., None])


@pytest.mark.parametrize("encode", [lambda v: tiff_bytes(v), lambda v: tiff_bytes(v, deflate=True), png16_bytes],
                         ids=["tiff", "tiff-deflate", "png"])
def test_16bit_rgb_keeps_every_bit(encode):
    values = gradient16()
    with Image.open(io.BytesIO(encode(values))) as image:
        assert image.mode == "RGB" and np.asarray(image).max() < 16   # PIL alone keeps only the high byte
    assert_contrast_kept(images.decode_image(encode(values), 32), values)


@pytest.mark.parametrize("scale", [1.0, 4000.0])
def test_float_tiff_is_stretched(tmp_path, scale):
    values = (np.random.default_rng(1).random((64, 64)) * scale).astype(np.float32)
    values[:4] = np.nan   # float no-data: black, not an error
    (tmp_path / "float.tif").write_bytes(tiff_bytes(values))
    pixels = images.decode_image(tmp_path / "float.tif", 64)
    assert (pixels[:4] == 0).all()
    assert_contrast_kept(pixels[4:], np.nan_to_num(values[4:])[..., None])


def test_16bit_image_through_the_import(finetune_root):
    (finetune_root / "test" / "airport_8.tif").write_bytes(tiff_bytes(gradient16(), deflate=True))
    ds = load(finetune_root)
    row = [r.file for r in ds.records].index("airport_8.tif")
    assert ds.pixels[row].std() > 50 and (ds.pixels[row] == 255).mean() < 0.05


@pytest.mark.parametrize("payload, reason", [
    (lambda: tiff_bytes(gradient16(4), photometric=5), "16-bit CMYK images are not supported"),
    (lambda: tiff_bytes(np.full((20, 20), np.nan, np.float32)), "image has no finite pixel value in some band"),
    (lambda: tiff_bytes(np.zeros((1, 1, 3), np.uint8)), "image is 1x1 pixels, smaller than the 16x16 minimum"),
    (lambda: tiff_bytes(np.zeros((15, 300, 3), np.uint8)), "image is 300x15 pixels, smaller than the 16x16 minimum"),
], ids=["cmyk16", "all-nan", "1x1", "thin"])
def test_refused_image_is_one_problem_naming_the_file(finetune_root, payload, reason):
    (finetune_root / "val" / "beach_7.tif").write_bytes(payload())
    with pytest.raises(ImportProblems) as exc:
        load(finetune_root)
    assert f"{finetune_root / 'val' / 'beach_7.tif'}: {reason}" in one_line(exc)


def test_image_above_the_pixel_cap_is_one_problem_naming_the_file(finetune_root):
    declared_tiff(finetune_root / "val" / "beach_7.tif")   # 16 KB declaring 40000x40000: refused from the header
    with pytest.raises(ImportProblems) as exc:
        load(finetune_root)
    assert f"{finetune_root / 'val' / 'beach_7.tif'}: {HUGE}" in one_line(exc)


def test_embedded_parquet_images_are_capped_too(tmp_path):
    write_parquet(tmp_path)   # 20x20 JPEG bytes inside the parquet rows
    with pytest.raises(ImportProblems) as exc:
        load(tmp_path, "rsicd", max_pixels=399)
    assert ("test-00000-of-00001.parquet:airport_8.jpg: image is 20x20 pixels (400), above the 399-pixel cap; "
            "raise it with --max-pixels / data.max_image_pixels") in one_line(exc)
    assert load(tmp_path, "rsicd", max_pixels=400).pixels.shape[0] == sum(len(f) for f in FILES.values())


def test_smallest_accepted_image_is_16px(tmp_path):
    save_image(tmp_path / "small.png", seed=0, size=images.MIN_SIDE)
    assert images.decode_image(tmp_path / "small.png", 32).shape == (32, 32, 3)


# --------------------------------------------------------------------------- hardening: malformed rows

MALFORMED = [
    ("finetune", "rsitmd_train.json", (3, "caption"), None,
     "rsitmd_train.json: row 3: caption is null, expected a string or a list of strings"),
    ("finetune", "rsitmd_train.json", (3, "caption"), 5,
     "rsitmd_train.json: row 3: caption is int 5, expected a string or a list of strings"),
    ("finetune", "rsitmd_test.json", (1, "caption"), [1, 2, 3], "rsitmd_test.json: row 1: caption[0] is int 1, expected a string"),
    ("finetune", "rsitmd_test.json", (0, "caption", 4), None, "rsitmd_test.json: row 0: caption[4] is null, expected a string"),
    ("finetune", "rsitmd_train.json", (2, "image"), None, "rsitmd_train.json: row 2: image is null, expected a string"),
    ("finetune", "rsitmd_train.json", (2, "image"), 42, "rsitmd_train.json: row 2: image is int 42, expected a string"),
    ("finetune", "rsitmd_test.json", (2, "image"), "", "rsitmd_test.json: row 2: image is an empty string"),
    ("finetune", "rsitmd_val.json", (1, "caption"), DELETE, "rsitmd_val.json: row 1: caption is missing"),
    ("finetune", "rsitmd_val.json", (0,), ["val/airport_6.tif"],
     "rsitmd_val.json: row 0: row is list ['val/airport_6.tif'], expected an object"),
    ("finetune", "rsitmd_train.json", (0, "label_name"), 3, "rsitmd_train.json: row 0: label_name is int 3, expected a string"),
    ("karpathy", "dataset_rsitmd.json", ("images", 1, "sentences"), "a caption",
     "dataset_rsitmd.json: row 1: sentences is str 'a caption', expected a list"),
    ("karpathy", "dataset_rsitmd.json", ("images", 1, "sentences", 2), 7,
     "dataset_rsitmd.json: row 1: sentences[2] is int 7, expected an object with 'raw' or a string"),
    ("karpathy", "dataset_rsitmd.json", ("images", 4, "sentences", 0, "raw"), None,
     "dataset_rsitmd.json: row 4: sentences[0].raw is null, expected a string"),
    ("karpathy", "dataset_rsitmd.json", ("images", 5, "filename"), None,
     "dataset_rsitmd.json: row 5: filename is null, expected a string"),
    ("karpathy", "dataset_rsitmd.json", ("images", 5, "split"), "dev",
     "dataset_rsitmd.json: row 5: split is 'dev', expected one of train, restval, val, valid, test"),
    ("karpathy", "dataset_rsitmd.json", ("images", 0), "x", "dataset_rsitmd.json: row 0: row is str 'x', expected an object"),
    ("parquet", "data/test-00000-of-00001.parquet", (1, "filename"), None,
     "test-00000-of-00001.parquet: row 1: filename is null, expected a string"),
    ("parquet", "data/test-00000-of-00001.parquet", (2, "captions"), None,
     "test-00000-of-00001.parquet: row 2: captions is null, expected a list of strings"),
    ("parquet", "data/test-00000-of-00001.parquet", (0, "captions", 1), None,
     "test-00000-of-00001.parquet: row 0: captions[1] is null, expected a string"),
]


@pytest.mark.parametrize("layout, file, keys, value, message", MALFORMED,
                         ids=[f"{c[0]}-{'.'.join(map(str, c[2]))}-{c[3]!r}"[:60] for c in MALFORMED])
def test_malformed_row_is_one_problem_naming_file_row_field(tmp_path, layout, file, keys, value, message):
    build(layout, tmp_path)
    rewrite(tmp_path / file, set_at(keys, value))
    with pytest.raises(ImportProblems) as exc:
        load(tmp_path, "rsicd" if layout == "parquet" else "rsitmd")
    assert message in one_line(exc) and exc.value.problems == [message]
    assert "drop_empty_captions" not in str(exc.value)   # a wrong type is not an empty caption


def test_parquet_captions_of_numbers(tmp_path):
    write_parquet(tmp_path)
    rewrite(tmp_path / "data" / "valid-00000-of-00001.parquet",
            lambda rows: [row | {"captions": [1, 2, 3]} for row in rows])
    with pytest.raises(ImportProblems) as exc:
        load(tmp_path, "rsicd")
    assert "valid-00000-of-00001.parquet: row 0: captions[0] is int 1, expected a string" in one_line(exc)
    assert len(exc.value.problems) == len(FILES["val"]) and "empty" not in str(exc.value)


def test_every_malformed_row_of_every_file_is_listed(finetune_root):
    rewrite_rows(finetune_root / "rsitmd_train.json", set_at((3, "caption"), [1, 2]))
    rewrite_rows(finetune_root / "rsitmd_test.json", lambda rows: [set_at((0, "image"), None)(rows)[0], 7] + rows[1:])
    with pytest.raises(ImportProblems) as exc:
        load(finetune_root)
    assert exc.value.problems == ["rsitmd_train.json: row 3: caption[0] is int 1, expected a string",
                                  "rsitmd_test.json: row 0: image is null, expected a string",
                                  "rsitmd_test.json: row 1: row is int 7, expected an object"]
    assert str(exc.value).startswith("3 problem(s) in the dataset: rsitmd_train.json: row 3:") and "\n" not in str(exc.value)
