"""Zero-shot baselines: released CLIP-family checkpoints evaluated with the project's own scorer.

    pir baselines RemoteCLIP-B32=/w/RemoteCLIP-ViT-B-32.pt GeoRSCLIP-B32=/w/RS5M_ViT-B-32.pt
    pir baselines --dry-run NAME=PATH ...                        # preset, activation, seen: from names only
    pir baselines MyCLIP=/w/my_clip.pt:seen --preset clip-b16     # say what the weights have seen
    pir baselines MyCLIP=/w/my_clip.pt:quickgelu                  # and what they compute with
    pir baselines ... -S data.dataset=rsitmd -S data.source=/data/RSITMD -j 1
    pir baselines --collect-only NAME=PATH ...                   # only rebuild the table
    pir baselines --allow-torchscript OpenAI-B32=/w/ViT-B-32.pt  # OpenAI's archives run code: opt in

Each NAME=PATH is one queued DVC experiment `baseline-<NAME>` running the pipeline with the clip
recipe, the CLIP preset of the file (from its name: ViT-B-32 / ViT-B-16 / ViT-L-14 / ViT-H-14 / RN50,
else --preset), ``model.clip_weights=PATH``, ``model.clip_activation`` and ``train.epochs=0`` (zero-shot:
the train stage writes the loaded weights as the checkpoint), so evaluate and analyze score it exactly as
they score PIR, and its MLflow run sits next to PIR's. The table goes to reports/baselines.md and
reports/figures/baselines.png, with the activation each ran with and a column saying whether the starting
weights have already seen RSICD/RSITMD training images: leakage is not skill. Both facts come from the
file name (``pir.clip_known.KNOWN_WEIGHTS``; unknown names: gelu, seen unknown) unless suffixes after the
path say otherwise, in any order: ``:seen`` / ``:unseen`` and ``:quickgelu`` / ``:gelu``
(``NAME=PATH:unseen:quickgelu``). ``--dry-run`` prints what each checkpoint would run with, one line each,
and loads, checks and queues nothing (a missing path is reported, not refused).

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

from pir import files, hub
from pir.clip_known import ACTIVATIONS, resolve_activation, seen_by_name, weights_name
from pir.config import CLIP_PRESETS, PRESETS
from pir.evaluation.metrics import METRIC_KEYS
from pir.pipeline.paths import Paths
from pir_tools.dvc_queue import finished_metrics, queue_experiment, run_queue
from pir_tools.experiments import METRIC_TITLES
from pir_tools.project import project_root

PREFIX = "baseline"
SEEN = {"seen": "yes", "unseen": "no"}
GIVEN = "given on the command line"
# File-name patterns -> the preset of that architecture (RN50 but not RN50x4: another width).
ARCH_PRESETS = ((r"ViT-?L-?14", "clip-l14"), (r"ViT-?B-?16", "clip-b16"), (r"ViT-?B-?32", "clip-b32"),
                (r"ViT-?H-?14", "clip-h14"), (r"RN-?50(?![x\d])", "clip-rn50"))


@dataclass(frozen=True)
class Baseline:
    name: str
    weights: str       # an absolute path, or a Hub id (hf-hub:ORG/REPO[/FILE][@REVISION]) resolved by the run
    preset: str
    seen: str          # yes | no | unknown
    why: str
    activation: str    # quickgelu | gelu
    activation_why: str

    @property
    def experiment(self) -> str:
        return f"{PREFIX}-{self.name}"


def preset_by_name(weights: str | Path, default: str) -> str:
    """The clip-* preset the weights' name says (a path's file name or a Hub id's file), else ``default``."""
    for pattern, preset in ARCH_PRESETS:
        if re.search(pattern, weights_name(str(weights)), flags=re.IGNORECASE):
            return preset
    return default


def split_suffixes(spec: str, rest: str) -> tuple[str, dict[str, str]]:
    """``PATH[:seen|:unseen][:quickgelu|:gelu]`` (suffixes in any order) -> (PATH, {"seen"/"activation": value})."""
    given: dict[str, str] = {}
    while True:
        head, colon, tail = rest.rpartition(":")
        key = "seen" if tail in SEEN else "activation" if tail in ACTIVATIONS else None
        if not colon or not head or key is None:
            return rest, given
        if key in given:
            sys.exit(f"{spec!r}: {key} given twice")
        given[key] = SEEN.get(tail, tail)
        rest = head


def parse_spec(spec: str, default_preset: str, root: Path, must_exist: bool = True) -> Baseline:
    """``NAME=PATH[:seen|:unseen][:quickgelu|:gelu]`` -> Baseline (one-line SystemExit when malformed, or
    when PATH is missing and ``must_exist``)."""
    name, sep, rest = spec.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or not rest:
        sys.exit(f"{spec!r}: expected NAME=PATH[:seen|:unseen][:quickgelu|:gelu] "
                 "(NAME of letters, digits, '.', '_', '-')")
    rest, given = split_suffixes(spec, rest)
    weights = spec_weights(rest, root, name, must_exist)
    preset = preset_by_name(weights, default_preset)
    seen, why = (given["seen"], GIVEN) if "seen" in given else seen_by_name(weights)
    activation, activation_why = ((given["activation"], GIVEN) if "activation" in given
                                  else resolve_activation(PRESETS[preset].clip_model, weights))
    return Baseline(name, weights, preset, seen, why, activation, activation_why)


