"""Rules that keep the layout honest: the model library and the evaluator never reach into the
trainer, no library module imports the stage scripts or the tools (pir_tools), and every stage
script is one call into the library's pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.test_dvc_deps import ROOT, SRC, imported_modules

LIBRARY = sorted((SRC / "pir").rglob("*.py"))


def _package(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts)


@pytest.mark.parametrize("package", ["pir.models", "pir.evaluation", "pir.data"])
def test_model_side_packages_import_nothing_from_training(package):
    offenders = {_package(p): sorted(n for n in imported_modules(p) if n.startswith("pir.training"))
                 for p in LIBRARY if _package(p).startswith(package)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_data_is_the_bottom_layer():
    # pir.data reads datasets and captions; what the layers above share with it (caption_keys) lives in
    # pir.data, so no data module (function-level imports included) reaches up into them
    above = {"pir.evaluation", "pir.training", "pir.models", "pir.search", "pir.analysis", "pir.pipeline"}
    offenders = {_package(p): sorted(n for n in imported_modules(p) if ".".join(n.split(".")[:2]) in above)
                 for p in LIBRARY if _package(p).startswith("pir.data.")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_library_never_imports_stages_or_tools():
    offenders = {_package(p): sorted(imported_modules(p, ("common", "stages", "tools", "pir_tools")))
                 for p in LIBRARY}
    assert {k: v for k, v in offenders.items() if v} == {}


def _pipeline_knowledge(source: str, module: str) -> list[str]:
    """What a library module knows of the pipeline layer: imports of mlflow or pir.pipeline anywhere in
    its body (function level, relative and importlib ones included), and strings that name params.yaml
    or dvc.yaml (docstrings may explain them). ``module``: its dotted name (``pkg.__init__`` for a package)."""
    import ast

    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level else node.module)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in
              ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found += [f"string naming {name}" for name in ("params.yaml", "dvc.yaml") if name in node.value]
        found += [f"imports {name}" for name in names
                  if name.split(".")[0] == "mlflow" or name == "pir.pipeline" or name.startswith("pir.pipeline.")]
    return sorted(set(found))


def test_the_library_knows_no_pipeline():
    # the library proper takes typed configs and paths: MLflow, params.yaml and dvc.yaml are the pipeline
    # layer's (src/pir/pipeline), which adapts the library to them (e.g. the trainer's EpochLogger)
    offenders = {_package(p): _pipeline_knowledge(p.read_text(), _package(p)) for p in LIBRARY
                 if not (_package(p) + ".").startswith("pir.pipeline.")}
    assert {k: v for k, v in offenders.items() if v} == {}
    # the checker itself: a function-level import, a relative one, importlib, a string (not a docstring)
    snippet = ('"""Explains params.yaml."""\ndef f():\n    """And dvc.yaml."""\n    from ..pipeline import tracking\n'
               '    import mlflow.entities\n    importlib.import_module("pir.pipeline")\n    return f"{1} dvc.yaml"\n')
    assert _pipeline_knowledge(snippet, "pir.training.x") == [
        "imports mlflow.entities", "imports pir.pipeline", "imports pir.pipeline.tracking", "string naming dvc.yaml"]


def test_no_module_shadows_the_standard_library():
    import sys
    shadowing = [_package(p) for p in LIBRARY if p.stem in sys.stdlib_module_names and p.stem != "__init__"]
    assert shadowing == []


def _dvc_stages() -> list[str]:
    return list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def test_stages_folder_holds_exactly_what_dvc_yaml_runs():
    # every other entry point is a `pir` subcommand (pir_tools.cli), not a script beside the stages
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert {name: stage["cmd"] for name, stage in stages.items()} == {
        name: f"python stages/{name}.py" for name in stages}
    present = {p.name for p in (ROOT / "stages").iterdir() if p.name != "__pycache__"}
    assert present == {f"{name}.py" for name in stages}


@pytest.mark.parametrize("stage", _dvc_stages())
def test_stage_script_is_one_call_into_the_pipeline(stage):
    import ast

    script = ROOT / "stages" / f"{stage}.py"
    tree = ast.parse(script.read_text())
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert {(node.module, tuple(a.name for a in node.names)) for node in imports} == {
        ("pathlib", ("Path",)), ("pir.pipeline", (stage,)), ("pir.pipeline.entry", ("main",))}
    guard = tree.body[-1]
    assert isinstance(guard, ast.If) and len(guard.body) == 1
    call = guard.body[0].value
    assert isinstance(call, ast.Call) and call.func.id == "main" and call.args[0].id == stage
    assert len(tree.body) == 1 + len(imports) + 1          # docstring, imports, the guarded call


def test_every_pipeline_stage_is_a_run_of_configs_and_paths():
    import importlib
    import inspect

    from pir.pipeline.entry import STAGES
    assert set(STAGES) == set(_dvc_stages())
    for stage in STAGES:
        run = importlib.import_module(f"pir.pipeline.{stage}").run
        assert list(inspect.signature(run).parameters) == ["cfgs", "paths"], stage


def test_tests_import_normally():
    # tests are packages: no sys.path edits, runpy or sys.modules surgery to reach code under test
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")
                 if p != Path(__file__) and any(word in p.read_text() for word in ("runpy", "sys.modules[", "sys.path.insert"))]
    assert offenders == []


MAX_LINES = 500   # a file past this is two concepts (timm: one concept per small file)


def test_no_source_file_is_longer_than_500_lines():
    sources = [*SRC.rglob("*.py"), *(ROOT / "stages").glob("*.py"), *(ROOT / "scripts").glob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these into modules of at most {MAX_LINES} lines: {long}"
