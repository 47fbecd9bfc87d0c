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


def test_library_never_imports_stages_or_tools():
    offenders = {_package(p): sorted(imported_modules(p, ("common", "stages", "tools", "pir_tools")))
                 for p in LIBRARY}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_shadows_the_standard_library():
    import sys
    shadowing = [_package(p) for p in LIBRARY if p.stem in sys.stdlib_module_names and p.stem != "__init__"]
    assert shadowing == []


def _dvc_stages() -> list[str]:
    return list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


@pytest.mark.parametrize("stage", _dvc_stages())
def test_stage_script_is_one_call_into_the_pipeline(stage):
    import ast

    script = ROOT / "stages" / f"{stage}.py"
    tree = ast.parse(script.read_text())
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert {(node.module, tuple(a.name for a in node.names)) for node in imports} == {
        ("pathlib", ("Path",)), ("pir.pipeline", ("main", stage))}
    guard = tree.body[-1]
    assert isinstance(guard, ast.If) and len(guard.body) == 1
    call = guard.body[0].value
    assert isinstance(call, ast.Call) and call.func.id == "main" and call.args[0].id == stage
    assert len(tree.body) == 1 + len(imports) + 1          # docstring, imports, the guarded call


def test_every_pipeline_stage_is_a_run_of_configs_and_paths():
    import importlib
    import inspect

    from pir.pipeline import STAGES

    assert set(STAGES) == set(_dvc_stages())
    for stage in STAGES:
        run = importlib.import_module(f"pir.pipeline.{stage}").run
        assert list(inspect.signature(run).parameters) == ["cfgs", "paths"], stage


def test_tests_import_normally():
    # tests are packages: no sys.path edits, runpy or sys.modules surgery to reach code under test
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")
                 if p != Path(__file__) and any(word in p.read_text() for word in ("runpy", "sys.modules[", "sys.path.insert"))]
    assert offenders == []
