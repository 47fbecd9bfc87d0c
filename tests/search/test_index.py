"""pir index: incremental generations, unreadable files, multi-band TIFF, atomicity under kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pir.data.images import read_rgb, stretch_to_uint8
from pir.search.folder import CURRENT, IndexBusy
from pir.search.index import build_index, load_index
from pir_tools.search import PAUSE_ENV, index_main, search_main

from tests.data.data_fixtures import HUGE, declared_tiff
from tests.search.conftest import scene_pixels, write_images

ROOT = Path(__file__).resolve().parents[2]


def _index(folder: Path, out: Path, encoder, checkpoint, **kw):
    return build_index(folder, out, encoder, checkpoint, progress=False, batch_size=4, **kw)


def test_second_run_embeds_nothing_and_changes_are_picked_up(tmp_path, encoder, checkpoint):
    images = write_images(tmp_path / "images", 3)
    first = _index(tmp_path / "images", tmp_path / "index", encoder, checkpoint)
    assert (first.new, first.unchanged, first.unreadable) == (9, 0, [])
    before = load_index(tmp_path / "index")

    again = _index(tmp_path / "images", tmp_path / "index", encoder, checkpoint)
    assert (again.new, again.unchanged) == (0, 9)
    after = load_index(tmp_path / "index")
    assert after.generation.name == "gen-2" and np.array_equal(after.vectors, before.vectors)
    assert [e.path for e in after.entries] == [e.path for e in before.entries]

    os.utime(images[0], ns=(1, 1))                                 # touched, same bytes: hashed, reused
    images[1].write_bytes(images[2].read_bytes())                  # changed bytes, but known content: reused
    Image.fromarray(scene_pixels(1, 99)).save(images[3])          # really changed
    write_images(tmp_path / "images", 1, start=10)                 # three new files
    changed = _index(tmp_path / "images", tmp_path / "index", encoder, checkpoint)
    assert (changed.new, changed.unchanged, changed.unreadable) == (4, 8, [])
    latest = load_index(tmp_path / "index")
    assert latest.generation.name == "gen-3"
    # only the live generation and the one before it are kept
    assert sorted(p.name for p in (tmp_path / "index").glob("gen-*")) == ["gen-2", "gen-3"]
    # a reused row is the same vector as embedding the file afresh
    rows = {e.path: i for i, e in enumerate(latest.entries)}
    fresh = encoder.encode_images(encoder.preprocess(read_rgb(images[1]))[None])[0]
    assert np.allclose(latest.vectors[rows[images[1].name]].astype(np.float32), fresh, atol=2e-3)


def test_a_corrupt_file_is_listed_and_skipped(tmp_path, checkpoint, capsys):
    write_images(tmp_path / "images", 2)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "images" / "sub").mkdir()
    (tmp_path / "images" / "sub" / "tiny.png").write_bytes((tmp_path / "images" / "forest_0.png").read_bytes()[:40])
    code = index_main([str(tmp_path / "images"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index")])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.strip().splitlines()[-1] == "indexed 6 new, 0 unchanged, 2 unreadable"
    assert "unreadable: broken.jpg: unreadable image" in err and "unreadable: sub/tiny.png:" in err
    index = load_index(tmp_path / "index")
    assert len(index.entries) == 6 and "broken.jpg" not in {e.path for e in index.entries}
    assert [u["path"] for u in index.identity["unreadable"]] == ["broken.jpg", "sub/tiny.png"]


def test_four_band_tiff_is_read_with_bands(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 4000, (4, 40, 48)).astype(np.uint16)   # planar (band-first), as GeoTIFFs often are
    bands[3] = 3000 - bands[0] // 2                                 # a near-infrared-like band unlike the others
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "scene_1.tif", bands, photometric="minisblack", planarconfig="separate")
    tifffile.imwrite(tmp_path / "pages.tif", bands, photometric="minisblack")          # one band per page
    tifffile.imwrite(tmp_path / "contig.tif", np.moveaxis(bands, 0, -1), photometric="minisblack",
                     planarconfig="contig")   # interleaved
    rgb = read_rgb(tmp_path / "images" / "scene_1.tif", (4, 3, 2))
    assert rgb.shape == (40, 48, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, stretch_to_uint8(np.moveaxis(bands[[3, 2, 1]], 0, -1)))
    for layout in ("pages.tif", "contig.tif"):
        assert np.array_equal(read_rgb(tmp_path / layout, (4, 3, 2)), rgb), layout
    assert not np.array_equal(rgb, read_rgb(tmp_path / "images" / "scene_1.tif"))   # default 1,2,3 differs
    with pytest.raises(ValueError, match="the image does not have"):
        read_rgb(tmp_path / "images" / "scene_1.tif", (5, 3, 2))

    assert index_main([str(tmp_path / "images"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index"),
                       "--bands", "4,3,2"]) == 0
    assert capsys.readouterr().out.strip().endswith("indexed 1 new, 0 unchanged, 0 unreadable")
    index = load_index(tmp_path / "index")
    assert index.identity["bands"] == [4, 3, 2] and (index.entries[0].width, index.entries[0].height) == (48, 40)
    assert search_main([str(tmp_path / "index"), "--image", str(tmp_path / "images" / "scene_1.tif"),
                        "--bands", "4,3,2", "--top", "1"]) == 0
    score, path = capsys.readouterr().out.strip().split("\t")
    assert float(score) == pytest.approx(1.0, abs=2e-3) and Path(path).name == "scene_1.tif"
    # other bands are another index: nothing is reused
    assert index_main([str(tmp_path / "images"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index"),
                       "--bands", "3,2,1"]) == 0
    assert capsys.readouterr().out.strip().endswith("indexed 1 new, 0 unchanged, 0 unreadable")


def test_kill_during_indexing_leaves_the_previous_index_usable(tmp_path, encoder, checkpoint):
    write_images(tmp_path / "images", 2)
    _index(tmp_path / "images", tmp_path / "index", encoder, checkpoint)
    before = load_index(tmp_path / "index")
    vectors, pointer = np.array(before.vectors), (tmp_path / "index" / CURRENT).read_bytes()
    write_images(tmp_path / "images", 4, start=10)   # 12 new files: three batches of 4

    marker = tmp_path / "paused"
    env = {**os.environ, PAUSE_ENV: str(marker), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "pir_tools.cli", "index", str(tmp_path / "images"),
                             "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index"), "--batch-size", "4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), f"indexer never reached its first batch: {proc.communicate()[1][-2000:]!r}"
    # a real second process holds the index: another writer gives up in one line naming it
    with pytest.raises(IndexBusy, match=rf"another pir index run \(pid {proc.pid}\) is writing this index"):
        _index(tmp_path / "images", tmp_path / "index", encoder, checkpoint, lock_timeout=0)
    os.kill(proc.pid, signal.SIGKILL)      # mid-run: one batch embedded into the new generation, thumbnails written
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = list((tmp_path / "index").glob(".gen-*"))   # listed in the marker before it was made
    assert partial and (partial[0] / "fresh.npy").is_file()          # the killed run had started writing
    assert (tmp_path / "index" / CURRENT).read_bytes() == pointer
    survived = load_index(tmp_path / "index")
    assert np.array_equal(np.array(survived.vectors), vectors) and len(survived.entries) == 6

    done = _index(tmp_path / "images", tmp_path / "index", encoder, checkpoint)
    assert (done.new, done.unchanged) == (12, 6)
    assert not list((tmp_path / "index").glob(".gen-*"))             # the killed run's leftovers are gone


# --------------------------------------------------------------------------- size caps (docs/design.md)

def test_an_image_declaring_40000x40000_is_unreadable_for_index_and_search(tmp_path, checkpoint, capsys):
    write_images(tmp_path / "images", 1)                  # three 48x48 PNGs
    declared_tiff(tmp_path / "images" / "huge.tif")      # 16 KB, 4.5 GiB if decoded: refused from its header
    index = str(tmp_path / "index")
    assert index_main([str(tmp_path / "images"), "--checkpoint", str(checkpoint), "--out", index]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == "indexed 3 new, 0 unchanged, 1 unreadable"
    assert f"unreadable: huge.tif: {HUGE}" in err.splitlines()

    assert search_main([index, "--image", str(tmp_path / "images" / "huge.tif")]) == 1
    assert capsys.readouterr().err.strip() == f"pir search: {HUGE}"
    query = str(tmp_path / "images" / "forest_0.png")
    assert search_main([index, "--image", query, "--max-pixels", "2303"]) == 1
    assert "image is 48x48 pixels (2.3 k), above the 2.3 k-pixel cap" in capsys.readouterr().err
    assert search_main([index, "--image", query, "--max-pixels", "2304", "--top", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("forest_0.png")
    with pytest.raises(SystemExit):
        search_main([index, "--image", query, "--max-pixels", "0"])
    assert "--max-pixels: '0': expected a whole number >= 1" in capsys.readouterr().err


def test_index_max_pixels_flag_and_raising_it(tmp_path, checkpoint, capsys):
    write_images(tmp_path / "images", 1)
    Image.fromarray(scene_pixels(0, 7, side=64)).save(tmp_path / "images" / "big.png")
    args = [str(tmp_path / "images"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index")]
    assert index_main(args + ["--max-pixels", "2304"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("indexed 3 new, 0 unchanged, 1 unreadable")
    assert "unreadable: big.png: image is 64x64 pixels (4.1 k), above the 2.3 k-pixel cap" in err
    assert index_main(args) == 0   # the default cap: the refused file is read on the next run
    assert capsys.readouterr().out.strip().endswith("indexed 1 new, 3 unchanged, 0 unreadable")


def test_an_archive_bomb_source_is_refused_unless_the_ratio_is_raised(tmp_path, checkpoint, capsys):
    images = write_images(tmp_path / "images", 1)
    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in images:
            zf.write(path, f"scenes/{path.name}")
        zf.writestr("scenes/padding.bin", bytes(8 << 20))   # 8 MiB of zeros: ~1000x
    args = [str(archive), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "index")]
    assert index_main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pir index: {archive}: would expand to ") and "above the 100x limit" in err
    assert "--max-archive-ratio" in err and "\n" not in err
    assert index_main(args + ["--max-archive-bytes", "4e6"]) == 1
    assert "above the 3.81 MiB limit on extracted archives" in capsys.readouterr().err
    assert index_main(args + ["--max-archive-ratio", "1e5"]) == 0
    assert capsys.readouterr().out.strip().endswith("indexed 3 new, 0 unchanged, 0 unreadable")
