"""Import rules that keep the layout honest: the model library and the evaluator never reach into
the trainer, and no library module imports the stage scripts or the tools (pir_tools)."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_dvc_deps import SRC, imported_modules

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
