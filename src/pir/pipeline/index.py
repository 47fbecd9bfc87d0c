"""Stage ``index``: the test split as a searchable demo, so `pir serve data/index` works after `dvc repro`.

Writes the test images (the dataset's pixel cache, as PNG files) into the index's own folder
data/index/source (listed in its marker, docs/search-and-geo.md, "Index folder") and indexes them with the evaluated checkpoint (``evaluate.checkpoint``, default the train stage's best.pt) and the
fetch stage's tokenizer, with their scene labels for the page's scene filter (pir.search).
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from pir import files
from pir.data.prepared import UNKNOWN_SCENE, load_prepared
from pir.device import resolve_device
from pir.pipeline.params import PipelineConfig
from pir.pipeline.paths import Paths
from pir.search.encoder import load_encoder
from pir.search.folder import SOURCE, index_writer, own_folder
from pir.search.index import build_index


# The manifest keeps each file's mtime (pir index's change check): a fixed one keeps the stage's output
# the same bytes on every rerun (docs/workflows.md, "Reproducibility contract").
FIXED_MTIME_NS = 0


def write_split_images(pixels, names: list[str], folder: Path) -> list[str]:
    """One PNG per image (lossless, so the index embeds exactly the evaluate stage's pixels)."""
    written = []
    for rows, name in zip(pixels, names):
        target = folder / f"{Path(name).stem}.png"
        with files.atomic_path(target) as tmp:
            Image.fromarray(rows).save(tmp, format="PNG")
        os.utime(target, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))
        written.append(target.name)
    return written


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    checkpoint = paths.checkpoint(cfgs.evaluate.checkpoint)
    prepared = load_prepared(paths.fetch)
    test = prepared.split("test")
    if test.n_images == 0:
        raise ValueError(f"{paths.dataset_json}: the test split has no images to index")
    records = [prepared.records[row] for row in test.image_rows]
    encoder = load_encoder(checkpoint, paths.tokenizer, resolve_device(cfgs.evaluate.device))
    # The images live inside the index (so `pir serve data/index` needs nothing else): in its own source/
    # folder, which the index lists before creating it; only there may an index's root lie inside it.
    with index_writer(paths.index) as folder:
        images = own_folder(folder, SOURCE)   # = paths.index_images (tests/search/test_index_safety.py)
        names = write_split_images(prepared.pixels[test.image_rows], [r.file for r in records], images)
        scenes = {name: (r.scene if r.scene != UNKNOWN_SCENE else "") for name, r in zip(names, records)}
        result = build_index(images, paths.index, encoder, checkpoint, scenes=scenes,
                             batch_size=cfgs.evaluate.batch_size, stamp_time=False,
                             # dvc.lock, not the index, names the code that built it: a new commit alone
                             # must not change the stage's output
                             git_commit="see dvc.lock")
    for path, reason in result.unreadable:
        print(f"index: unreadable {path}: {reason}")
    print(f"index: {result.summary()} -> {paths.index} (pir serve {paths.index.relative_to(paths.root)})")
