"""pir index on user data: it never deletes or overwrites what it did not create, one writer at a time,
readers never see a half-switched index, and what cannot be read is listed while the rest is indexed
(docs/search-and-geo.md, "Index folder")."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import pir.search.index as index_module
from pir import files
from pir.pipeline.paths import Paths
from pir.search.folder import CURRENT, LOCK, MARKER, SOURCE, IndexBusy, IndexFolderRefused
from pir.search.index import build_index, load_index
from pir_tools.search import index_main

from tests.search.conftest import write_images


def _build(source: Path, out: Path, encoder, checkpoint, **kw):
    return build_index(source, out, encoder, checkpoint, progress=False, batch_size=8, **kw)


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under ``folder`` (hidden ones too): file bytes, link targets, folders."""
    seen: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            seen[rel] = (f"-> {os.readlink(path)}" if path.is_symlink() else
                         "<dir>" if path.is_dir() else path.read_bytes())
    return seen


def pir_index(capsys, source: Path, out: Path, checkpoint: Path, *extra: str) -> tuple[int, str, str]:
    code = index_main([str(source), "--checkpoint", str(checkpoint), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused_in_one_line(code: int, err: str, *words: str) -> None:
    assert code == 1 and err.startswith("pir index: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def users_folder(folder: Path) -> Path:
    """A folder of the user's that looks like an index of the old layout to a careless cleanup."""
    (folder / "gen-1").mkdir(parents=True)
    (folder / "gen-1" / "thesis.tex").write_text("chapter one")
    (folder / "gen-2").mkdir()
    (folder / ".gen-5.cafe").mkdir()
    (folder / ".gen-5.cafe" / "draft.txt").write_text("draft")
    (folder / CURRENT).write_text("my current thoughts\n")
    (folder / "source").mkdir()
    (folder / "source" / "notes.txt").write_text("mine")
    return folder


def make_zip(images: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(images.iterdir()):
            zf.write(path, f"tiles/{path.name}")
    return archive


# --------------------------------------------------------------------------- what the index may touch

def test_a_foreign_folder_survives_byte_identical(tmp_path, checkpoint, capsys):
    write_images(tmp_path / "images", 1)
    mine = users_folder(tmp_path / "mine")
    before = snapshot(mine)
    code, _, err = pir_index(capsys, tmp_path / "images", mine, checkpoint)
    refused_in_one_line(code, err, str(mine.resolve()), "not empty and not an index", MARKER)
    # a .zip SOURCE is refused too, before its extraction could replace mine/source
    archive = make_zip(tmp_path / "images", tmp_path / "tiles.zip")
    code, _, err = pir_index(capsys, archive, mine, checkpoint)
    refused_in_one_line(code, err, "not empty and not an index")
    assert snapshot(mine) == before            # no lock file, no marker, nothing deleted or rewritten


def test_a_folder_of_the_old_format_is_refused_with_a_hint(tmp_path, checkpoint, capsys):
    write_images(tmp_path / "images", 1)
    old = tmp_path / "old"
    (old / "gen-1").mkdir(parents=True)
    (old / "gen-1" / "index.json").write_text('{"format": 1}')
    (old / "thumbs").mkdir()
    (old / CURRENT).write_text("gen-1\n")
    before = snapshot(old)
    code, _, err = pir_index(capsys, tmp_path / "images", old, checkpoint)
    refused_in_one_line(code, err, "older pir", "format 1", "new or empty folder")
    assert snapshot(old) == before


def test_an_index_folder_overlapping_the_source_is_refused(tmp_path, encoder, checkpoint, capsys):
    images = tmp_path / "images"
    write_images(images, 1)
    before = snapshot(tmp_path)
    code, _, err = pir_index(capsys, images, images, checkpoint)                     # --out == SOURCE
    refused_in_one_line(code, err, "is the folder being indexed")
    code, _, err = pir_index(capsys, images, images / "index", checkpoint)           # --out inside SOURCE
    refused_in_one_line(code, err, "lies inside the folder being indexed")
    assert snapshot(tmp_path) == before and not (images / "index").exists()

    _build(images, tmp_path / "index", encoder, checkpoint)                          # SOURCE inside --out
    write_images(tmp_path / "index" / "tiles", 1)
    before = snapshot(tmp_path)
    code, _, err = pir_index(capsys, tmp_path / "index" / "tiles", tmp_path / "index", checkpoint)
    refused_in_one_line(code, err, "lies inside the index folder", f"{SOURCE}/")
    with pytest.raises(IndexFolderRefused, match="lies inside the index folder"):   # the library checks it too
        _build(tmp_path / "index" / "tiles", tmp_path / "index", encoder, checkpoint)
    assert snapshot(tmp_path) == before


def test_an_archive_is_extracted_only_into_the_index_own_source_folder(tmp_path, encoder, checkpoint, capsys):
    archive = make_zip(write_images(tmp_path / "images", 1)[0].parent, tmp_path / "tiles.zip")
    # an index of ours where the user made a source/ folder: extraction must not replace it
    _build(tmp_path / "images", tmp_path / "ours", encoder, checkpoint)
    (tmp_path / "ours" / "source").mkdir()
    (tmp_path / "ours" / "source" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path / "ours")
    code, _, err = pir_index(capsys, archive, tmp_path / "ours", checkpoint)
    refused_in_one_line(code, err, "not created by this index")
    assert snapshot(tmp_path / "ours") == before
    # an archive inside the index folder: its extraction could replace it
    os.replace(archive, tmp_path / "ours" / "tiles.zip")
    code, _, err = pir_index(capsys, tmp_path / "ours" / "tiles.zip", tmp_path / "ours", checkpoint)
    refused_in_one_line(code, err, "the archive lies inside the index folder")
    os.replace(tmp_path / "ours" / "tiles.zip", archive)

    code, out, _ = pir_index(capsys, archive, tmp_path / "fresh", checkpoint)
    assert code == 0 and out.strip().endswith("indexed 3 new, 0 unchanged, 0 unreadable")
    index = load_index(tmp_path / "fresh")
    assert index.identity["root"] == "source/archive/tiles" and len(index.entries) == 3
    marker = json.loads((tmp_path / "fresh" / MARKER).read_text())
    assert marker["format"] == 2 and marker["folders"] == ["source", "thumbs"] and marker["generations"] == ["gen-1"]
    code, out, _ = pir_index(capsys, archive, tmp_path / "fresh", checkpoint)       # extracted once, reused
    assert code == 0 and out.strip().endswith("indexed 0 new, 3 unchanged, 0 unreadable")


def test_cleanup_deletes_only_what_the_marker_lists(tmp_path, encoder, checkpoint):
    write_images(tmp_path / "images", 1)
    out = tmp_path / "index"
    _build(tmp_path / "images", out, encoder, checkpoint)
    for name in ("gen-2", "gen-99", ".gen-7.cafe"):          # the user's, placed inside an index of ours
        (out / name).mkdir()
        (out / name / "keep.txt").write_text(name)
    users = {k: v for k, v in snapshot(out).items() if k.split("/")[0] in ("gen-2", "gen-99", ".gen-7.cafe")}
    for _ in range(3):
        _build(tmp_path / "images", out, encoder, checkpoint)
    assert {k: v for k, v in snapshot(out).items() if k.split("/")[0] in ("gen-2", "gen-99", ".gen-7.cafe")} == users
    assert load_index(out).generation.name == "gen-5"           # gen-2 is the user's: stepped over
    assert sorted(p.name for p in out.glob("gen-*")) == ["gen-2", "gen-4", "gen-5", "gen-99"]
    assert json.loads((out / MARKER).read_text())["generations"] == ["gen-4", "gen-5"]
    assert (out / LOCK).read_bytes() == b""                     # empty at rest

    # a marker naming anything but a generation of its own is refused, not followed
    (tmp_path / "victim").mkdir()
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**marker, "generations": ["gen-4", "../victim"]}))
    with pytest.raises(IndexFolderRefused, match="not a valid index marker"):
        _build(tmp_path / "images", out, encoder, checkpoint)
    assert (tmp_path / "victim").is_dir() and (out / "gen-4").is_dir()


def test_index_images_is_the_index_own_source_folder(tmp_path):
    assert Paths(tmp_path).index_images == Paths(tmp_path).index / SOURCE


# --------------------------------------------------------------------------- one writer, safe readers

def test_a_second_writer_waits_or_fails_in_one_line(tmp_path, encoder, checkpoint, capsys):
    write_images(tmp_path / "images", 1)
    out = tmp_path / "index"
    _build(tmp_path / "images", out, encoder, checkpoint)
    holder = open(out / LOCK, "r+")                 # another writer, as far as flock can tell
    fcntl.flock(holder, fcntl.LOCK_EX)
    holder.write("4242\n")
    holder.flush()
    try:
        code, _, err = pir_index(capsys, tmp_path / "images", out, checkpoint, "--no-wait")
        refused_in_one_line(code, err, str(out.resolve()), "another pir index run (pid 4242)")
        start = time.monotonic()
        with pytest.raises(IndexBusy, match="after waiting 0.3 s"):
            _build(tmp_path / "images", out, encoder, checkpoint, lock_timeout=0.3)
        assert time.monotonic() - start >= 0.3
        assert "waiting for it to finish" in capsys.readouterr().err

        threading.Timer(0.5, lambda: fcntl.flock(holder, fcntl.LOCK_UN)).start()
        result = _build(tmp_path / "images", out, encoder, checkpoint)     # waits, then runs
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert err.count("waiting for it to finish") == 1 and "(pid 4242)" in err and str(out.resolve()) in err
    assert result.unchanged == 3 and load_index(out).generation.name == "gen-2"


def test_a_reader_during_a_switch_reads_the_new_generation(tmp_path, encoder, checkpoint, monkeypatch):
    write_images(tmp_path / "images", 1)
    out = tmp_path / "index"
    _build(tmp_path / "images", out, encoder, checkpoint)
    _build(tmp_path / "images", out, encoder, checkpoint)
    expected = np.array(load_index(out).vectors)
    real = index_module.read_manifest
    calls = []

    def two_writers_finish_meanwhile(path):
        if not calls:          # the reader has read CURRENT = gen-2; gen-3 and gen-4 land, gen-2 goes
            import shutil
            shutil.copytree(out / "gen-2", out / "gen-4")
            files.write_text(out / CURRENT, "gen-4\n")
            shutil.rmtree(out / "gen-2")
        calls.append(path)
        return real(path)
    monkeypatch.setattr(index_module, "read_manifest", two_writers_finish_meanwhile)
    index = load_index(out)
    assert index.generation.name == "gen-4" and np.array_equal(np.array(index.vectors), expected)
    assert [p.parent.name for p in calls] == ["gen-2", "gen-4"]


# --------------------------------------------------------------------------- what cannot be read

def test_links_and_unreadable_files_are_listed_and_the_rest_indexed(tmp_path, checkpoint, capsys, monkeypatch):
    images = tmp_path / "images"
    write_images(images, 1)
    (images / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (images / "loop.png").symlink_to(images / "loop.png")
    write_images(images / "locked", 1)
    (images / "denied.png").write_bytes((images / "forest_0.png").read_bytes() + b"x")
    # as root nothing is unreadable: the errors a permission problem raises, where it raises them
    real_hash, real_scandir = files.sha256_file, os.scandir

    def sha256_file(path):
        if Path(path).name == "denied.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_hash(path)

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)
    monkeypatch.setattr(files, "sha256_file", sha256_file)
    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = pir_index(capsys, images, tmp_path / "index", checkpoint)
    assert code == 0 and out.strip().endswith("indexed 3 new, 0 unchanged, 4 unreadable"), err
    assert err.splitlines()[-4:] == ["unreadable: dangling.png: dangling link (No such file or directory)",
                                     "unreadable: denied.png: cannot read (Permission denied)",
                                     "unreadable: locked/: cannot list folder (Permission denied)",
                                     "unreadable: loop.png: link loop (Too many levels of symbolic links)"]
    index = load_index(tmp_path / "index")
    assert sorted(e.path for e in index.entries) == ["airport_0.png", "beach_0.png", "forest_0.png"]
    assert len(index.identity["unreadable"]) == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files and folders whatever their mode")
def test_files_and_folders_without_permissions_are_listed(tmp_path, checkpoint, capsys):
    images = tmp_path / "images"
    write_images(images, 1)
    write_images(images / "locked", 1)
    (images / "locked").chmod(0)
    (images / "forest_0.png").chmod(0)
    try:
        code, out, err = pir_index(capsys, images, tmp_path / "index", checkpoint)
    finally:
        (images / "locked").chmod(0o755)
        (images / "forest_0.png").chmod(0o644)
    assert code == 0 and out.strip().endswith("indexed 2 new, 0 unchanged, 2 unreadable"), err
    assert "unreadable: forest_0.png: cannot read (Permission denied)" in err
    assert "unreadable: locked/: cannot list folder (Permission denied)" in err
