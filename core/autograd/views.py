"""Views under in-place ops: a view's history follows its base's in-place changes, as PyTorch's.

A view (the output of view, reshape when it does not copy, permute, transpose, expand, basic
indexing, split, chunk, unbind, ...) records its root base in ``_base`` and, in
``_view_steps``, the steps that make it from the root: ``("reshape", shape)``,
``("permute", dims)``, ``("expand", shape)`` or ``("index", basic_index)``. The root keeps weak
references to its live views in ``_views``. Views share the root's version counter.

When the root, or any view of it, is changed in place under autograd:

* changed through a view, the root's history becomes a ``CopySlices`` node: its gradient
  outside the view goes to the root's old history, inside it to the in-place op's result;
* every live view's history becomes an ``AsStrided`` node that takes the view's part of the
  root's gradient, so a view read after the change differentiates through it.

Replaying the steps on ``arange(root.numel())`` gives, for each element of the view, its flat
position in the root; both nodes work on those positions, so any chain of steps and any
memory layout of the root is handled the same way.
"""

from __future__ import annotations

import weakref

from ..backend import get_array_module, scatter_add
from .function import Function


# ---- recording views ---------------------------------------------------------------------
def track(view, base, step: tuple):
    """Mark ``view`` (sharing memory with ``base``) as a view of ``base``'s root; returns it."""
    root = base._base
    if root is None:
        root, steps = base, (step,)
    else:
        steps = base._view_steps + (step,)
    view._base = root
    view._version = root._version
    view._view_steps = steps
    refs = root._views
    if refs is None:
        root._views = [weakref.ref(view)]
        return view
    refs.append(weakref.ref(view))
    count = len(refs)
    if count >= 16 and not count & (count - 1):  # at powers of two: amortised O(1) per view
        refs[:] = [r for r in refs if r() is not None]
    return view


def replay(array, steps: tuple):
    """Apply a view's steps to ``array`` (shaped like the root)."""
    xp = get_array_module(array)
    for kind, argument in steps:
        if kind == "reshape":
            array = array.reshape(argument)
        elif kind == "permute":
            array = array.transpose(argument)
        elif kind == "expand":
            array = xp.broadcast_to(array, argument)
        else:
            array = array[argument]
    return array


def is_expanded(steps: tuple) -> bool:
    """True when elements of the view may share memory (it went through expand)."""
    return any(kind == "expand" for kind, _ in steps)


# ---- the nodes ---------------------------------------------------------------------------
def _count(shape: tuple) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


def _positions(xp, shape: tuple, steps: tuple):
    """Flat row-major positions in a root of ``shape`` of each element of the view."""
    return xp.asarray(replay(xp.arange(_count(shape)).reshape(shape), steps))


class AsStrided(Function):
    """A view read after its root changed in place: the gradient lands on the view's elements
    of the root (PyTorch's AsStridedBackward)."""

    @staticmethod
    def backward(ctx, g):
        shape, steps = ctx.args
        xp = get_array_module(g)
        positions = _positions(xp, shape, steps).reshape(-1)
        grad = xp.zeros(_count(shape), g.dtype)
        if is_expanded(steps):
            scatter_add(grad, positions, g.reshape(-1))  # shared elements add up
        else:
            grad[positions] = g.reshape(-1)
        return grad.reshape(shape)


class CopySlices(Function):
    """The root after an in-place op on one of its views: the view's elements come from the
    op's result, the others from the root's old value."""

    def name(self) -> str:
        return "CopySlices"

    @staticmethod
    def backward(ctx, g):
        shape, steps = ctx.args
        xp = get_array_module(g)
        positions = _positions(xp, shape, steps)
        flat = g.reshape(-1)
        g_result = flat[positions] if ctx.needs_input_grad[1] else None
        g_root = None
        if ctx.needs_input_grad[0]:
            g_root = flat.copy()
            g_root[positions.reshape(-1)] = 0
            g_root = g_root.reshape(shape)
        return g_root, g_result


def _edge(tensor):
    """What a node's edge to ``tensor`` is: None (no gradient), the leaf, or (node, output)."""
    if tensor is None or not tensor._requires_grad:
        return None
    return tensor if tensor.grad_fn is None else (tensor.grad_fn, tensor._output_nr)


def _node(cls, args: tuple, inputs: tuple, output):
    """A node of ``cls`` with edges to ``inputs`` and one output shaped like ``output``."""
    node = cls()
    node.args = args
    edges = tuple(_edge(t) for t in inputs)
    node.needs_input_grad = tuple(edge is not None for edge in edges)
    node._edges = edges
    node._rank = 1 + max((e[0]._rank for e in edges if type(e) is tuple), default=0)
    node._outputs = ((output._array.shape, output._array.dtype),)
    return node


# ---- rewiring after an in-place op -------------------------------------------------------
def set_history(tensor, node, output_nr: int = 0) -> None:
    """Make ``tensor`` output ``output_nr`` of ``node`` (None: no history); a ``retain_grad``
    moves along, hooks stay with the old history (as PyTorch)."""
    retains = tensor._retains_grad
    tensor.grad_fn = node
    tensor._output_nr = output_nr
    tensor._requires_grad = node is not None
    if retains:
        tensor._retains_grad = False
        tensor.retain_grad()


def write_through_view(view, result) -> None:
    """After ``view``'s elements were overwritten with ``result`` (an in-place op on a view),
    make the root's history a CopySlices of its old history and ``result``'s."""
    root = view._base
    had_grad = root._requires_grad
    node = _node(CopySlices, (root._array.shape, view._view_steps), (root, result), root)
    set_history(root, node)
    rebase_views(root, had_grad)


def rebase_views(root, had_grad: bool) -> None:
    """Point every live view of ``root`` at the root's new history.

    Views without history whose root had one (made under ``no_grad``) are left as they are.
    """
    refs = root._views
    if not refs:
        return
    alive = []
    for ref in refs:
        view = ref()
        if view is None:
            continue
        alive.append(ref)
        if view._requires_grad or not had_grad:
            set_history(view, _node(AsStrided, (root._array.shape, view._view_steps), (root,),
                                    view))
    refs[:] = alive


def check_view_inplace(view, op: str) -> None:
    """Refuse in-place ops on views that autograd cannot follow, with PyTorch's reasons."""
    root = view._base
    if root._requires_grad and root.grad_fn is None:
        raise RuntimeError(
            f"{op}: a view of a leaf Variable that requires grad is being used in an in-place "
            "operation."
        )
    if root._requires_grad and not view._requires_grad:
        raise RuntimeError(
            f"{op}: a view was created in no_grad mode and is being modified inplace with grad "
            "mode enabled. Given that this use case is ambiguous and error-prone, it is "
            "forbidden. You can clarify your code by moving both the view and the inplace "
            "either both inside the no_grad block (if you don't want the inplace to be "
            "tracked) or both outside (if you want the inplace to be tracked)."
        )


def check_writable(tensor, op: str) -> None:
    """Refuse to write into an expanded view, with or without autograd (NumPy would say its
    array is read-only; CuPy would write each shared element several times)."""
    if tensor._base is not None and is_expanded(tensor._view_steps):
        raise RuntimeError(
            f"{op}: unsupported operation: the tensor is an expanded view (expand, "
            "broadcast_to), where more than one element may refer to a single memory "
            "location. Please clone() the tensor before performing the operation."
        )
