"""Sorting along one dim: sort, argsort, topk.

Every order here is stable (equal values keep their input order; PyTorch promises that only
with ``stable=True``), NaN sorts above every number as in PyTorch, and the gradient of the
values goes back to the positions they came from.
"""

from __future__ import annotations

import numpy

from .. import dtypes
from ..autograd.function import Function
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import normalize_dim
from .reduce import ValuesIndices


def stable_order(x, dim: int, descending: bool):
    """Indices that sort ``x`` along ``dim``, ties in input order, NaN counted largest."""
    xp = get_array_module(x)
    if not descending:
        return xp.argsort(x, axis=dim, kind="stable").astype(xp.int64, copy=False)
    # NOTE: sorting the reversed input ascending and reversing the result puts the largest
    # first with ties in input order; negating would not (it breaks ties backwards, and fails
    # for bool and unsigned inputs).
    reversed_order = xp.argsort(xp.flip(x, dim), axis=dim, kind="stable")
    return ((x.shape[dim] - 1) - xp.flip(reversed_order, dim)).astype(xp.int64, copy=False)


def top_order(x, dim: int, k: int, descending: bool):
    """``stable_order(x, dim, descending)`` cut to its first ``k`` along ``dim``, found in
    linear time (a partition, then a sort of the ``k``) rather than by sorting everything."""
    xp = get_array_module(x)
    n = x.shape[dim]
    if k in (0, n) or (x.dtype.kind == "f" and bool(xp.isnan(x).any())):
        return stable_order(x, dim, descending)[(slice(None),) * dim + (slice(0, k),)]
    lines = xp.moveaxis(x, dim, -1)  # (..., n)
    at = n - k if descending else k - 1
    kth = xp.partition(lines, at, axis=-1)[..., at, None]  # the k-th value of each line
    beyond = lines > kth if descending else lines < kth  # fewer than k of these
    tied = lines == kth  # as in the full stable order, the first of the ties go in
    chosen = beyond | (tied & (xp.cumsum(tied, axis=-1) <= k - beyond.sum(-1, keepdims=True)))
    positions = xp.nonzero(chosen)[-1].reshape(lines.shape[:-1] + (k,))  # k per line, in order
    values = xp.take_along_axis(lines, positions, axis=-1)
    order = xp.take_along_axis(positions, stable_order(values, values.ndim - 1, descending), -1)
    return xp.moveaxis(order, -1, dim).astype(xp.int64, copy=False)


class Sort(Function):
    """The first ``k`` entries along ``dim`` in sorted order, and where they came from."""

    @staticmethod
    def forward(ctx, x, dim, descending, k):
        xp = get_array_module(x)
        order = top_order(x, dim, k, descending)
        values = xp.take_along_axis(x, order, axis=dim)
        ctx.save_for_backward(order)
        ctx.args = (x.shape, dim)
        ctx.mark_non_differentiable(order)
        return values, order

    @staticmethod
    def backward(ctx, g, g_order):
        (order,) = ctx.saved_tensors
        shape, dim = ctx.args
        xp = get_array_module(g)
        grad = xp.zeros(shape, g.dtype)
        xp.put_along_axis(grad, order, g, axis=dim)  # the positions are distinct
        return grad, None, None, None


def _sorted(input: Tensor, dim: int, descending: bool, k: int | None, op: str):
    """(values, indices) of the first ``k`` (all if None) along ``dim``; 0-d as PyTorch."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    d = normalize_dim(dim, input.ndim, op)
    size = input.shape[d] if input.ndim else 1
    k = size if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, numpy.integer)):
        raise TypeError(f"{op}: k must be an int, got {k!r}")
    if not 0 <= k <= size:
        raise RuntimeError(f"{op}: k must be in [0, {size}] (the size of dim {d}), got {k}")
    if input.ndim == 0:  # one element, sorted already; PyTorch returns it even for k=0
        values, indices = Sort.apply(input.view(1), 0, descending, 1)
        return ValuesIndices(values.view(()), indices.view(()))
    return ValuesIndices(*Sort.apply(input, d, descending, k))


def sort(input: Tensor, dim: int = -1, descending: bool = False, *, stable: bool = False):
    """The values along ``dim`` in ascending (or descending) order, and their indices.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: the dim to sort along.
        descending: largest first.
        stable: accepted for PyTorch compatibility; the sort is always stable.
    Returns:
        ``(values, indices)``, a named tuple of two ``input``-shaped tensors (indices int64).
    """
    return _sorted(input, dim, descending, None, "sort")


def argsort(input: Tensor, dim: int = -1, descending: bool = False, *,
            stable: bool = False) -> Tensor:
    """The indices that sort ``input`` along ``dim`` (``sort(...).indices``).

    Args:
        input: a tensor of any shape ``(*)``.
        dim: the dim to sort along.
        descending: largest first.
        stable: accepted for PyTorch compatibility; the order is always stable.
    Returns:
        int64 indices of ``input``'s shape.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"argsort: input must be a Tensor, got {type(input).__name__}")
    d = normalize_dim(dim, input.ndim, "argsort")
    if input.ndim == 0:
        return input.new_zeros((), dtype=dtypes.int64)
    return Tensor._make(stable_order(input._array, d, descending))


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """The ``k`` largest (or smallest) values along ``dim``, and their indices.

    Ties go to the lower index (PyTorch leaves the choice unspecified).

    Args:
        input: a tensor of any shape ``(*)``.
        k: how many, in ``[0, input.size(dim)]``.
        dim: the dim to select along.
        largest: the largest (True) or the smallest (False).
        sorted: accepted for PyTorch compatibility; the result is always in sorted order.
    Returns:
        ``(values, indices)``, a named tuple of tensors with ``k`` along ``dim``.
    """
    return _sorted(input, dim, largest, k, "topk")
