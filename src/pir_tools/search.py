"""``pir index`` and ``pir search``: embed a folder (or archive) of imagery, query it by text or by image.

    pir index SOURCE --checkpoint CKPT --out INDEX_DIR [--bands 3,2,1] [--scene-from-name] [--no-wait]
              [--max-pixels N] [--max-archive-bytes N] [--max-archive-ratio X]
              [--tile T [--stride S]]   TIFFs as windows of T px every S px (default T): one row per window,
              memory bounded by the window; SOURCE may then be one scene.tif (docs/search-and-geo.md, "Large scenes")
              [--ann | --no-ann] [--ann-threshold N]   an approximate (faiss) index too, from N vectors
              (default 200000) or with --ann (docs/scaling.md, "Approximate nearest-neighbour search")
    pir index SOURCE --onnx DIR --out INDEX_DIR [...]   the same, embedded through onnxruntime from an export
              of `pir export CKPT --onnx DIR` (torch need not be installed; --threads N: onnxruntime's threads)
    torchrun --nproc-per-node N --no-python pir index SOURCE --checkpoint CKPT --out INDEX_DIR [--device cuda]
              the same index, the files embedded by N processes (docs/scaling.md, "Distributed indexing")
    pir search INDEX_DIR "a text query" [--top 20] [--scene NAME] [--sheet out.png] [--exact]
    pir search INDEX_DIR --image PATH [--top 20] [--bands 3,2,1] [--sheet out.png] [--max-pixels N]
              [--geojson OUT.geojson]   the georeferenced hits as a GeoJSON FeatureCollection (lon/lat)
              prints `score<TAB>path` lines, best first, and a third column `col,row,width,height` for a
              window of a scene (an interface: scripts parse it)

The library (pir.search) does the work; this module owns the command lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
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


# Where an archive SOURCE is extracted: inside the index's own source/ folder, which its marker lists
# (docs/search-and-geo.md, "Index folder").
ARCHIVE_FOLDER = "archive"


def _limit(kind: type):
    """argparse type of a safety cap: a number >= 1 (ints also as 2e8)."""
    def parse(text: str) -> int | float:
        try:   # digits as an exact int, anything else (2e8, 1.5) through float
            number = int(text) if text.strip().isdigit() else float(text)
        except ValueError:
            number = float("nan")
        if not number >= 1 or (kind is int and isinstance(number, float) and not number.is_integer()):
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what} >= 1")
        return kind(number)
    return parse


# help of --max-pixels (docs/recipes-and-data.md, "Image size cap")
_MAX_PIXELS_HELP = ("refuse images above N pixels (width x height), from their header before decoding "
                    "(default 134217728 = 2**27: a whole Sentinel-2 tile fits)")


def _is_scene(source: Path, tiling) -> bool:
    """SOURCE is one TIFF scene to read in windows (``--tile``)."""
    from pir.data.geo import is_geotiff_name
    return tiling is not None and source.is_file() and is_geotiff_name(source)


def _check_source(source: Path, out: Path, tiling=None) -> None:
    """Before anything is touched: SOURCE is a folder, an archive or (with a tiling) one TIFF scene, and an
    archive does not lie inside INDEX_DIR, where extracting it could replace it (the index's own source/,
    outside source/archive/, aside). Folders and scenes are checked by the library
    (pir.search.folder.check_index_folder)."""
    from pir.data.download import is_archive
    from pir.data.geo import is_geotiff_name
    from pir.search.folder import SOURCE, IndexFolderRefused

    if source.is_dir() or _is_scene(source, tiling):
        return
    if source.is_file() and is_geotiff_name(source):
        raise ValueError(f"{source}: one TIFF scene is indexed in windows: give --tile T (e.g. --tile 256)")
    if not is_archive(source):
        raise ValueError(f"{source}: not a folder or an archive (zip, tar, tar.gz) of images")
    archive, index = source.resolve(), out.resolve()
    own = index / SOURCE
    if archive.is_relative_to(index) and not (archive.is_relative_to(own) and
                                              not archive.is_relative_to(own / ARCHIVE_FOLDER)):
        raise IndexFolderRefused(f"{source}: the archive lies inside the index folder {out}; "
                                 "move it outside the index folder")


def _source_folder(source: Path, out: Path, max_bytes: int | None = None, max_ratio: float | None = None) -> Path:
    """A folder (or a TIFF scene) as it is; an archive (zip, tar.*) extracted safely once into
    INDEX_DIR/source/archive/, a folder the index created and lists (call with the index held:
    pir.search.folder.index_writer)."""
    from pir.data.download import dataset_root, extract_archive
    from pir.data.geo import is_geotiff_name
    from pir.search.folder import SOURCE, own_folder

    if source.is_dir() or (source.is_file() and is_geotiff_name(source)):   # a scene: _check_source said --tile
        return source
    return dataset_root(extract_archive(source, own_folder(out, SOURCE) / ARCHIVE_FOLDER, max_bytes=max_bytes,
                                        max_ratio=max_ratio))


def add_source_limits(parser) -> None:
    """--max-pixels, --max-archive-bytes, --max-archive-ratio: the caps on a SOURCE folder or archive
    (pir index, pir zeroshot)."""
    parser.add_argument("--max-pixels", type=_limit(int), default=None, metavar="N", help=_MAX_PIXELS_HELP)
    parser.add_argument("--max-archive-bytes", type=_limit(int), default=None, metavar="N",
                        help="refuse an archive SOURCE that would extract to more than N bytes (default 64 GiB)")
    parser.add_argument("--max-archive-ratio", type=_limit(float), default=None, metavar="X",
                        help="refuse an archive SOURCE that would extract to more than X times its size (default 100)")


def add_ann_options(parser) -> None:
    """--ann, --no-ann, --ann-threshold N: whether `pir index` writes an approximate index (pir.search.ann)."""
    from pir.search.ann import ANN_THRESHOLD

    group = parser.add_mutually_exclusive_group()
    group.add_argument("--ann", action="store_const", const=True, default=None,
                       help="write an approximate (faiss IVF-PQ) index whatever the size; later runs keep it")
    group.add_argument("--no-ann", dest="ann", action="store_const", const=False,
                       help="write none (and drop the one the index had): searches are exact")
    parser.add_argument("--ann-threshold", type=_limit(int), default=ANN_THRESHOLD, metavar="N",
                        help=f"write an approximate index from N vectors up (default {ANN_THRESHOLD})")


def add_tiling_options(parser) -> None:
    """--tile T, --stride S: TIFF scenes indexed window by window (pir.search.plan.Tiling)."""
    from pir.data.images import MIN_SIDE

    def side(text: str) -> int:
        number = _limit(int)(text)
        if number < MIN_SIDE:
            raise argparse.ArgumentTypeError(f"{text!r}: a window needs at least {MIN_SIDE} px a side")
        return number

    parser.add_argument("--tile", type=side, default=None, metavar="T",
                        help="index TIFFs as windows of T x T pixels (read window by window: memory bounded by "
                             "the window, the pixel cap held per window); other images whole. SOURCE may then "
                             "be one .tif scene")
    parser.add_argument("--stride", type=_limit(int), default=None, metavar="S",
                        help="pixels between windows with --tile (default T: windows side by side)")


def _tiling(args, parser):
    from pir.search.plan import Tiling

    if args.tile is None:
        if args.stride is not None:
            parser.error("--stride needs --tile")
        return None
    return Tiling(args.tile, args.stride or args.tile)


def _distributed(onnx: bool):
    """(check_ranks, follow, join, leading, leave) of pir.search.distributed, or with --onnx one-process
    stand-ins: that path never imports torch (pir.search.distributed does), so it runs where torch is absent."""
    if not onnx:
        from pir.search.distributed import check_ranks, follow, join, leading, leave
        return check_ranks, follow, join, leading, leave
    return None, None, (lambda device: None), (lambda ranks: contextlib.nullcontext(None)), (lambda: None)


def _encoder(args, ranks):
    """The index's encoder: the checkpoint through torch, or with --onnx the export through onnxruntime."""
    if args.onnx is None:
        from pir.search.encoder import load_encoder
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        return load_encoder(args.checkpoint, args.tokenizer, ranks.device if ranks else args.device)
    from pir.search.onnx_encoder import load_onnx_encoder
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--onnx runs in one process (onnxruntime spreads a batch over the cores itself); "
                         "run it without torchrun, or give --checkpoint for a distributed run")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.device == "cuda" else None
    return load_onnx_encoder(args.onnx, threads=args.threads, providers=providers)


