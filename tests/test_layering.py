"""Imports point one way: seqlib -> core, seqlib -> kernels; kernels import neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_packages(package: str) -> set:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update((alias.name.split(".")[0], path.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add((node.module.split(".")[0], path.name))
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("core", {"seqlib", "kernels"}),
    ("kernels", {"seqlib", "core"}),
])
def test_imports_point_one_way(package, forbidden):
    offending = sorted(f"{file} imports {name}" for name, file in _imported_packages(package)
                       if name in forbidden)
    assert not offending, f"{package}/ must not import {forbidden}: {offending}"


def test_checker_sees_imports(tmp_path, monkeypatch):
    """The AST walk above does find imports (so the layering test can fail)."""
    names = {name for name, _ in _imported_packages("seqlib")}
    assert "core" in names
