"""The backward pass: walk the graph in decreasing rank order (a heap, no recursion)."""

from __future__ import annotations

import heapq
import itertools

import numpy

from .function import Function
from .grad_mode import no_grad


def run_backward(roots, retain_graph: bool, captures: dict | None = None) -> None:
    """Propagate gradients from ``roots`` (pairs of tensor and gradient array) to the leaves.

    With ``captures`` (a dict from capture key to None) gradients reaching those tensors are
    stored there instead of being accumulated into leaves' ``.grad``, as ``autograd.grad``
    needs. Keys are ``id(leaf)`` for leaves and ``(node, output_nr)`` for other tensors.
    """
    pending = {}  # node -> list of summed gradient arrays, one slot per output
    heap = []  # (-rank, order, node): consumers before producers
    order = itertools.count()
    with no_grad():
        for tensor, grad in roots:
            _send(tensor.grad_fn or tensor, tensor._output_nr, grad, pending, heap, order, captures)
        while heap:
            node = heapq.heappop(heap)[2]
            grads = pending.pop(node)
            _process(node, grads, retain_graph, pending, heap, order, captures)


def _process(node, grads, retain_graph, pending, heap, order, captures) -> None:
    for i, grad in enumerate(grads):
        if grad is None:
            shape, dtype = node._outputs[i]
            grads[i] = _zeros_like_grad(grads, shape, dtype)
    if node._hooks:
        for i, hooks in node._hooks.items():
            grads[i] = _run_hooks(hooks, grads[i])
    if captures:
        for i, grad in enumerate(grads):
            if (node, i) in captures:
                captures[(node, i)] = grad
    if node._half:
        grads = [g.astype(numpy.float32) if g.dtype == numpy.float16 else g for g in grads]
    result = type(node).backward(node, *grads)
    if not isinstance(result, tuple):
        result = (result,)
    edges = node._edges
    if len(result) != len(edges):
        raise RuntimeError(
            f"function {node.name()} returned {len(result)} gradients, "
            f"expected {len(edges)} (one per forward input)"
        )
    if not retain_graph:
        node._release()
    for edge, grad in zip(edges, result):
        if edge is None or grad is None:
            continue
        if isinstance(grad, numpy.generic):  # NumPy returns scalars for 0-d results
            grad = numpy.asarray(grad)
        if type(edge) is tuple:
            target, output_nr = edge
            if target._freed:  # a node shared with a graph that an earlier backward freed
                _ = target.saved_tensors  # raises "backward through the graph a second time"
            expected_shape, dtype = target._outputs[output_nr]
        else:
            target, output_nr = edge, 0
            expected_shape, dtype = edge._array.shape, edge._array.dtype
        if grad.shape != expected_shape:
            raise RuntimeError(
                f"function {node.name()} returned an invalid gradient - got shape "
                f"{tuple(grad.shape)} but expected shape {tuple(expected_shape)}"
            )
        if grad.dtype != dtype:
            grad = grad.astype(dtype)
        _send(target, output_nr, grad, pending, heap, order, captures)


def _send(target, output_nr, grad, pending, heap, order, captures) -> None:
    """Deliver ``grad`` to a node's output slot, or to a leaf tensor."""
    if isinstance(target, Function):
        slots = pending.get(target)
        if slots is None:
            if target._freed:
                _ = target.saved_tensors  # raises "backward through the graph a second time"
            slots = pending[target] = [None] * len(target._outputs)
            heapq.heappush(heap, (-target._rank, next(order), target))
        slots[output_nr] = grad if slots[output_nr] is None else _sum(slots[output_nr], grad)
        return
    _accumulate_leaf(target, grad, captures)


def _sum(a, b):
    """``a + b`` of two gradients; NumPy returns a scalar for two 0-d arrays."""
    total = a + b
    return numpy.asarray(total) if isinstance(total, numpy.generic) else total


def _accumulate_leaf(leaf, grad, captures) -> None:
    if leaf._hooks:
        grad = _run_hooks(leaf._hooks, grad)
    if captures is not None:
        key = id(leaf)
        if key in captures:
            captures[key] = grad if captures[key] is None else _sum(captures[key], grad)
        return
    if leaf._grad is None:
        # copy: the same array may be handed to several leaves (e.g. by add's backward)
        leaf._grad = type(leaf)._make(grad.copy())
    else:
        accumulated = leaf._grad._array
        accumulated += grad
        leaf._grad._version[0] += 1


def _run_hooks(hooks, grad):
    from ..tensor import Tensor

    for hook in hooks:
        result = hook(Tensor._make(grad))
        if result is not None:
            grad = result._array if isinstance(result, Tensor) else result
    return grad


def _zeros_like_grad(grads, shape, dtype):
    from ..backend import get_array_module

    xp = get_array_module(*[g for g in grads if g is not None])
    return xp.zeros(shape, dtype)
