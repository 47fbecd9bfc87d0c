"""dvc.yaml's deps are correct: every library file a stage imports (directly or through other
library modules, function-level imports included) is covered by one of that stage's deps, so
editing it makes `dvc status` report the stage. The e2e test checks the same with real DVC."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# Data files a module reads at run time, by the module that reads them.
DATA_FILES = {SRC / "pir/pipeline/params.py": [SRC / "pir/recipes"]}


def module_file(name: str) -> Path | None:
    """src/ file of an importable ``pir`` module or package, else None."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=None)   # the tests walk the same files once per stage
def imported_modules(path: Path, roots: tuple[str, ...] = ("pir",)) -> set[str]:
    """Modules under ``roots`` (default: ``pir.*``) that ``path`` imports anywhere in its body."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)   # submodules
    return {n for n in names if n.split(".")[0] in roots}


@functools.lru_cache(maxsize=None)
def closure(script: Path) -> frozenset[Path]:
    """Every file under src/pir that running ``script`` may execute or read."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += DATA_FILES.get(path, [])
        if path.suffix != ".py":
            continue
        for name in imported_modules(path):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):   # importing a.b.c runs a/__init__ and a/b/__init__
                found = module_file(".".join(parts[:depth]))
                if found:
                    todo.append(found)
    return frozenset(seen)


def stage_scripts() -> dict[str, tuple[Path, list[Path]]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        script = ROOT / stage["cmd"].split()[1]
        deps = [ROOT / (d if isinstance(d, str) else next(iter(d))) for d in stage.get("deps", [])]
        out[name] = (script, deps)
    return out


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


def stages_importing(path: Path) -> set[str]:
    """Stages that run (or read) ``path``: the ones `dvc status` must report when it changes."""
    return {name for name, (script, _) in stage_scripts().items() if covered(path, list(closure(script)))}


def test_every_imported_library_file_is_a_dep_of_its_stage():
    missing = {name: sorted(str(p.relative_to(ROOT)) for p in closure(script) if not covered(p, deps))
               for name, (script, deps) in stage_scripts().items()}
    assert {k: v for k, v in missing.items() if v} == {}


def test_no_stage_depends_on_library_code_it_never_uses():
    # an unused dep would rerun a (possibly hours-long) stage for an edit that cannot change it
    unused = {name: [str(d.relative_to(ROOT)) for d in deps
                     if SRC in d.parents and not any(f == d or d in f.parents for f in used)]
              for name, (script, deps) in stage_scripts().items() for used in [closure(script)]}
    assert {k: v for k, v in unused.items() if v} == {}


def test_closure_follows_library_imports():
    # sanity of the checker itself: train reaches the losses through the model package
    train_script, _ = stage_scripts()["train"]
    files = closure(train_script)
    assert SRC / "pir/models/losses.py" in files and SRC / "pir/recipes" in files
    assert SRC / "pir/analysis/tsne.py" not in files


def test_dvc_yaml_wires_the_paths_of_pir_paths():
    # every out, metric and plot file of dvc.yaml is a path pir.pipeline.paths names, and the other way round
    from pir.pipeline.paths import Paths

    paths = Paths(ROOT)
    named = {getattr(paths, name).relative_to(ROOT).as_posix() for name in dir(Paths)
             if isinstance(getattr(Paths, name), property)}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    wired = {entry if isinstance(entry, str) else next(iter(entry))
             for stage in stages.values() for kind in ("outs", "metrics", "plots") for entry in stage.get(kind, [])}
    assert wired - named == set()
    outputs = {p for p in named if p.startswith("reports/") and p.count("/") >= 1} - {"reports/figures"}
    assert outputs - wired == set()
    folders = {p for p in named if p.count("/") == 1 and p.startswith("data/")} - {"data/downloads"}
    assert folders - wired == set()


def test_every_stage_that_computes_with_floats_reruns_when_the_thread_count_changes():
    """runtime.threads changes the numbers (pir.threads): each such stage lists it, so DVC never serves
    a result computed with another count. fetch does not: its outputs are the same at every count."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    listing = {name: {p for p in stage.get("params", []) if isinstance(p, str)} for name, stage in stages.items()}
    assert {name for name, params in listing.items() if "runtime.threads" in params or "runtime" in params} == \
        {"audit", "scene_prior", "train", "evaluate", "analyze", "index"}
