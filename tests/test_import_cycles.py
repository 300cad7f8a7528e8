"""No import cycles in seqlib: a module never imports (at the top or inside a function) one
that imports it back, directly or through others.

The one knot allowed is core's Tensor and its ops: Tensor methods import the modules that
implement them (``core.ops``, ``core.autograd``, ``core.creation``, ...) inside the methods,
and those import Tensor. Every module is named as installed (``core/`` is ``seqlib.core``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = {"seqlib": "seqlib", "core": "seqlib.core", "kernels": "seqlib.kernels"}


def _modules() -> dict:
    """Installed module name -> (path, is_package) for every file of the three folders."""
    found = {}
    for folder, package in INSTALLED.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            found[".".join([package, *(parts[:-1] if is_package else parts)])] = (path,
                                                                                 is_package)
    return found


def import_graph() -> dict:
    """Module -> the seqlib modules it imports (the most specific module each import names:
    ``from seqlib.recurrent import fused`` is ``seqlib.recurrent.fused``)."""
    modules = _modules()

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {resolve(t) for t in targets if resolve(t)} - {name}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _is_tensor_knot(component: list) -> bool:
    return "seqlib.core.tensor" in component and all(
        name.startswith("seqlib.core.") for name in component)


def test_no_import_cycles_but_cores_tensor_and_ops():
    offending = [c for c in cycles(import_graph()) if not _is_tensor_knot(c)]
    assert not offending, f"import cycles: {offending}"


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    graph = import_graph()
    assert "seqlib.recurrent.fused" in graph["seqlib.recurrent.transformers"]
    assert "seqlib.core.functional.normalization" in graph["seqlib.core.functional"]  # relative
    assert any(_is_tensor_knot(c) for c in cycles(graph))
