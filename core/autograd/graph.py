"""A picture of the graph behind a tensor: Graphviz DOT source, rendered if ``dot`` exists."""

from __future__ import annotations

import shutil
import subprocess


def to_dot(tensor, params: dict | None = None) -> str:
    """Graphviz DOT source for the graph that produced ``tensor``.

    Args:
        tensor: the output whose history to draw.
        params: optional ``{name: tensor}`` (e.g. ``dict(model.named_parameters())``) to label
            leaves by name.
    Returns:
        DOT source: op nodes (grey boxes) with their output shapes, leaves (blue, with shapes),
        and the output (green).
    """
    names = {id(t): name for name, t in (params or {}).items()}
    lines = [
        "digraph autograd {",
        '  node [fontname="Helvetica" fontsize=10 shape=box style=filled];',
        "  rankdir=BT;",
    ]
    out_id = f"t{id(tensor)}"
    lines.append(f'  {out_id} [label="output\\n{_shape(tensor.shape)}" fillcolor="#b8e0b8"];')
    if tensor.grad_fn is None:
        lines.append("}")
        return "\n".join(lines)
    seen = set()
    stack = [tensor.grad_fn]
    lines.append(f"  n{id(tensor.grad_fn)} -> {out_id};")
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        shapes = ", ".join(_shape(shape) for shape, _ in node._outputs)
        lines.append(f'  n{id(node)} [label="{node.name()}\\n{shapes}" fillcolor="#dddddd"];')
        for edge in node._edges:
            if edge is None:
                continue
            if type(edge) is tuple:
                lines.append(f"  n{id(edge[0])} -> n{id(node)};")
                stack.append(edge[0])
            else:
                leaf = f"l{id(edge)}"
                if leaf not in seen:
                    seen.add(leaf)
                    label = names.get(id(edge), "leaf")
                    lines.append(
                        f'  {leaf} [label="{label}\\n{_shape(edge.shape)}" fillcolor="#add8e6"];'
                    )
                lines.append(f"  {leaf} -> n{id(node)};")
    lines.append("}")
    return "\n".join(lines)


def _shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def render(tensor, path: str, params: dict | None = None, format: str = "png") -> str:
    """Write the graph picture to ``path`` (PNG or SVG) with Graphviz's ``dot``; returns path."""
    if format not in ("png", "svg", "pdf"):
        raise ValueError(f"render: format must be 'png', 'svg' or 'pdf', got {format!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            "render: the Graphviz 'dot' program is not on the PATH (install graphviz, or use "
            "to_dot() and render the source elsewhere)"
        )
    subprocess.run([dot, f"-T{format}", "-o", path], input=to_dot(tensor, params).encode(),
                   check=True)
    return path
