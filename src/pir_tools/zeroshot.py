"""``pir zeroshot``: zero-shot scene classification of a labelled image set with a checkpoint's two towers.

    pir zeroshot /data/AID --checkpoint /w/RemoteCLIP-ViT-B-32.pt --out reports/zeroshot_aid.json
    pir zeroshot /data/NWPU-RESISC45.zip --checkpoint data/train/best.pt --out rs45.json    # an archive
    pir zeroshot data/fetch --checkpoint data/train/best.pt --out test.json --split test   # the prepared dataset
    pir zeroshot /data/UCM --checkpoint /w/my_clip.pt --preset clip-b16 --template "a photo of a {}." --out u.json

SOURCE is a folder of class folders (AID, RESISC45, UCM, WHU-RS19, EuroSAT), a zip/tar archive of one
(extracted once, within the archive limits, into the project's data/downloads), or a prepared dataset
folder (data/fetch: its scene labels, images of unknown scene left out). Writes FILE.json and the
confusion figure FILE.png beside it, and logs an MLflow run ``<label> · zeroshot`` in the project's store
(docs/evaluation.md, "Zero-shot scene classification"). The library (pir.evaluation.zeroshot) does the work.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

# Bands read from files with more than three when --bands is not given: EuroSAT's multispectral release
# is 13-band Sentinel-2 (B01..B12, then B8A), whose true colour is B04, B03, B02.
DATASET_BANDS = {"EuroSAT": (4, 3, 2)}
CLIP_PRESET_HINT = "if it holds released CLIP weights whose name does not say the architecture, pass --preset"


def parse_args(argv: list[str]) -> argparse.Namespace:
    from pir.data.images import parse_bands
    from pir_tools.search import add_source_limits

    parser = argparse.ArgumentParser(prog="pir zeroshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="folder of class folders, a zip/tar archive of one, or a prepared dataset "
                                       "folder (data/fetch)")
    parser.add_argument("--checkpoint", required=True,
                        help="best.pt of the train stage, any PIR checkpoint, or released CLIP weights")
    parser.add_argument("--out", type=Path, required=True, help="FILE.json (the confusion figure goes to FILE.png)")
    parser.add_argument("--preset", default="",
                        help="clip-* preset of CLIP weights whose file name does not say the architecture "
                             "(ViT-B-32, ViT-L-14, ...)")
    parser.add_argument("--template", action="append", default=[], metavar="TEMPLATE",
                        help="prompt template with {} for the class name (repeat for an ensemble; default: "
                             "RemoteCLIP's for the dataset)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split of a prepared dataset SOURCE (default test)")
    parser.add_argument("--bands", type=parse_bands, default=None,
                        help="1-based bands of files with more than three (default 1,2,3; EuroSAT: 4,3,2)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer folder of a PIR checkpoint (default: data/fetch/tokenizer beside it)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="leave unreadable images out (listed in FILE.json) instead of stopping")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    add_source_limits(parser)
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".json":
        parser.error(f"--out {args.out}: expected a .json file (the figure goes beside it, as .png)")
    return args


def checkpoint_preset(checkpoint: str, given: str) -> str:
    """--preset, else the CLIP preset the weights' file name says (pir baselines' rule), else "" (our own
    checkpoints carry their config)."""
    from pir_tools.baselines import preset_by_name

    return given or preset_by_name(checkpoint, "")


@dataclass
class Source:
    """The labelled images of SOURCE and how to read one."""
    kind: str                            # class folders | archive | prepared
    name: str                            # the recognised dataset (AID, ...), else the folder's or dataset's name
    source_classes: list[str]            # class names as the source spells them
    items: Sequence[Any]                 # image paths, or rows of a prepared dataset's pixels
    labels: np.ndarray                   # int64, per item
    read: Callable[[Any], np.ndarray]    # item -> uint8 [H, W, 3]
    bands: tuple[int, ...] | None = None
    split: str | None = None


def load_source(args: argparse.Namespace, root: Path) -> Source:
    """SOURCE's labelled images: a prepared dataset's split (known scenes only), else the class folders of a
    folder or of an archive extracted into the project's data/downloads (pir.data.download.resolve_source)."""
    from pir.data.class_folders import class_folder_images
    from pir.data.download import resolve_source
    from pir.data.images import read_rgb
    from pir.data.prepared import load_prepared
    from pir.evaluation.class_names import recognise_dataset
    from pir.pipeline.paths import Paths

    source = Path(args.source).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"{source}: not found (expected a folder of class folders, an archive of one, "
                                "or a prepared dataset folder)")
    if (source / "dataset.json").is_file():
        prepared = load_prepared(source)
        view = prepared.split(args.split)
        known = view.labels >= 0
        if not known.any():
            raise ValueError(f"{source / 'dataset.json'}: no {args.split} image has a known scene")
        if len(prepared.classes) < 2:
            raise ValueError(f"{source / 'dataset.json'}: {len(prepared.classes)} scene class(es); "
                             "zero-shot classification needs two or more")
        return Source("prepared", recognise_dataset(prepared.classes, prepared.name), list(prepared.classes),
                      view.image_rows[known].tolist(), view.labels[known], lambda row: prepared.pixels[row],
                      split=args.split)
    folder = resolve_source(str(source), Paths(root).downloads, max_bytes=args.max_archive_bytes,
                            max_ratio=args.max_archive_ratio)
    classes, images, labels = class_folder_images(folder)
    name = recognise_dataset(classes, folder.name)
    bands = args.bands or DATASET_BANDS.get(name)
    return Source("class folders" if folder == source else "archive", name, classes, images, labels,
                  lambda path: read_rgb(path, bands, max_pixels=args.max_pixels), bands=bands)


