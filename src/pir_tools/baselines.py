"""Zero-shot baselines: released CLIP-family checkpoints evaluated with the project's own scorer.

    pir baselines RemoteCLIP-B32=/w/RemoteCLIP-ViT-B-32.pt GeoRSCLIP-B32=/w/RS5M_ViT-B-32.pt
    pir baselines MyCLIP=/w/my_clip.pt:seen --preset clip-b16     # say what the weights have seen
    pir baselines ... -S data.dataset=rsitmd -S data.source=/data/RSITMD -j 1
    pir baselines --collect-only NAME=PATH ...                   # only rebuild the table
    pir baselines --allow-torchscript OpenAI-B32=/w/ViT-B-32.pt  # OpenAI's archives run code: opt in

Each NAME=PATH is one queued DVC experiment `baseline-<NAME>` running the pipeline with the clip
recipe, the CLIP preset of the file (from its name: ViT-B-32 / ViT-B-16 / ViT-L-14, else --preset),
``model.clip_weights=PATH`` and ``train.epochs=0`` (zero-shot: the train stage writes the loaded weights
as the checkpoint), so evaluate and analyze score it exactly as they score PIR, and its MLflow run
sits next to PIR's. The table goes to reports/baselines.md and reports/figures/baselines.png, with a
column saying whether the starting weights have already seen RSICD/RSITMD training images (from
``KNOWN_WEIGHTS`` by file name, or ``:seen`` / ``:unseen`` after the path): leakage is not skill.

A TorchScript archive (OpenAI's own ``ViT-B-32.pt``) is refused before anything is queued: loading it
runs code from the file. ``--allow-torchscript`` sets ``model.allow_torchscript`` in its experiments.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pir import files
from pir.evaluation.metrics import METRIC_KEYS
from pir.paths import Paths
from pir_tools.dvc_queue import finished_metrics, queue_experiment, run_queue
from pir_tools.experiments import METRIC_TITLES
from pir_tools.project import project_root

PREFIX = "baseline"
SEEN = {"seen": "yes", "unseen": "no"}
# File-name patterns of released weights -> (have they seen RSICD/RSITMD training images?, why).
# First match wins; anything else is "unknown" unless NAME=PATH:seen / :unseen says.
KNOWN_WEIGHTS: tuple[tuple[str, str, str], ...] = (
    (r"RET-?[23]", "yes", "GeoRSCLIP fine-tuned on RET-2 (RSICD + RSITMD train) / RET-3 (+ UCM)"),
    (r"RemoteCLIP", "yes", "RemoteCLIP's training data include the RSICD and RSITMD training captions"),
    (r"RS5M", "unknown", "GeoRSCLIP pre-trained on RS5M (not the retrieval sets' captions)"),
    (r"SkyCLIP|SkyScript", "unknown", "SkyCLIP, trained on SkyScript"),
    (r"^(ViT-[BL]-(32|16|14)(-336px)?|RN50\w*)\.pt$", "no", "OpenAI CLIP (web image-text pairs)"),
)
ARCH_PRESETS = ((r"ViT-?L-?14", "clip-l14"), (r"ViT-?B-?16", "clip-b16"), (r"ViT-?B-?32", "clip-b32"))


@dataclass(frozen=True)
class Baseline:
    name: str
    path: Path
    preset: str
    seen: str          # yes | no | unknown
    why: str

    @property
    def experiment(self) -> str:
        return f"{PREFIX}-{self.name}"


def seen_by_name(path: Path) -> tuple[str, str]:
    for pattern, seen, why in KNOWN_WEIGHTS:
        if re.search(pattern, path.name, flags=re.IGNORECASE):
            return seen, why
    return "unknown", "not in the known-weights table"


def preset_by_name(path: Path, default: str) -> str:
    for pattern, preset in ARCH_PRESETS:
        if re.search(pattern, path.name, flags=re.IGNORECASE):
            return preset
    return default


def parse_spec(spec: str, default_preset: str, root: Path) -> Baseline:
    """``NAME=PATH`` or ``NAME=PATH:seen`` / ``:unseen`` -> Baseline (one-line SystemExit when malformed)."""
    name, sep, rest = spec.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or not rest:
        sys.exit(f"{spec!r}: expected NAME=PATH[:seen|:unseen] (NAME of letters, digits, '.', '_', '-')")
    override = None
    head, colon, tail = rest.rpartition(":")
    if colon and tail in SEEN:
        rest, override = head, SEEN[tail]
    path = Path(rest).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.exists():
        sys.exit(f"{path}: weights not found (baseline {name})")
    seen, why = seen_by_name(path)
    if override:
        seen, why = override, "given on the command line"
    return Baseline(name, path.resolve(), preset_by_name(path, default_preset), seen, why)


def queue_baselines(root: Path, baselines: list[Baseline], extra: list[str], allow_torchscript: bool = False) -> None:
    for baseline in baselines:
        overrides = {"recipe": "clip", "model.preset": baseline.preset, "model.clip_weights": str(baseline.path),
                     "train.epochs": 0}
        if allow_torchscript:   # "++": params.yaml leaves the key out (it would change the train stage's params)
            overrides["++model.allow_torchscript"] = True
        queue_experiment(root, baseline.experiment, overrides, extra)


def refuse_torchscript(baselines: list[Baseline]) -> None:
    """Exit in one line on the first TorchScript archive, before any experiment is queued."""
    for baseline in baselines:
        if baseline.path.is_file() and files.is_torchscript(baseline.path):
            sys.exit(f"baseline {baseline.name}: {files.torchscript_refused(baseline.path)}")


def markdown_table(baselines: list[Baseline], metrics: dict[str, dict[str, float]]) -> str:
    header = "| Baseline | preset | weights | seen RSICD/RSITMD train? | " + " | ".join(METRIC_TITLES) + " |"
    lines = [header, "|" + " --- |" * (4 + len(METRIC_TITLES))]
    for b in baselines:
        run = metrics.get(b.experiment)
        cells = [f"{run[k]:.2f}" for k in METRIC_KEYS] if run else ["n/a"] * len(METRIC_KEYS)
        lines.append(f"| {b.name} | {b.preset} | `{b.path.name}` | {b.seen} ({b.why}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def baselines_figure(baselines: list[Baseline], metrics: dict[str, dict[str, float]], path: Path) -> None:
    """mR per baseline; hatched bars for weights that have seen RSICD/RSITMD training images."""
    plt = files.pyplot()
    shown = [b for b in baselines if b.experiment in metrics]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(shown) + 2), 3.5))
    x = np.arange(len(shown))
    colours = {"yes": "tab:red", "no": "tab:blue", "unknown": "tab:gray"}
    ax.bar(x, [metrics[b.experiment]["r_mean"] for b in shown], color=[colours[b.seen] for b in shown],
           hatch=None, edgecolor="black")
    for i, b in enumerate(shown):
        if b.seen == "yes":
            ax.patches[i].set_hatch("//")
    ax.set_xticks(x, [b.name for b in shown], rotation=20, ha="right")
    ax.set_ylabel("mR (%)")
    ax.set_title("Zero-shot baselines (test split); hatched/red = seen RSICD/RSITMD train images")
    ax.title.set_fontsize(9)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=120)


def collect(root: Path, baselines: list[Baseline]) -> str:
    metrics = finished_metrics(root, PREFIX)
    missing = [b.experiment for b in baselines if b.experiment not in metrics]
    for name in missing:
        print(f"warning: no finished experiment {name}", file=sys.stderr)
    if len(missing) == len(baselines):
        sys.exit(f"no finished experiments named {PREFIX}-*: run without --collect-only first")
    table = markdown_table(baselines, metrics)
    files.write_text(Paths(root).reports / "baselines.md",
                     "# Zero-shot baselines (test split, %)\n\n" + table +
                     f"\nEach row is the DVC experiment `{PREFIX}-<name>` (`train.epochs=0`, recipe clip) and its "
                     "MLflow run of the same name, scored by the same evaluate stage as PIR.\n")
    baselines_figure(baselines, metrics, Paths(root).figures / "baselines.png")
    return table


def main(argv: list[str] | None = None, root: Path | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", metavar="NAME=PATH[:seen|:unseen]")
    parser.add_argument("--preset", default="clip-b32", help="CLIP preset when the file name does not say")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="experiments run in parallel")
    parser.add_argument("-S", "--set-param", action="append", default=[], help="extra override for every baseline")
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--allow-torchscript", action="store_true",
                        help="accept TorchScript archives (OpenAI's .pt files): loading one runs code from the file")
    args = parser.parse_args(argv)
    root = root or project_root()
    baselines = [parse_spec(spec, args.preset, root) for spec in args.checkpoints]
    if len({b.name for b in baselines}) != len(baselines):
        sys.exit("baseline names must be unique")
    if not args.collect_only:
        if not args.allow_torchscript:
            refuse_torchscript(baselines)
        queue_baselines(root, baselines, args.set_param, allow_torchscript=args.allow_torchscript)
        run_queue(root, args.jobs)
    print(collect(root, baselines))