def index_main(argv: list[str]) -> int:
    from pir.data.images import parse_bands
    from pir.data.importers.scenes import scene_from_filename
    from pir.search.folder import index_writer
    from pir.search.index import build_index
    from pir.pipeline.tracking import git_commit

    parser = argparse.ArgumentParser(prog="pir index", description="Embed every image under SOURCE into an index.")
    parser.add_argument("source", type=Path, help="folder of JPEG/PNG/TIFF images, or a zip/tar archive of them "
                                                  "(with --tile also one TIFF scene)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint",
                       help="best.pt of the train stage, or any loadable checkpoint: an exported folder, a Hub id "
                            "(hf-hub:ORG/REPO[/FILE][@REVISION], from the Hugging Face cache)")
    model.add_argument("--onnx", type=Path, metavar="DIR",
                       help="an export of `pir export CKPT --onnx DIR`: embed through onnxruntime instead of torch "
                            "(no torch needed; the index records the source checkpoint for `pir search`)")
    parser.add_argument("--threads", type=_limit(int), default=None, metavar="N",
                        help="intra-op threads (default: onnxruntime with --onnx the cores this process may use; "
                             "torch its own default)")
    parser.add_argument("--out", type=Path, required=True, help="index folder (created, or updated incrementally)")
    parser.add_argument("--bands", type=parse_bands, default=None,
                        help="1-based bands of files with more than three, e.g. 3,2,1 (default 1,2,3)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer folder the model was trained with (default: data/fetch/tokenizer beside it)")
    parser.add_argument("--scene-from-name", action="store_true",
                        help="label scenes from file names (storagetanks_12.tif -> storagetanks) for the scene filter")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--no-wait", action="store_true",
                        help="fail at once when another pir index run is writing INDEX_DIR (default: wait for it)")
    add_tiling_options(parser)
    add_ann_options(parser)
    add_source_limits(parser)
    args = parser.parse_args(argv)
    if args.onnx is not None and args.tokenizer is not None:
        parser.error("--tokenizer goes with --checkpoint (an ONNX export holds its own tokenizer)")
    tiling = _tiling(args, parser)
    check_ranks, follow, join, leading, leave = _distributed(args.onnx is not None)
    ranks = None
    try:
        ranks = join(args.device)   # under torchrun: rank 0 writes, every rank embeds (docs/scaling.md)
        encoder = _encoder(args, ranks)
        if ranks is not None:
            check_ranks(ranks, args.source, encoder)
            if not ranks.is_main:
                follow(args.source, encoder, bands=args.bands, max_pixels=args.max_pixels)
                return 0
            print(f"pir index: {ranks.world_size} processes; rank 0 on {socket.gethostname()} writes {args.out}",
                  file=sys.stderr)
        _check_source(args.source, args.out, tiling)
        wait = 0 if args.no_wait else None
        indexed = args.source.is_dir() or _is_scene(args.source, tiling)   # not an archive: checked against out
        # One writer, from extracting an archive to the new generation (build_index shares this hold)
        with leading(ranks) as leader, \
                index_writer(args.out, source=args.source if indexed else None, lock_timeout=wait):
            root = _source_folder(args.source, args.out, args.max_archive_bytes, args.max_archive_ratio)
            scenes = (lambda rel: scene_from_filename(rel) or "") if args.scene_from_name else None
            result = build_index(root, args.out, encoder, args.checkpoint or args.onnx, bands=args.bands, scenes=scenes,
                                 batch_size=args.batch_size, progress=True,
                                 max_pixels=args.max_pixels,
                                 git_commit=git_commit(Path(__file__).resolve().parent), on_batch=_pause_hook(),
                                 embed_new=leader.embed_new if leader else None, ann=args.ann,
                                 ann_threshold=args.ann_threshold, tiling=tiling)
    except (ValueError, OSError) as exc:
        rank = f" (rank {ranks.rank})" if ranks and not ranks.is_main else ""
        print(f"pir index{rank}: {exc}", file=sys.stderr)
        return 1
    finally:
        leave()
    # `pir serve` serves this root without --root only for indexes built here (docs/search-and-geo.md, "Serving")
    from pir_tools.known_indexes import record
    record(args.out, root if root.is_dir() else root.parent)   # one scene: the index's root is its folder
    for path, reason in result.unreadable:
        print(f"unreadable: {path}: {reason}", file=sys.stderr)
    print(f"index: {result.generation}")
    print(result.summary())
    return 0


