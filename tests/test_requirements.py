"""A fresh machine passes: every package the code imports has its own line (requirements.txt, pyproject).

A package that only arrives through another one (psutil through mlflow, scipy through scikit-learn) can
vanish when that one changes its dependencies; and one installed by hand on a developer's machine hides
a missing line until a user's fresh environment fails. So each direct import must be named.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OWN = {"pir", "pir_tools", "tests"}


@functools.cache   # three tests scan the same folders
def imported_modules(*folders: str) -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports, including those inside functions)."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return {m: files for m, files in found.items() if m not in OWN and m not in sys.stdlib_module_names}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: list[str]) -> set[str]:
    return {canonical(re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0]) for line in lines
            if line.strip() and not line.strip().startswith("#")}


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Distributions providing each imported module (mlflow comes in mlflow and mlflow-skinny); a module
    that no installed distribution provides fails here."""
    provided = _packages_distributions()
    missing = sorted(f"{m} (in {sorted(files)[0]})" for m, files in modules.items() if m not in provided)
    assert not missing, f"imported but provided by no installed package: {missing}"
    return {module: {canonical(d) for d in provided[module]} for module in modules}


def test_every_directly_imported_package_has_a_line_in_requirements_txt():
    needed = distributions_of(imported_modules("src", "stages", "scripts", "tests"))
    listed = requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    missing = sorted(f"{min(dists)} (import {module})" for module, dists in needed.items() if not dists & listed)
    assert not missing, f"requirements.txt lacks: {missing}"


def test_every_package_the_library_imports_is_a_dependency_in_pyproject():
    needed = distributions_of(imported_modules("src"))
    declared = requirement_names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    missing = sorted(f"{min(dists)} (import {module})" for module, dists in needed.items() if not dists & declared)
    assert not missing, f"pyproject.toml [project] dependencies lack: {missing}"


def test_the_check_sees_imports_inside_functions():
    """The scanner itself: a lazy import inside a function counts like a top-level one."""
    assert "imagehash" in imported_modules("tests")          # tests/data/test_leakage.py imports it at the top
    assert "safetensors" in imported_modules("src")           # imported inside functions of pir.models
