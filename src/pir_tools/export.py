"""``pir export``: a checkpoint as a folder that other people and tools load.

    pir export CKPT --hub DIR [--tokenizer DIR] [--metrics FILE]
    pir export CKPT --onnx DIR [--tokenizer DIR] [--preset P]

CKPT is anything ``pir.models.checkpoint.load_model`` reads (best.pt, an official checkpoint, an
exported folder, a Hub id). ``--hub DIR`` writes a Hugging Face Hub-ready folder: the weights and
config.json of ``pir.models.exported``, the tokenizer (PIR presets: the WordPiece/BERT files the model
was trained with; CLIP presets use open_clip's BPE, named in config.json), and a model card (README.md)
with the run's test metrics and training params. Upload it with ``hf upload ORG/REPO DIR``; then
``evaluate.checkpoint=hf-hub:ORG/REPO`` loads the same model (docs/clip-family.md, "Weights from the
Hugging Face Hub"). The folder appears whole or not at all (written beside DIR, then renamed).

``--onnx DIR`` writes the image and text towers as ONNX graphs (image.onnx, text.onnx), preprocess.json and
the tokenizer (pir.models.onnx_export), checked against torch on a batch as they are written (the largest
difference is printed; above 1e-4 nothing is written). ``pir index SOURCE --onnx DIR`` embeds through
onnxruntime, where torch need not be installed (docs/search-and-geo.md, "ONNX export and torch-free
indexing"). ``--preset`` loads released CLIP weights (RemoteCLIP, GeoRSCLIP, OpenAI) as that clip-*
preset's plain CLIP model, as ``pir zeroshot --preset`` does. Both targets may be named at once (two
folders). ``pir search`` loads PIR checkpoints and exported folders only, so for an index of released
weights export them with ``--hub`` first and the ONNX graphs from that folder (``pir export W.pt --preset
clip-b32 --hub H``, then ``pir export H --onnx O``).

Each target is an option and a function in ``TARGETS``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from torch import nn

from pir.config import ModelConfig


@dataclass
class Loaded:
    """The checkpoint once loaded: what each target writes from."""
    named: str              # CKPT as the user gave it (a path or a Hub id)
    local: Path             # where its bytes are (a Hub id's place in the cache)
    model: nn.Module
    cfg: ModelConfig
    extra: dict[str, Any]   # the checkpoint's other entries (epoch, params, model_key, ...)
    hub: dict[str, str] = field(default_factory=dict)   # {Hub id: commit} when CKPT was named by one

    @property
    def model_key(self) -> str:
        """What evaluate names the model by (pir.pipeline.evaluate): the train run's key, else the bytes'."""
        from pir import files
        return self.extra.get("model_key") or f"sha256:{files.sha256_path(self.local)}"


def load(checkpoint: str, preset: str = "") -> Loaded:
    """CKPT loaded; with a clip-* ``preset``, released CLIP weights load too
    (pir.models.checkpoint.load_evaluated_model)."""
    from pir import hub
    from pir.config import model_config
    from pir.models.checkpoint import load_evaluated_model, load_model

    with hub.recording() as resolved:
        local = hub.local_path(checkpoint, "CKPT")
    model, cfg, extra = load_evaluated_model(local, "cpu", model_config(preset)) if preset else load_model(local)
    return Loaded(checkpoint, local, model, cfg, extra, hub.report(resolved))


# --------------------------------------------------------------------------- --hub

def check_target(out: Path) -> None:
    """DIR is replaced whole: only an absent or empty folder, or an earlier export, may be."""
    from pir.models.exported import is_export_folder

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"{out}: exists and is not a folder; give a new folder for --hub")
    if out.is_dir() and any(out.iterdir()) and not is_export_folder(out):
        raise ValueError(f"{out}: a folder with other files in it (not an earlier `pir export --hub`); "
                         "give an empty or new folder")


def project_metrics(loaded: Loaded, metrics_file: Path | None) -> tuple[dict | None, str]:
    """(reports/metrics.json of the run, a note): the given file, else the project's the checkpoint (or
    the working directory) lies in; only when its record names this model, so a card never carries
    another model's numbers."""
    from pir_tools.project import project_root

    if metrics_file is None:
        for start in (loaded.local.parent, None):
            try:
                metrics_file = project_root(start) / "reports" / "metrics.json"
                break
            except SystemExit:   # not inside a project
                continue
    if metrics_file is None or not metrics_file.is_file():
        return None, "no reports/metrics.json found (run the evaluate stage, or pass --metrics)"
    try:
        report = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{metrics_file}: unreadable metrics ({exc})") from None
    named = ((report.get("checkpoint") or {}).get("model_key") if isinstance(report, dict) else None)
    if named != loaded.model_key:
        return None, f"{metrics_file} is the evaluation of another model ({named}, not {loaded.model_key}); left out"
    return report, f"metrics from {metrics_file}"


