"""``pir locate``: where a text is in a large scene, as a heat map (docs/search-and-geo.md, "Locating a text in a scene").

    pir locate SCENE.tif "TEXT" --checkpoint CKPT --out HEAT.tif [--tile 256] [--stride 128] [--bands 3,2,1]
               [--cell N] [--batch-size 32] [--device cpu|cuda] [--tokenizer DIR] [--max-pixels N]
               [--png OVERLAY.png] [--annotations ANNO.json]

Writes HEAT.tif (float32, one band, raw cosine, the scene's CRS and extent), HEAT.png (the overlay; --png
elsewhere) and HEAT.json (query, scene, checkpoint, tile/stride/grid, score range, timings, and with
--annotations the semantic-localization metrics, which are printed too). The library (pir.search.locate,
pir.evaluation.semantic_localization) does the work; this module owns the command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pir_tools.search import _limit


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_paths(scene: Path, outputs: list[Path]) -> None:
    """Before any work: SCENE is an existing TIFF, --out a .tif, and no output is the scene or another output."""
    from pir.data.geo import is_geotiff_name

    if not scene.is_file():
        raise ValueError(f"{scene}: no such file")
    if not is_geotiff_name(scene):
        raise ValueError(f"{scene}: not a TIFF (.tif or .tiff); convert it first (gdal_translate, or "
                         "PIL: Image.open(IN).save(\"OUT.tif\"))")
    if not is_geotiff_name(outputs[0]):
        raise ValueError(f"{outputs[0]}: --out must name a .tif file (the heat map GeoTIFF)")
    for k, path in enumerate(outputs):
        if _same_file(path, scene):
            raise ValueError(f"{path}: is the scene itself; choose another --out / --png")
        if any(_same_file(path, other) for other in outputs[:k]):
            raise ValueError(f"{path}: named twice among the outputs; choose another --png")
        if path.is_dir():
            raise ValueError(f"{path}: is a folder; name a file")


def _open_refusal(scene: Path, exc: Exception) -> ValueError:
    """One line for a scene GDAL's GTiff driver cannot open, or one pir.data.geo refuses."""
    from pir.errors import first_line

    if isinstance(exc, ValueError):
        text = first_line(exc)
        return ValueError(text if str(scene) in text else f"{scene}: {text}")
    return ValueError(f"{scene}: not a readable TIFF ({first_line(exc, 200)})")


