"""The leakage audit: the DCT hash, all-pairs distances, planted near-duplicates found (recall and precision),
shared captions, data.exclude_leaked, audit.against."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pir.config import AuditConfig, SyntheticConfig
from pir.data import leakage, synthetic
from pir.data.prepared import ImageRecord, load_prepared, write_prepared
from pir.data.synthetic import duplicates
from pir.pipeline.audit import against_report, load_against
from pir.pipeline.paths import Paths

THRESHOLD = AuditConfig().threshold
PLANTED = SyntheticConfig(images=150, image_size=128, classes=6, planted_duplicates=6)


@pytest.fixture(scope="module")
def planted():
    """(classes, records, pixels) of a small generated dataset with six planted near-duplicates."""
    return synthetic.generate(PLANTED, seed=0, progress=False)


def test_hash_is_stable_under_alterations_and_far_between_scenes(planted):
    _, records, pixels = planted
    originals = np.asarray(pixels[:12])
    bits = leakage.phash_bits(originals)
    assert bits.shape == (12, 256) and bits.dtype == bool
    rng = np.random.default_rng(0)
    for kind in duplicates.KINDS:
        altered = np.stack([duplicates.alter(p, kind, rng) for p in originals])
        assert not np.array_equal(altered, originals)
        distances = (leakage.phash_bits(altered) != bits).sum(1)
        assert distances.max() <= THRESHOLD, (kind, distances)
    between = leakage.hamming_matrix(bits, bits)[np.triu_indices(12, 1)]
    assert between.min() > THRESHOLD


def test_hash_agrees_with_imagehash_phash(planted):
    # same algorithm as imagehash.phash; only the resize kernel differs (torch bilinear+antialias vs PIL)
    import imagehash

    pixels = np.asarray(planted[2][:20])
    ours = leakage.phash_bits(pixels, hash_size=8)
    theirs = np.stack([imagehash.phash(Image.fromarray(p), hash_size=8).hash.reshape(-1) for p in pixels])
    assert np.median((ours != theirs).sum(1)) <= 2
    iu = np.triu_indices(len(pixels), 1)
    assert np.corrcoef(leakage.hamming_matrix(ours, ours)[iu], leakage.hamming_matrix(theirs, theirs)[iu])[0, 1] > 0.9


def test_blockwise_distances_equal_a_brute_force_loop():
    rng = np.random.default_rng(1)
    a, b = rng.random((23, 64)) < 0.5, rng.random((17, 64)) < 0.5
    expected = np.array([[sum(x != y for x, y in zip(row_a, row_b)) for row_b in b] for row_a in a])
    blocks = list(leakage.distance_blocks(a, b, block=5))
    assert [start for start, _ in blocks] == [0, 5, 10, 15, 20]
    assert np.array_equal(np.concatenate([d for _, d in blocks]), expected)
    rows, cols, dists = leakage.near_pairs(a, b, 28)
    assert sorted(zip(rows, cols)) == sorted(zip(*np.nonzero(expected <= 28)))
    assert np.array_equal(dists, expected[rows, cols])


def test_audit_finds_exactly_the_planted_pairs(planted):
    _, records, pixels = planted
    answer = synthetic.planted_duplicates(PLANTED, 0, records)
    by_file = {r.file: r for r in records}
    assert len(answer) == 6 and len({t for _, t in answer}) == 6
    for source, target in answer:   # train -> val/test, same class, new captions
        assert by_file[source].split == "train" and by_file[target].split in ("val", "test")
        assert by_file[source].scene == by_file[target].scene and by_file[source].captions != by_file[target].captions

    report = leakage.audit_report(records, leakage.phash_bits(pixels), THRESHOLD)
    found = {(p["a"], p["b"]) for p in report["near_duplicate_pairs"]}
    assert found == {tuple(pair) for pair in answer}            # recall 1 and precision 1
    assert report["within_split_pairs"] == []
    assert report["threshold"] == THRESHOLD and report["hash_bits"] == 256
    assert all(p["distance"] <= THRESHOLD and p["split_a"] == "train" for p in report["near_duplicate_pairs"])
    # the closest cross-split pairs start with the planted ones, and the next genuine pair is far
    closest = report["closest_cross_split_pairs"]
    assert {(p["a"], p["b"]) for p in closest[:6]} == found and closest[6]["distance"] > 2 * THRESHOLD
    leaked_test = {t for _, t in answer if by_file[t].split == "test"}
    assert report["counts"]["leaked_test_images"] == len(leaked_test) == \
        len(leakage.leaked_images(report["near_duplicate_pairs"], "test"))


def test_no_planted_pairs_leaves_the_dataset_as_it_was():
    small = dataclasses.replace(PLANTED, images=30, image_size=32, planted_duplicates=0)
    _, records, pixels = synthetic.generate(small, seed=0, progress=False)
    _, records6, pixels6 = synthetic.generate(dataclasses.replace(small, planted_duplicates=3), seed=0, progress=False)
    changed = {records6[i].file for i in range(30) if not np.array_equal(pixels[i], pixels6[i])}
    assert changed == {t for _, t in synthetic.planted_duplicates(dataclasses.replace(small, planted_duplicates=3),
                                                                  0, records6)}
    assert synthetic.planted_duplicates(small, 0, records) == []


def test_shared_captions_are_compared_as_the_dedup_protocol_normalises_them():
    records = [ImageRecord("a_1.png", "train", "a", 0, ("A plane is parked.", "two planes")),
               ImageRecord("a_2.png", "test", "a", 0, ("a plane is parked", "one lonely plane")),
               ImageRecord("a_3.png", "val", "a", 0, ("Two planes!", "a plane is parked"))]
    shared = leakage.shared_captions(records)
    assert shared["strings"] == 2
    assert shared["by_split_pair"] == {"train-val": 2, "train-test": 1, "val-test": 1}
    assert shared["captions"] == {"train": 2, "val": 2, "test": 1}
    assert shared["examples"][0] == {"caption": "a plane is parked", "images": {"train": 1, "val": 1, "test": 1}}


def test_exclude_leaked_drops_the_test_images_with_a_duplicate_in_train_or_val(tmp_path, planted):
    classes, records, pixels = planted
    write_prepared(tmp_path, "synthetic", classes, records, pixels)
    prepared = load_prepared(tmp_path)
    test = prepared.split("test")
    files = [records[row].file for row in test.image_rows]
    train_file = next(r.file for r in records if r.split == "train")
    val_file = next(r.file for r in records if r.split == "val")
    pairs = [{"a": train_file, "b": files[1], "split_a": "train", "split_b": "test", "distance": 3},
             {"a": val_file, "b": files[4], "split_a": "val", "split_b": "test", "distance": 0},
             {"a": train_file, "b": val_file, "split_a": "train", "split_b": "val", "distance": 1}]
    kept, note = leakage.without_leaked(records, test, {"threshold": 24, "hash_bits": 256,
                                                        "near_duplicate_pairs": pairs})
    assert note["excluded_test_images"] == 2 and note["excluded_files"] == sorted([files[1], files[4]])
    assert [records[row].file for row in kept.image_rows] == [f for i, f in enumerate(files) if i not in (1, 4)]
    assert kept.n_texts == test.n_texts - 2 * PLANTED.captions_per_image
    for position, row in enumerate(kept.image_rows):   # every caption still points at its own image
        assert [kept.captions[t] for t in np.flatnonzero(kept.txt2img == position)] == list(records[row].captions)
    with pytest.raises(FileNotFoundError, match="run the audit stage"):
        leakage.read_audit(tmp_path / "audit.json")


def test_against_a_second_dataset(tmp_path, planted):
    classes, records, pixels = planted
    with pytest.raises(FileNotFoundError) as error:
        load_against(AuditConfig(against=str(tmp_path / "nowhere")), 128, 0, tmp_path / "downloads")
    assert str(error.value) == f"{tmp_path / 'nowhere'}: audit.against not found " \
                               "(a dataset folder, archive, URL or prepared folder)"
    # a prepared folder holding a re-encoded copy of one of our test images
    targets = {t for _, t in synthetic.planted_duplicates(PLANTED, 0, records)}
    test_row = next(i for i, r in enumerate(records) if r.split == "test" and r.file not in targets)
    copy = duplicates.alter(np.asarray(pixels[test_row]), "jpeg", np.random.default_rng(0))
    shared = records[0].captions[0]   # one caption string of ours, in their test split
    other = [ImageRecord("other_1.png", "train", "x", 0, ("a copy",)), ImageRecord("other_2.png", "test", "x", 0, (shared,))]
    write_prepared(tmp_path / "other", "rsicd", ["x"], other, np.stack([copy, np.asarray(pixels[0])[::-1]]))
    name, their_records, their_pixels = load_against(AuditConfig(against=str(tmp_path / "other")), 128, 0, tmp_path)
    pairs = leakage.against_pairs([r.file for r in records], [r.split for r in records], leakage.phash_bits(pixels),
                                  [r.file for r in their_records], [r.split for r in their_records],
                                  leakage.phash_bits(their_pixels), THRESHOLD, name)
    assert [(p["a"], p["b"], p["split_b"]) for p in pairs] == [(records[test_row].file, "other_1.png", "rsicd/train")]
    # what the audit stage reports of it: the same pairs, and the caption string both datasets hold
    cfgs = SimpleNamespace(data=SimpleNamespace(cache_res=128), seed=0)
    report = against_report(AuditConfig(against=str(tmp_path / "other")), cfgs, Paths(tmp_path), records,
                            leakage.phash_bits(pixels))
    assert (report["near_duplicate_pairs"], report["images_with_a_duplicate"], report["shared_caption_strings"]) == \
        (pairs, 1, 1)