def _front_matter(cfg: ModelConfig, report: dict | None) -> dict[str, Any]:
    from pir import hub
    from pir.models.exported import is_plain_clip

    tags = ["pir", "remote-sensing", "image-text-retrieval", "cross-modal-retrieval"]
    tags += ["clip", "open_clip"] if cfg.is_clip else ["swin", "bert"]
    front: dict[str, Any] = {"library_name": "open_clip" if is_plain_clip(cfg) else "pir", "tags": tags}
    dataset = (report or {}).get("dataset")
    if dataset and dataset != "synthetic":
        front["datasets"] = [dataset]
    starts = [value for value in (cfg.clip_weights, cfg.vision_pretrained, cfg.text_pretrained and cfg.text_model)
              if value and hub.is_hub_id(value)]
    if starts:   # the Hub links a model to the one it was fine-tuned from
        front["base_model"] = sorted({hub.parse(value).repo_id for value in starts})
    return front


def _metrics_section(report: dict | None, note: str) -> list[str]:
    from pir.evaluation.metrics import METRIC_KEYS

    if report is None:
        return ["## Evaluation", "", f"Not included: {note}.", ""]
    ci95 = report.get("ci95") or {}
    lines = ["## Evaluation", "",
             f"Test split of `{report.get('dataset')}` ({report.get('n_images')} images, {report.get('n_texts')} "
             "captions), from the run's reports/metrics.json: recall at K in percent, with the 95% bootstrap "
             "interval over test images.", "",
             "| metric | value | 95% CI |", "| --- | ---: | ---: |"]
    for key in METRIC_KEYS:
        low_high = ci95.get(key)
        shown = f"{low_high[0]:.2f} - {low_high[1]:.2f}" if low_high else ""
        lines.append(f"| {key} | {float(report[key]):.2f} | {shown} |")
    return [*lines, ""]


def model_card(loaded: Loaded, report: dict | None, note: str, files_written: list[str]) -> str:
    """README.md: YAML front matter (library, tags, datasets, base model), how to load, preprocessing,
    the metrics and the training params."""
    from pir.models.exported import is_plain_clip, preprocessing

    cfg, extra = loaded.cfg, loaded.extra
    preset = ((extra.get("params") or {}).get("model_preset") or "custom")
    arch = cfg.clip_model or f"{cfg.vision_model} + BERT ({cfg.text_layers} layers)"
    heads = ", ".join(name for name, on in (("VIR", cfg.use_vir), ("LCA", cfg.use_lca)) if on) or "none"
    lines = ["---", yaml.safe_dump(_front_matter(cfg, report), sort_keys=False).rstrip(), "---", "",
             f"# PIR, {preset} preset", "",
             f"Remote-sensing image-text retrieval (PIR: Prior Instruction Representation) exported by "
             f"`pir export --hub`: towers {arch}, PIR heads {heads}, {cfg.embed_dim}-dimensional embeddings"
             + (f", epoch {extra['epoch']}" if extra.get("epoch") is not None else "") + ".", "",
             "## Load", "", "```python", "from pir.models.checkpoint import load_model",
             'model, cfg, extra = load_model("hf-hub:ORG/REPO")   # or the path of this folder', "```", "",
             "In a PIR project: `dvc exp run -S evaluate.checkpoint=hf-hub:ORG/REPO`; search: "
             "`pir index IMAGES --checkpoint hf-hub:ORG/REPO --out INDEX`.", ""]
    if is_plain_clip(cfg):
        lines += ["The CLIP towers load in open_clip alone: "
                  '`open_clip.create_model_and_transforms("hf-hub:ORG/REPO")`.', ""]
    lines += ["## Preprocessing", "", "```json", json.dumps(preprocessing(cfg), indent=2), "```", ""]
    lines += _metrics_section(report, note)
    params = extra.get("params") or extra.get("official_config")
    if params:
        lines += ["## Training params", "", "```yaml", yaml.safe_dump(params, sort_keys=False).rstrip(), "```", ""]
    lines += ["## Files", "", *(f"- `{name}`" for name in sorted(files_written)), ""]
    return "\n".join(lines)


