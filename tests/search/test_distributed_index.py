"""pir index under torchrun: the files to embed shared over real processes (gloo on CPU), rank 0 the one
writer, and the index the one a single process builds (docs/scaling.md, "Distributed indexing"); with
--tile, so the windows of a scene are shared out too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from pir.search.index import build_index, load_index
from pir.search.plan import Tiling

from tests.search.conftest import scene_pixels, write_images
from tests.search.test_geo import write_scene

ROOT = Path(__file__).resolve().parents[2]
# Each rank starts in its own folder and gets `--out index`, relative: two nodes that share SOURCE (an
# absolute path) but no index folder. Rank 1 could only write into its own folder, which stays empty.
AS_TWO_NODES = 'cd "$0/rank$RANK" && exec "$@"'
TILING = Tiling(32, 32)   # TIFFs in windows of 32 px; the PNGs and the JPEG whole


def test_two_ranks_build_the_index_one_process_builds(tmp_path, encoder, checkpoint):
    images = tmp_path / "images"
    write_images(images, 1)                                   # the previous generation: 3 files
    for rank in (0, 1):
        (tmp_path / f"rank{rank}").mkdir()
    build_index(images, tmp_path / "rank0" / "index", encoder, checkpoint, progress=False, tiling=TILING)
    write_images(images, 2, start=1)                          # 6 new files
    write_scene(images / "scene.tif", np.moveaxis(scene_pixels(2, 5, side=64)[:48], -1, 0))   # 4 windows, last
    (images / "airport_10.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")   # slot 1 of the work: rank 1's
    build_index(images, tmp_path / "one" / "index", encoder, checkpoint, progress=False, tiling=TILING)

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--no-python", "sh", "-c", AS_TWO_NODES, str(tmp_path),
               sys.executable, "-m", "pir_tools.cli", "index", str(images), "--checkpoint", str(checkpoint),
               "--out", "index", "--batch-size", "2", "--tile", "32"]
    run = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines().count("indexed 10 new, 3 unchanged, 1 unreadable") == 1   # rank 0 alone
    assert run.stderr.count("unreadable: airport_10.jpg: unreadable image") == 1
    assert list((tmp_path / "rank1").iterdir()) == []         # rank 1 wrote nothing

    one, two = load_index(tmp_path / "one" / "index"), load_index(tmp_path / "rank0" / "index")
    assert two.generation.name == "gen-2"                     # over the previous generation, read by rank 0
    assert two.entries == one.entries                         # paths, order, sizes, sha256: rank 1's rows too
    assert [e.window for e in two.entries if e.window] == ["0,0,32,32", "32,0,32,32", "0,16,32,32", "32,16,32,32"]
    # One float16 step at 1.0 (rows are unit vectors): each process embeds other batches, which can move a
    # float32 sum by an ulp and so the float16 rounding of a component.
    assert np.allclose(two.vectors.astype(np.float32), one.vectors.astype(np.float32), rtol=0, atol=1e-3)
    # the same unreadable list, checkpoint, root...; not the clock, the counts of a run, the CLI's commit stamp
    differs = {"created", "generation", "new", "unchanged", "git_commit"}
    assert {k: v for k, v in two.identity.items() if k not in differs} == \
        {k: v for k, v in one.identity.items() if k not in differs}
    thumbs = sorted(p.relative_to(one.folder) for p in (one.folder / "thumbs").rglob("*.jpg"))
    assert thumbs and thumbs == sorted(p.relative_to(two.folder) for p in (two.folder / "thumbs").rglob("*.jpg"))
    assert all((one.folder / t).read_bytes() == (two.folder / t).read_bytes() for t in thumbs)
