"""``pir index`` and ``pir search``: embed a folder (or archive) of imagery, query it by text or by image.

    pir index SOURCE --checkpoint CKPT --out INDEX_DIR [--bands 3,2,1] [--scene-from-name]
    pir search INDEX_DIR "a text query" [--top 20] [--scene NAME] [--sheet out.png]
    pir search INDEX_DIR --image PATH [--top 20] [--bands 3,2,1] [--sheet out.png]

The library (pir.search) does the work; this module owns the command lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Tests only: after the first embedded batch, create this file and wait to be killed (a deterministic
# "killed mid-run" for the atomicity test).
PAUSE_ENV = "PIR_INDEX_TEST_PAUSE"


def _pause_hook():
    marker = os.environ.get(PAUSE_ENV)
    if not marker:
        return None

    def pause(done: int) -> None:
        Path(marker).write_text(str(done))
        time.sleep(600)
    return pause


def _source_folder(source: Path, out: Path) -> Path:
    """A folder as it is; an archive (zip, tar.*) extracted safely once into INDEX_DIR/source/."""
    from pir.data.download import dataset_root, extract_archive, is_archive

    if source.is_dir():
        return source
    if source.is_file() and is_archive(source):
        return dataset_root(extract_archive(source, out / "source"))
    raise ValueError(f"{source}: not a folder or an archive (zip, tar, tar.gz) of images")


def index_main(argv: list[str]) -> int:
    from pir.data.images import parse_bands
    from pir.data.importers import scene_from_filename
    from pir.search.encoder import load_encoder
    from pir.search.index import build_index
    from pir.tracking import git_commit

    parser = argparse.ArgumentParser(prog="pir index", description="Embed every image under SOURCE into an index.")
    parser.add_argument("source", type=Path, help="folder of JPEG/PNG/TIFF images, or a zip/tar archive of them")
    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt of the train stage, or any loadable checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="index folder (created, or updated incrementally)")
    parser.add_argument("--bands", type=parse_bands, default=None,
                        help="1-based bands of files with more than three, e.g. 3,2,1 (default 1,2,3)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer folder the model was trained with (default: data/fetch/tokenizer beside it)")
    parser.add_argument("--scene-from-name", action="store_true",
                        help="label scenes from file names (storagetanks_12.tif -> storagetanks) for the scene filter")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    try:
        encoder = load_encoder(args.checkpoint, args.tokenizer, args.device)
        root = _source_folder(args.source, args.out)
        scenes = (lambda rel: scene_from_filename(rel) or "") if args.scene_from_name else None
        result = build_index(root, args.out, encoder, args.checkpoint, bands=args.bands, scenes=scenes,
                             batch_size=args.batch_size, progress=True,
                             git_commit=git_commit(Path(__file__).resolve().parent), on_batch=_pause_hook())
    except (ValueError, OSError) as exc:
        print(f"pir index: {exc}", file=sys.stderr)
        return 1
    for path, reason in result.unreadable:
        print(f"unreadable: {path}: {reason}", file=sys.stderr)
    print(f"index: {result.generation}")
    print(result.summary())
    return 0


def search_main(argv: list[str]) -> int:
    from pir.data.images import parse_bands, read_rgb
    from pir.search.query import open_search
    from pir.search.sheet import contact_sheet

    parser = argparse.ArgumentParser(prog="pir search", description="Rank an index's images by a text or an image.")
    parser.add_argument("index", type=Path, help="index folder made by `pir index`")
    parser.add_argument("text", nargs="?", help="a text query")
    parser.add_argument("--image", type=Path, help="an image file to search by (instead of text)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--scene", default=None, help="only images of this scene label")
    parser.add_argument("--bands", type=parse_bands, default=None, help="bands of a multi-band --image")
    parser.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet PNG of the hits")
    parser.add_argument("--checkpoint", type=Path, default=None, help="the index's checkpoint, if it has moved")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    if (args.text is None) == (args.image is None):
        parser.error("give a text query or --image PATH (one of them)")
    try:
        searcher, encoder = open_search(args.index, args.checkpoint, args.device)
        if args.image is not None:
            query = encoder.query_image(read_rgb(args.image, args.bands))
        else:
            query = encoder.query_text(args.text)
        hits = searcher.search(query, args.top, args.scene)
        if args.sheet:
            contact_sheet(searcher.index, hits, args.sheet, title=args.text or f"image: {args.image}")
    except (ValueError, OSError) as exc:
        print(f"pir search: {exc}", file=sys.stderr)
        return 1
    for hit in hits:
        print(f"{hit.score:.4f}\t{searcher.index.root / hit.path}")
    return 0