def export_hub(loaded: Loaded, out: Path, tokenizer: Path | None = None, metrics: Path | None = None) -> list[str]:
    """Write the Hub-ready folder ``out`` (see the module doc); returns the names in it."""
    from pir import files
    from pir.models.exported import write_export
    from pir.search.encoder import search_tokenizer

    check_target(out)
    # PIR presets: the tokenizer the model was trained with, checked against its vocabulary first
    text_tokenizer = None if loaded.cfg.is_clip else search_tokenizer(loaded.cfg, tokenizer, loaded.local)
    report, note = project_metrics(loaded, metrics)
    with files.atomic_dir(out) as tmp:
        write_export(tmp, loaded.model, loaded.cfg, loaded.extra)
        if text_tokenizer is not None:
            text_tokenizer.save_pretrained(tmp)
        written = sorted(p.name for p in tmp.iterdir()) + ["README.md"]
        (tmp / "README.md").write_text(model_card(loaded, report, note, written), encoding="utf-8")
        files.fsync_tree(tmp)
    print(f"pir export: {note}")
    return written


# --------------------------------------------------------------------------- --onnx

def export_onnx(loaded: Loaded, out: Path, tokenizer: Path | None = None) -> list[str]:
    """Write the ONNX folder ``out`` (pir.models.onnx_export; atomic like --hub); returns the names in it."""
    from pir import files, hub
    from pir.data.text import ClipTokenizer
    from pir.models.onnx_export import check_target as check_onnx_target
    from pir.models.onnx_export import write_onnx_export
    from pir.search.encoder import checkpoint_preset, search_tokenizer

    check_onnx_target(out)
    cfg = loaded.cfg
    text_tokenizer = ClipTokenizer() if cfg.is_clip else search_tokenizer(cfg, tokenizer, loaded.local)
    named = loaded.named if hub.is_hub_id(loaded.named) else str(Path(loaded.named).resolve())
    source = {"path": named, "sha256": files.sha256_path(loaded.local), "preset": checkpoint_preset(cfg, loaded.extra),
              "epoch": loaded.extra.get("epoch"), "model_key": loaded.model_key,
              **({"hub": loaded.hub} if loaded.hub else {})}
    with files.atomic_dir(out) as tmp:
        write_onnx_export(tmp, loaded.model, cfg, text_tokenizer, source, source["preset"],
                          log=lambda line: print(f"pir export: {line}", flush=True))
        written = sorted(p.name for p in tmp.iterdir())
        files.fsync_tree(tmp)
    return written


# --------------------------------------------------------------------------- the command

# (option, its metavar, help, what writes it): one row per target
TARGETS: tuple[tuple[str, str, str, Callable[..., list[str]]], ...] = (
    ("--hub", "DIR", "a Hugging Face Hub-ready folder: config.json, model.safetensors, the tokenizer, README.md",
     lambda loaded, out, args: export_hub(loaded, out, args.tokenizer, args.metrics)),
    ("--onnx", "DIR", "the image and text towers as ONNX graphs (image.onnx, text.onnx), preprocess.json and the "
     "tokenizer, checked against torch; `pir index SOURCE --onnx DIR` embeds with them (no torch needed)",
     lambda loaded, out, args: export_onnx(loaded, out, args.tokenizer)),
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pir export", description="Write a checkpoint in a form others load.")
    parser.add_argument("checkpoint", metavar="CKPT",
                        help="best.pt, any loadable checkpoint, an exported folder or a Hub id (hf-hub:ORG/REPO...)")
    for option, metavar, help_text, _ in TARGETS:
        parser.add_argument(option, type=Path, metavar=metavar, default=None, help=help_text)
    parser.add_argument("--tokenizer", type=Path, default=None, metavar="DIR",
                        help="tokenizer folder the model was trained with (default: data/fetch/tokenizer beside CKPT)")
    parser.add_argument("--metrics", type=Path, default=None, metavar="FILE",
                        help="the run's metrics (default: reports/metrics.json of the project; kept only when it "
                             "is this model's evaluation)")
    parser.add_argument("--preset", default="", metavar="P",
                        help="a clip-* preset: CKPT may then be released CLIP weights (RemoteCLIP, GeoRSCLIP, OpenAI), "
                             "exported as that preset's plain CLIP model")
    args = parser.parse_args(argv)
    chosen = [(option, getattr(args, option.lstrip("-")), write) for option, _, _, write in TARGETS
              if getattr(args, option.lstrip("-")) is not None]
    if not chosen:
        parser.error(f"name what to write: {' or '.join(f'{o} {m}' for o, m, _, _ in TARGETS)}")
    folders = [out.resolve() for _, out, _ in chosen]
    if len(set(folders)) < len(folders):
        parser.error("each target needs its own folder")
    try:
        loaded = load(args.checkpoint, args.preset)
        for option, out, write in chosen:
            written = write(loaded, out, args)
            print(f"{out}: {', '.join(written)}")
    except (ValueError, OSError) as exc:
        print(f"pir export: {exc}", file=sys.stderr)
        return 1
    return 0