def main(argv: list[str]) -> int:
    from pir.data.images import parse_bands

    parser = argparse.ArgumentParser(prog="pir locate",
                                     description="Heat map of where a text is in a large scene (GeoTIFF + PNG).")
    parser.add_argument("scene", type=Path, help="the scene: a GeoTIFF / COG (or a plain TIFF: pixel coordinates)")
    parser.add_argument("text", help="the text to locate")
    parser.add_argument("--checkpoint", required=True,
                        help="best.pt of the train stage, or any loadable checkpoint: an exported folder, a Hub id "
                             "(hf-hub:ORG/REPO[/FILE][@REVISION], from the Hugging Face cache)")
    parser.add_argument("--out", type=Path, required=True, help="the heat map GeoTIFF to write (HEAT.tif)")
    parser.add_argument("--png", type=Path, default=None, help="the overlay PNG (default: HEAT.png beside --out)")
    parser.add_argument("--tile", type=_limit(int), default=256, help="window side in pixels (default 256)")
    parser.add_argument("--stride", type=_limit(int), default=128, help="step between windows (default 128)")
    parser.add_argument("--cell", type=_limit(int), default=None, metavar="N",
                        help="heat map cell side in scene pixels (default: 1, full resolution, up to 2048x2048 "
                             "cells; larger scenes the smallest cell within that)")
    parser.add_argument("--bands", type=parse_bands, default=None,
                        help="1-based bands of scenes with more than three, e.g. 3,2,1 (default 1,2,3)")
    parser.add_argument("--batch-size", type=_limit(int), default=32)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer folder the model was trained with (default: data/fetch/tokenizer beside it)")
    parser.add_argument("--annotations", type=Path, default=None, metavar="FILE",
                        help="AIR-SLT-style annotation JSON: score the map with Rsu, Ras, Rda, Rmi")
    parser.add_argument("--max-pixels", type=_limit(int), default=None, metavar="N",
                        help="refuse windows above N pixels, width x height (default 134217728 = 2**27)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError) as exc:
        from pir.errors import first_line
        print(f"pir locate: {first_line(exc)}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from pir import files, hub
    from pir.data.images import MIN_SIDE, check_size
    from pir.evaluation.semantic_localization import read_annotations, select_annotation, semantic_localization
    from pir.search.encoder import load_encoder
    from pir.search.locate import Grid, heat_outputs, locate, write_heat_tiff, write_overlay_png

    started = time.perf_counter()
    heat_path, png_path, json_path = heat_outputs(args.out, args.png)
    check_paths(args.scene, [heat_path, png_path, json_path])
    if args.tile < MIN_SIDE:
        raise ValueError(f"--tile must be at least {MIN_SIDE} pixels (got {args.tile})")
    if args.annotations is not None and _same_file(args.annotations, json_path):
        raise ValueError(f"{json_path}: is the --annotations file; choose another --out")
    annotation = None
    if args.annotations is not None:   # read before the long part: a bad file fails at once
        annotation = select_annotation(read_annotations(args.annotations), args.scene, args.text, args.annotations)
    try:   # the scene opened once: its size, bands, a window's size and the grid checked before the model loads
        from pir.data.geo import Scene
        scene = Scene(args.scene, bands=args.bands, max_pixels=args.max_pixels)
    except Exception as exc:   # GDAL raises its own types (CPLE_*) besides OSError for files it cannot parse
        raise _open_refusal(args.scene, exc) from None
    with scene:
        try:
            Grid.for_scene(scene.width, scene.height, args.cell)
            check_size(min(args.tile, scene.width), min(args.tile, scene.height), args.max_pixels)   # a window
        except ValueError as exc:
            raise _open_refusal(args.scene, exc) from None
        t0 = time.perf_counter()
        encoder = load_encoder(args.checkpoint, args.tokenizer, args.device)
        t1 = time.perf_counter()
        located = locate(scene, args.text, encoder, tile=args.tile, stride=args.stride, cell=args.cell,
                         batch_size=args.batch_size, progress=True)
    sha = files.sha256_path(encoder.source or args.checkpoint)
    checkpoint = str(args.checkpoint) if hub.is_hub_id(args.checkpoint) else str(Path(args.checkpoint).resolve())
    cw, ch = located.grid.cell_size
    t2 = time.perf_counter()
    write_heat_tiff(heat_path, located, {"query": args.text, "scene": args.scene.name, "checkpoint": checkpoint,
                                         "checkpoint_sha256": sha, "tile": args.tile, "stride": args.stride,
                                         "cell": f"{cw:g},{ch:g}", "score": "cosine, averaged over windows"})
    write_overlay_png(png_path, located, args.text)
    t3 = time.perf_counter()
    metrics = None
    if annotation is not None:
        metrics = semantic_localization(located.heat, annotation.polygons, located.grid.cell_size).record()
    t4 = time.perf_counter()
    record = {
        "query": args.text, "scene": str(args.scene.resolve()), "checkpoint": checkpoint, "checkpoint_sha256": sha,
        **({"hub": encoder.hub} if encoder.hub else {}), "preset": encoder.preset,
        "tile": args.tile, "stride": args.stride, "bands": list(args.bands) if args.bands else None,
        "scene_size": [located.grid.width, located.grid.height], "grid": [located.grid.cols, located.grid.rows],
        "cell": [cw, ch], "windows": located.windows, "crs": located.georef.crs if located.georef else None,
        "score": {"kind": "cosine", **located.summary()},
        "outputs": {"heat": str(heat_path), "png": str(png_path)},
        "annotations": None if annotation is None else {"file": str(args.annotations), "caption": annotation.caption,
                                                        "image": annotation.image,
                                                        "polygons": len(annotation.polygons)},
        "metrics": metrics,
        "timings": {"load_s": t1 - t0, **located.timings, "write_s": t3 - t2, "metrics_s": t4 - t3,
                    "total_s": time.perf_counter() - started},
    }
    files.write_json(json_path, record)
    print(f"heat map: {heat_path} ({located.grid.cols}x{located.grid.rows} cells of {cw:g}x{ch:g} px, "
          f"{located.windows} windows)")
    print(f"overlay: {png_path}")
    print(f"record: {json_path}")
    if metrics is not None:
        print("  ".join(f"{k} {metrics[k]:.4f}" for k in ("Rsu", "Ras", "Rda", "Rmi")))
    return 0