def search_main(argv: list[str]) -> int:
    from pir.data.images import parse_bands, read_rgb
    from pir.search.geojson import write_hits
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
    parser.add_argument("--geojson", type=Path, default=None, metavar="OUT",
                        help="also write the georeferenced hits as a GeoJSON FeatureCollection (lon/lat polygons "
                             "with rank, score, path, scene, window, label)")
    parser.add_argument("--checkpoint", default=None, help="the index's checkpoint (path or Hub id), if it has moved")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--max-pixels", type=_limit(int), default=None, metavar="N", help=_MAX_PIXELS_HELP)
    parser.add_argument("--exact", action="store_true",
                        help="exact search even when the index has an approximate one (which is then not read)")
    args = parser.parse_args(argv)
    if (args.text is None) == (args.image is None):
        parser.error("give a text query or --image PATH (one of them)")
    try:
        searcher, encoder = open_search(args.index, args.checkpoint, args.device, exact=args.exact)
        if args.geojson and not any(e.georef for e in searcher.index.entries):
            raise ValueError(f"{args.index}: --geojson: none of its rows is georeferenced (only GeoTIFFs with a "
                             "CRS are; an index from before pir recorded them: run pir index on it again)")
        if args.image is not None:
            query = encoder.query_image(read_rgb(args.image, args.bands, max_pixels=args.max_pixels))
        else:
            query = encoder.query_text(args.text)
        hits = searcher.search(query, args.top, args.scene)
        if args.sheet:
            contact_sheet(searcher.index, hits, args.sheet, title=args.text or f"image: {args.image}")
        if args.geojson:
            written, left_out = write_hits(args.geojson, hits, searcher.index.root)
            if left_out:
                print(f"pir search: {left_out} of {len(hits)} hits are not georeferenced: left out of {args.geojson} "
                      f"({written} written)", file=sys.stderr)
    except (ValueError, OSError) as exc:
        print(f"pir search: {exc}", file=sys.stderr)
        return 1
    for hit in hits:   # score<TAB>path, and <TAB>col,row,width,height for a window of a scene
        window = f"\t{hit.entry.window}" if hit.entry.window else ""
        print(f"{hit.score:.4f}\t{searcher.index.root / hit.path}{window}")
    return 0
