"""The ``pir`` command: tools around the pipeline, run from inside a project checkout.

    pir recipe show [NAME] [KEY=VALUE ...]   the configuration a run would use, as YAML
    pir recipe list                          the recipes that ship with the library
    pir bench [--quick] [...]                the benchmark -> reports/bench.json
    pir ablation [--seeds 0 1 2] [...]       the paper's ablation as queued DVC experiments
    pir baselines NAME=PATH [...]            zero-shot CLIP-family checkpoints -> reports/baselines.md
    pir zeroshot SOURCE --checkpoint CKPT --out FILE.json [--preset P] [--template T ...]
                                             zero-shot scene classification of class folders, an archive
                                             of them, or a prepared dataset -> FILE.json + FILE.png
    pir export CKPT --hub DIR [--tokenizer DIR] [--metrics FILE]
                                             a Hugging Face Hub-ready folder (config.json, model.safetensors,
                                             tokenizer, model card); load it as hf-hub:ORG/REPO once uploaded
    pir export CKPT --onnx DIR [--tokenizer DIR] [--preset P]
                                             image.onnx + text.onnx (checked against torch: max difference
                                             printed), preprocess.json and the tokenizer (--hub may come too)
    pir index SOURCE --checkpoint CKPT --out INDEX_DIR [--bands 3,2,1] [--ann | --no-ann]
              [--tile T [--stride S]]        embed a folder or archive of images (incremental); an
                                             approximate (faiss) index too from 200,000 images or --ann;
                                             --tile: TIFFs as windows (SOURCE may be one scene.tif)
    pir index SOURCE --onnx DIR --out INDEX_DIR [...]
                                             the same index through onnxruntime from a --onnx export
                                             (torch need not be installed; --threads N)
    pir search INDEX_DIR "text" [--top K]    ranked `score<TAB>path` lines, + `<TAB>col,row,w,h` for a
                                             window (--image PATH, --sheet out.png, --geojson OUT)
    pir locate SCENE.tif "text" --checkpoint CKPT --out HEAT.tif [--tile 256] [--stride 128]
               [--annotations ANNO.json]     a float32 GeoTIFF heat map of where the text is in a large
                                             scene + HEAT.png overlay + HEAT.json (SeLo metrics with
                                             AIR-SLT-style annotations)
    pir serve INDEX_DIR [--port 8000] [--root PATH] [--basemap URL_TEMPLATE [--basemap-attribution TEXT]]
                                             the search page on http://127.0.0.1:PORT/ (--root: an index
                                             not built here, served from PATH); georeferenced hits on a
                                             map over the scenes' quicklooks (--basemap: + a web map)
    pir shards SOURCE OUT [--shard-size N] [--dataset rsitmd|rsicd]
                                             webdataset tar shards of a prepared dataset or a dataset
                                             source -> OUT/{train,val,test}-NNNNN.tar + shards.json
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = __doc__.split("\n\n", 1)[1].rstrip()


def recipe_show(argv: list[str], root: Path | None = None) -> int:
    """Print params.yaml resolved with recipe NAME and KEY=VALUE overrides (as `dvc exp run -S` sets
    them); problems that would stop a run go to stderr after the YAML."""
    from pir.pipeline.params import PipelineConfig, apply_overrides, load_params
    from pir_tools.project import project_root

    overrides = [f"recipe={argv[0]}", *argv[1:]] if argv and "=" not in argv[0] else argv
    try:
        cfgs = PipelineConfig.from_params(apply_overrides(load_params((root or project_root()) / "params.yaml"),
                                                          overrides))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(cfgs.to_yaml(), end="")
    for problem in cfgs.problems():
        print(f"# before running: {problem}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "recipe" and rest[:1] == ["show"]:
        return recipe_show(rest[1:])
    if command == "recipe" and rest[:1] == ["list"]:
        from pir.pipeline.params import recipe_names
        print("\n".join(recipe_names()))
        return 0
    if command == "bench":
        from pir_tools.bench.cli import main as bench
        bench(rest)
        return 0
    if command == "baselines":
        from pir_tools.baselines import main as baselines
        baselines(rest)
        return 0
    if command == "zeroshot":
        from pir_tools.zeroshot import main as zeroshot
        return zeroshot(rest)
    if command == "export":
        from pir_tools.export import main as export
        return export(rest)
    if command == "index":
        from pir_tools.search import index_main
        return index_main(rest)
    if command == "search":
        from pir_tools.search import search_main
        return search_main(rest)
    if command == "locate":
        from pir_tools.locate import main as locate
        return locate(rest)
    if command == "serve":
        from pir_tools.serve import main as serve
        return serve(rest)
    if command == "shards":
        from pir_tools.shards import main as shards
        return shards(rest)
    if command == "ablation":
        from pir_tools.ablation import main as ablation
        ablation(rest)
        return 0
    print(USAGE, file=sys.stderr)
    return 0 if command in ("-h", "--help", "help") else 2


if __name__ == "__main__":
    sys.exit(main())
