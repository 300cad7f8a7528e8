"""Embedding lookup (gradient by scatter-add, none for padding_idx) and one_hot."""

from __future__ import annotations

import numpy

from .. import dtypes
from ..autograd.function import Function
from ..backend import get_array_module, scatter_add
from ..tensor import Tensor


class Embedding(Function):
    @staticmethod
    def forward(ctx, weight, indices, padding_idx):
        ctx.save_for_backward(indices)
        ctx.args = (weight.shape, padding_idx)
        return weight[indices]

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        shape, padding_idx = ctx.args
        xp = get_array_module(g)
        grad = xp.zeros(shape, g.dtype)
        # (indices.size, dim), not (-1, dim): NumPy cannot infer -1 next to a 0
        rows = g.reshape(indices.size, shape[1])
        if xp is numpy:
            add_rows_by_index(grad, indices.reshape(-1), rows)
        else:
            scatter_add(grad, indices.reshape(-1), rows)
        if padding_idx is not None:
            grad[padding_idx] = 0
        return grad, None, None


def add_rows_by_index(target, index, rows) -> None:
    """``target[index[k]] += rows[k]`` for every k, repeated indices accumulated (NumPy).

    NOTE: ``numpy.add.at`` does this one row at a time; sorting the indices (a stable sort of
    the N indices, whatever the table's size) and summing each run of equal ones with
    ``add.reduceat`` is 2-3x faster for a (4096, 256) gradient into 256 rows and no slower into
    32,000. The rows of one index are added in another order than ``add.at``'s, so sums of
    several rows may differ in the last bits.

    Args:
        target: ``(V, D)``, updated in place.
        index: ``(N,)`` integers in ``[0, V)``.
        rows: ``(N, D)``.
    """
    if index.size == 0:
        return
    order = numpy.argsort(index, kind="stable")
    ordered = index[order]
    starts = numpy.flatnonzero(numpy.concatenate(([True], ordered[1:] != ordered[:-1])))
    target[ordered[starts]] += numpy.add.reduceat(rows[order], starts, axis=0)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` picked by the integer ``input``.

    Args:
        input: integer indices of any shape ``(*)``.
        weight: ``(num_embeddings, embedding_dim)``.
        padding_idx: a row that receives no gradient (negative values count from the end).
    Returns:
        ``(*, embedding_dim)``.
    """
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        kind = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"embedding: input must be an integer tensor of indices, got {kind}")
    if weight.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-D, got shape {tuple(weight.shape)}")
    rows = weight.shape[0]
    if input.numel():
        low, high = int(input._array.min()), int(input._array.max())
        if low < 0 or high >= rows:
            bad = low if low < 0 else high
            raise IndexError(
                f"embedding: index {bad} is out of range for an embedding with {rows} rows"
            )
    if padding_idx is not None:
        if not -rows <= padding_idx < rows:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings")
        padding_idx %= rows
    return Embedding.apply(weight, input._array, padding_idx)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """``(*, num_classes)`` int64 with a 1 at each index (``num_classes=-1``: max + 1).

    Args:
        tensor: integer class indices ``(*)``.
        num_classes: the number of classes, -1 for ``max + 1``.
    Returns:
        ``(*, num_classes)`` int64.
    """
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer (index) tensor, got {tensor.dtype}")
    array = tensor._array
    if array.size and int(array.min()) < 0:
        raise RuntimeError("one_hot: Class values must be non-negative.")
    if num_classes == -1:
        num_classes = int(array.max()) + 1 if array.size else 0
    if array.size and int(array.max()) >= num_classes:
        raise RuntimeError(
            f"one_hot: Class values must be smaller than num_classes ({num_classes}), "
            f"got {int(array.max())}"
        )
    xp = get_array_module(array)
    return Tensor._make((array[..., None] == xp.arange(num_classes)).astype(dtypes.int64))
