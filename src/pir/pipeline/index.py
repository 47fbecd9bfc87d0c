"""Stage ``index``: the test split as a searchable demo, so `pir serve data/index` works after `dvc repro`.

Writes the test images (the dataset's pixel cache, as PNG files) under data/index/images and indexes
them with the evaluated checkpoint (``evaluate.checkpoint``, default the train stage's best.pt) and the
fetch stage's tokenizer, with their scene labels for the page's scene filter (pir.search).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pir import files, tracking
from pir.data.prepared import UNKNOWN_SCENE, load_prepared
from pir.device import resolve_device
from pir.params import PipelineConfig
from pir.paths import Paths
from pir.search.encoder import load_encoder
from pir.search.index import build_index


def write_split_images(pixels, names: list[str], folder: Path) -> list[str]:
    """One PNG per image (lossless, so the index embeds exactly the evaluate stage's pixels)."""
    written = []
    for rows, name in zip(pixels, names):
        target = folder / f"{Path(name).stem}.png"
        with files.atomic_path(target) as tmp:
            Image.fromarray(rows).save(tmp, format="PNG")
        written.append(target.name)
    return written


def run(cfgs: PipelineConfig, paths: Paths) -> None:
    checkpoint = paths.checkpoint(cfgs.evaluate.checkpoint)
    prepared = load_prepared(paths.fetch)
    test = prepared.split("test")
    if test.n_images == 0:
        raise ValueError(f"{paths.dataset_json}: the test split has no images to index")
    records = [prepared.records[row] for row in test.image_rows]
    names = write_split_images(prepared.pixels[test.image_rows], [r.file for r in records], paths.index_images)
    scenes = {name: (r.scene if r.scene != UNKNOWN_SCENE else "") for name, r in zip(names, records)}
    encoder = load_encoder(checkpoint, paths.tokenizer, resolve_device(cfgs.evaluate.device))
    result = build_index(paths.index_images, paths.index, encoder, checkpoint, scenes=scenes,
                         batch_size=cfgs.evaluate.batch_size, git_commit=tracking.git_commit(paths.root))
    for path, reason in result.unreadable:
        print(f"index: unreadable {path}: {reason}")
    print(f"index: {result.summary()} -> {paths.index} (pir serve {paths.index.relative_to(paths.root)})")