def spec_weights(given: str, root: Path, name: str, must_exist: bool) -> str:
    """A Hub id as it is (its syntax checked here; the experiment resolves it), else the absolute path
    (relative to the project), which must exist when ``must_exist``."""
    if hub.is_hub_id(given):
        try:
            hub.parse(given, f"baseline {name}")
        except ValueError as exc:
            sys.exit(str(exc))
        return given
    path = Path(given).expanduser()
    path = path if path.is_absolute() else root / path
    if must_exist and not path.exists():
        sys.exit(f"{path}: weights not found (baseline {name})")
    return str(path.resolve())


def dry_run_line(baseline: Baseline) -> str:
    """What the baseline would run with, from names alone: nothing is opened (a missing path is said)."""
    where = baseline.weights + (" (Hub id: resolved when the experiment runs)" if hub.is_hub_id(baseline.weights)
                                else "" if Path(baseline.weights).exists() else " (not found: fine in a dry run)")
    return (f"{baseline.name}: {where}; preset {baseline.preset}; activation {baseline.activation} "
            f"({baseline.activation_why}); seen RSICD/RSITMD train: {baseline.seen} ({baseline.why})")


def queue_baselines(root: Path, baselines: list[Baseline], extra: list[str], allow_torchscript: bool = False) -> None:
    for baseline in baselines:
        overrides = {"recipe": "clip", "model.preset": baseline.preset, "model.clip_weights": baseline.weights,
                     "model.clip_activation": baseline.activation, "train.epochs": 0}
        if allow_torchscript:   # "++": params.yaml leaves the key out (it would change the train stage's params)
            overrides["++model.allow_torchscript"] = True
        queue_experiment(root, baseline.experiment, overrides, extra)


def refuse_torchscript(baselines: list[Baseline]) -> None:
    """Exit in one line on the first TorchScript archive, before any experiment is queued."""
    for baseline in baselines:   # a Hub id is checked by the stage that resolves it (pir.models.clip)
        path = Path(baseline.weights)
        if not hub.is_hub_id(baseline.weights) and path.is_file() and files.is_torchscript(path):
            sys.exit(f"baseline {baseline.name}: {files.torchscript_refused(path)}")


def markdown_table(baselines: list[Baseline], metrics: dict[str, dict[str, float]]) -> str:
    header = ("| Baseline | preset | activation | weights | seen RSICD/RSITMD train? | " + " | ".join(METRIC_TITLES)
              + " |")
    lines = [header, "|" + " --- |" * (5 + len(METRIC_TITLES))]
    for b in baselines:
        run = metrics.get(b.experiment)
        cells = [f"{run[k]:.2f}" for k in METRIC_KEYS] if run else ["n/a"] * len(METRIC_KEYS)
        lines.append(f"| {b.name} | {b.preset} | {b.activation} | `{weights_name(b.weights)}` | {b.seen} ({b.why}) | "
                     + " | ".join(cells) + " |")
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
                     f"\nEach row is the DVC experiment `{PREFIX}-<name>` (`train.epochs=0`, recipe clip, "
                     "`model.clip_activation` as the activation column says) and its MLflow run of the same name, "
                     "scored by the same evaluate stage as PIR.\n")
    baselines_figure(baselines, metrics, Paths(root).figures / "baselines.png")
    return table


def main(argv: list[str] | None = None, root: Path | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", metavar="NAME=PATH[:seen|:unseen][:quickgelu|:gelu]")
    parser.add_argument("--preset", default="clip-b32", choices=CLIP_PRESETS,
                        help="CLIP preset when the file name does not say")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each checkpoint's preset, activation and seen/unseen from names; load nothing")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="experiments run in parallel")
    parser.add_argument("-S", "--set-param", action="append", default=[], help="extra override for every baseline")
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--allow-torchscript", action="store_true",
                        help="accept TorchScript archives (OpenAI's .pt files): loading one runs code from the file")
    args = parser.parse_args(argv)
    root = root or project_root()
    baselines = [parse_spec(spec, args.preset, root, must_exist=not args.dry_run) for spec in args.checkpoints]
    if len({b.name for b in baselines}) != len(baselines):
        sys.exit("baseline names must be unique")
    if args.dry_run:
        print("\n".join(dry_run_line(b) for b in baselines))
        return
    if not args.collect_only:
        if not args.allow_torchscript:
            refuse_torchscript(baselines)
        queue_baselines(root, baselines, args.set_param, allow_torchscript=args.allow_torchscript)
        run_queue(root, args.jobs)
    print(collect(root, baselines))
