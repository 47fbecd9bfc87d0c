"""``pir shards``: a dataset as webdataset tar shards, the form training streams from.

    pir shards data/fetch /data/shards/synthetic --shard-size 500          # the prepared dataset (PNG pixels)
    pir shards /data/RSITMD /data/shards/rsitmd --dataset rsitmd            # a dataset folder: original bytes
    pir shards /data/RSICD.zip /data/shards/rsicd --dataset rsicd --shard-size 2000

SOURCE is a prepared dataset folder (dataset.json + pixels.npy: each image as a PNG of its cached
pixels), or anything data.source accepts for RSITMD/RSICD (a folder, a zip/tar archive, an https URL;
--dataset names the layout): each image's own encoded bytes. OUT gets ``<split>-NNNNN.tar`` shards
and ``shards.json``; set data.source to OUT to train from them (docs/scaling.md, "Sharded corpora").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    from pir_tools.search import add_source_limits

    parser = argparse.ArgumentParser(prog="pir shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="prepared dataset folder (data/fetch), or a dataset folder, archive or URL")
    parser.add_argument("out", type=Path, help="shard folder to write (new, empty, or an earlier shard folder)")
    parser.add_argument("--shard-size", type=int, default=1000, metavar="N", help="samples per shard (default 1000)")
    parser.add_argument("--dataset", choices=("rsitmd", "rsicd"), default=None,
                        help="annotation layout of a dataset SOURCE (not needed for a prepared folder)")
    parser.add_argument("--seed", type=int, default=0, help="orders the train samples (and carves val; default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="val carved from train when the source has none (default 0.1, as data.val_fraction)")
    parser.add_argument("--class-list", default="", help="'filename class' lines, as data.class_list")
    parser.add_argument("--drop-empty-captions", action="store_true", help="as data.drop_empty_captions")
    parser.add_argument("--sha256", default="", help="expected sha256 of a downloaded archive (as data.sha256)")
    parser.add_argument("--downloads", type=Path, default=None,
                        help="where an archive or URL SOURCE is extracted (default: the project's data/downloads)")
    add_source_limits(parser)
    args = parser.parse_args(argv)
    if args.shard_size < 1:
        parser.error(f"--shard-size {args.shard_size}: must be >= 1")
    return args


def items_of(args: argparse.Namespace) -> tuple[str, list[str], list]:
    """(dataset name, classes, items to write) of SOURCE."""
    from pir.data import download, importers, shards

    source = Path(args.source).expanduser()
    if (source / "dataset.json").is_file() and (source / "pixels.npy").is_file():
        return shards.prepared_items(source)
    if args.dataset is None:
        raise ValueError(f"{args.source}: not a prepared dataset folder; name the layout of a dataset source with "
                         "--dataset rsitmd|rsicd")
    if source.is_dir():
        root = source
    else:
        downloads = args.downloads
        if downloads is None:
            from pir.pipeline.paths import Paths
            from pir_tools.project import project_root
            downloads = Paths(project_root()).downloads
        root = download.resolve_source(args.source, downloads, args.sha256, max_bytes=args.max_archive_bytes,
                                       max_ratio=args.max_archive_ratio)
    located = importers.locate_dataset(root, args.dataset, args.seed, args.val_fraction, args.class_list,
                                       args.drop_empty_captions)
    for note in located.notes:
        print(f"note: {note}", file=sys.stderr)
    return args.dataset, located.classes, shards.located_items(located, max_pixels=args.max_pixels)


def main(argv: list[str] | None = None) -> int:
    from pir.data import shards

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        dataset, classes, items = items_of(args)
        manifest = shards.write_shards(items, args.out, args.shard_size, dataset=dataset, classes=classes,
                                       seed=args.seed, source=str(args.source))
    except (ValueError, OSError) as exc:
        print(f"pir shards: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{split} {entry['images']} images in {len(entry['shards'])} shard(s)"
                       for split, entry in manifest["splits"].items())
    print(f"wrote {counts} -> {args.out / shards.MANIFEST}")
    return 0