def checkpoint_record(checkpoint: str, encoder, preset: str) -> dict[str, Any]:
    """What was scored: the path as given, its bytes' sha256 when it is local, format, preset, epoch, model key."""
    from pir import files

    extra = encoder.extra
    local = Path(checkpoint).expanduser()
    return {"path": checkpoint, "sha256": files.sha256_path(local) if local.exists() else None,
            "format": "official" if "official_config" in extra else extra.get("format", "pir"),
            "preset": encoder.preset if not preset else preset, "epoch": extra.get("epoch"),
            "model_key": extra.get("model_key")}


def log_run(root: Path, args: argparse.Namespace, result: dict[str, Any], figure: Path) -> None:
    """An MLflow run ``<label> · zeroshot`` with what was scored as params and the accuracies as metrics. Not
    tagged with the model key: evaluate reopens the newest run carrying it (pir.pipeline.tracking.find_run)."""
    from pir.pipeline import tracking

    dataset = result["dataset"]
    params = {"zeroshot": {"source": dataset["source"], "dataset": dataset["name"], "split": dataset["split"],
                           "checkpoint": result["checkpoint"]["path"], "preset": result["checkpoint"]["preset"],
                           "model_key": result["checkpoint"]["model_key"], "templates": len(result["templates"]),
                           "bands": dataset["bands"]}}
    with tracking.stage_run(root, "zeroshot", params, system_metrics=False) as tracker:
        tracker.log_metrics({f"zeroshot_{key}": result[key] for key in ("top1", "top5", "mean_per_class", "images")})
        for path in (args.out, figure):
            tracker.log_artifact(path, "zeroshot")


def classify(args: argparse.Namespace, root: Path) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The report written to FILE.json, and the images left out as unreadable."""
    from pir.evaluation.zeroshot import check_templates, embed_images, zeroshot_report
    from pir.search.encoder import load_encoder

    if args.template:   # the cheap checks first: templates, then the source's layout, then the model
        check_templates(args.template)
    source = load_source(args, root)
    preset = checkpoint_preset(args.checkpoint, args.preset)
    try:
        encoder = load_encoder(args.checkpoint, args.tokenizer, args.device, preset=preset)
    except ValueError as exc:
        raise ValueError(f"{exc}" + (f"; {CLIP_PRESET_HINT}" if "not a PIR checkpoint" in str(exc) else "")) from None
    image_emb, read_ok, unreadable = embed_images(source.items, source.read, encoder, args.batch_size,
                                                  skip_unreadable=args.skip_unreadable)
    report = zeroshot_report(image_emb, source.labels[read_ok], source.source_classes, encoder.encode_texts,
                             args.template, source.name)
    dataset = {"source": str(args.source), "kind": source.kind, "name": source.name, "split": source.split,
               "bands": list(source.bands) if source.bands else None}
    result = {key: report[key] for key in ("top1", "top5", "top5_k", "mean_per_class", "images")}
    result.update(classes=report["classes"], source_classes=report["source_classes"], templates=report["templates"],
                  per_class=report["per_class"], confusion=report["confusion"], dataset=dataset,
                  checkpoint=checkpoint_record(args.checkpoint, encoder, preset),
                  unreadable=[{"image": image, "reason": reason} for image, reason in unreadable])
    return result, unreadable


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    from pir import files
    from pir.evaluation.zeroshot import save_confusion
    from pir_tools.project import project_root

    args = parse_args(sys.argv[1:] if argv is None else argv)
    root = root or project_root()
    figure = args.out.with_suffix(".png")
    try:
        result, unreadable = classify(args, root)
        files.write_json(args.out, result)
        save_confusion(result, figure, f"zero-shot, {result['dataset']['name'] or args.source} "
                                       f"({result['images']} images)")
    except (ValueError, OSError) as exc:
        print(f"pir zeroshot: {exc}", file=sys.stderr)
        return 1
    log_run(root, args, result, figure)
    for image, reason in unreadable:
        print(f"unreadable: {image}: {reason}", file=sys.stderr)
    print(f"zero-shot {result['dataset']['name'] or args.source}: top-1 {result['top1']:.2f}%, "
          f"top-{result['top5_k']} {result['top5']:.2f}%, mean per class {result['mean_per_class']:.2f}% "
          f"({result['images']} images, {len(result['classes'])} classes, {len(result['templates'])} templates)")
    print(f"wrote {args.out} and {figure}")
    return 0
