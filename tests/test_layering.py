"""Imports point one way: seqlib -> core, seqlib -> kernels; kernels import neither.

Installed, ``core/`` is ``seqlib.core`` and ``kernels/`` is ``seqlib.kernels``, so every import
(absolute or relative) is resolved to its installed dotted name and classified as one of the
three layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = {"seqlib": "seqlib", "core": "seqlib.core", "kernels": "seqlib.kernels"}


def _layer(module: str) -> str | None:
    """Which of seqlib's layers a fully qualified module name belongs to (None: outside)."""
    for layer in ("core", "kernels"):
        prefix = INSTALLED[layer]
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return "seqlib" if module.split(".")[0] == "seqlib" else None


def _imports(folder: str) -> set:
    """(fully qualified module, file) for every import in one repository folder."""
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        parts = path.relative_to(ROOT / folder).with_suffix("").parts
        package = [INSTALLED[folder], *parts[:-1]]  # the installed package the file lives in
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update((alias.name, path.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    found.add((node.module, path.name))
                    continue
                base = ".".join(package).split(".")
                base = base[: len(base) - (node.level - 1)]
                found.add((".".join(base + ([node.module] if node.module else [])), path.name))
    return found


@pytest.mark.parametrize("folder, forbidden", [
    ("core", {"seqlib", "kernels"}),
    ("kernels", {"seqlib", "core"}),
])
def test_imports_point_one_way(folder, forbidden):
    offending = sorted(f"{file} imports {module}" for module, file in _imports(folder)
                       if _layer(module) in forbidden)
    assert not offending, f"{folder}/ must not import {forbidden}: {offending}"


@pytest.mark.parametrize("folder", ["seqlib", "core", "kernels", "tests", "examples", "benchmarks"])
def test_nothing_imports_the_uninstalled_top_level_names(folder):
    """``core`` and ``kernels`` exist only as ``seqlib.core`` / ``seqlib.kernels`` installed."""
    offending = sorted(f"{file} imports {module}" for module, file in _imports_anywhere(folder)
                       if module.split(".")[0] in ("core", "kernels")
                       and file != "installed_smoke.py")  # imports the *other* core and kernels
    assert not offending


def _imports_anywhere(folder: str) -> set:
    if folder in INSTALLED:
        return _imports(folder)
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update((alias.name, path.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add((node.module, path.name))
    return found


def test_checker_sees_imports():
    """The walk above resolves absolute and relative imports (so the tests above can fail)."""
    core = {module for module, _ in _imports("core")}
    assert "seqlib.core.tensor" in core  # a relative import inside core, resolved
    assert _layer("seqlib.core.tensor") == "core" and _layer("seqlib.nn") == "seqlib"
    assert {_layer(module) for module, _ in _imports("seqlib")} >= {"core", "kernels"}
    assert _layer("seqlib.kernelsx") == "seqlib" and _layer("numpy") is None
