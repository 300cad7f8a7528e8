"""Indexing: ``x[index]``, index_select, masked_fill, nonzero (gather and scatter: scatter.py)."""

from __future__ import annotations

import numpy

from .. import dtypes
from ..autograd.function import Function
from ..backend import get_array_module, scatter_add
from ..tensor import Tensor
from ._util import normalize_dim

_BASIC = (int, numpy.integer, slice, type(None), type(Ellipsis))


def convert_index(index, xp):
    """Replace tensors in an index by arrays of the target module; lists stay NumPy-style."""
    if isinstance(index, tuple):
        return tuple(convert_index(i, xp) for i in index)
    if isinstance(index, Tensor):
        index = index._array
    if isinstance(index, list) and any(isinstance(i, Tensor) for i in index):
        index = [i.item() if isinstance(i, Tensor) else i for i in index]
    if xp is not numpy and isinstance(index, (numpy.ndarray, list)):
        index = xp.asarray(index)
    if isinstance(index, bool):  # x[True] adds a dim, as NumPy and PyTorch do
        return index
    return index


def is_basic(index) -> bool:
    """True when indexing returns a view (ints, slices, None and Ellipsis only)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, _BASIC) and not isinstance(p, bool) for p in parts)


class GetItem(Function):
    @staticmethod
    def forward(ctx, x, index):
        ctx.args = (x.shape, index)
        return x[index]

    @staticmethod
    def backward(ctx, g):
        shape, index = ctx.args
        xp = get_array_module(g)
        grad = xp.zeros(shape, g.dtype)
        if is_basic(index):
            grad[index] = g
        else:
            scatter_add(grad, index, g)  # repeated indices accumulate
        return grad, None


class IndexSelect(Function):
    @staticmethod
    def forward(ctx, x, dim, index):
        ctx.save_for_backward(index)
        ctx.args = (x.shape, dim)
        return get_array_module(x).take(x, index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        shape, dim = ctx.args
        grad = get_array_module(g).zeros(shape, g.dtype)
        scatter_add(grad, (slice(None),) * dim + (index,), g)
        return grad, None, None


def getitem(input: Tensor, index) -> Tensor:
    """``input[index]`` with NumPy/PyTorch semantics; basic indexing returns a view."""
    xp = get_array_module(input._array)
    index = convert_index(index, xp)
    out = GetItem.apply(input, index)
    if is_basic(index):
        from .shape import _view_of

        return _view_of(out, input)
    return out


def index_tensor(index, op: str, argument: str = "index") -> Tensor:
    """``index`` if it is an int64 or int32 tensor (what PyTorch accepts), else a TypeError."""
    if not isinstance(index, Tensor) or index.dtype not in (dtypes.int64, dtypes.int32):
        kind = index.dtype if isinstance(index, Tensor) else type(index).__name__
        raise TypeError(f"{op}: {argument} must be an integer tensor (int64 or int32), got {kind}")
    return index


def check_range(index: Tensor, size: int, dim: int, op: str) -> None:
    """Every entry of ``index`` must lie in ``[0, size)``; negative indices are refused too."""
    if not index.numel():
        return
    low, high = int(index._array.min()), int(index._array.max())
    if low < 0 or high >= size:
        bad = low if low < 0 else high
        raise IndexError(f"{op}: index {bad} is out of bounds for dimension {dim} with size {size}")


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The entries of ``input`` at the 1-D ``index`` along ``dim``.

    Args:
        input: ``(*)``.
        dim: the dim to index along.
        index: 1-D integer tensor.
    Returns:
        ``input`` with ``dim`` of size ``len(index)``.
    """
    index_tensor(index, "index_select")
    if index.ndim > 1:
        raise IndexError(f"index_select: index must be 1-D, got shape {tuple(index.shape)}")
    d = normalize_dim(dim, input.ndim, "index_select")
    size = input.shape[d]
    if index.numel() and (int(index._array.min()) < -size or int(index._array.max()) >= size):
        raise IndexError(f"index_select: index out of range for dimension {d} of size {size}")
    return IndexSelect.apply(input, d, index._array.reshape(-1))


def repeat_interleave(input: Tensor, repeats=None, dim: int | None = None, *,
                      output_size: int | None = None) -> Tensor:
    """Repeat each entry along ``dim`` (the flattened input if None) ``repeats`` times.

    ``repeat_interleave(repeats)`` alone, on a 1-D integer tensor, repeats ``arange(n)``:
    ``[1, 2, 0] -> [0, 1, 1]``.

    Args:
        input: a tensor of any shape ``(*)``.
        repeats: an int, or an integer tensor with one count per entry along ``dim`` (or one
            count for all).
        dim: the dim to repeat along; None flattens the input first.
        output_size: the total length along ``dim``, if known; checked.
    Returns:
        ``input`` with ``sum(repeats)`` entries along ``dim``.
    """
    # NOTE: the positions are computed with NumPy (CuPy's repeat takes no array of counts)
    # and then moved to the input's device.
    if repeats is None:  # the one-argument form
        counts = _repeat_counts(input, None, "repeat_interleave")
        positions = numpy.repeat(numpy.arange(len(counts), dtype=input.dtype), counts)
        return Tensor._make(get_array_module(input._array).asarray(positions))
    if dim is None or input.ndim == 0:
        input = input.reshape(-1)
    d = normalize_dim(0 if dim is None else dim, input.ndim, "repeat_interleave")
    counts = _repeat_counts(repeats, input.shape[d], "repeat_interleave")
    positions = numpy.repeat(numpy.arange(input.shape[d]), counts)
    if output_size is not None and output_size != len(positions):
        raise RuntimeError(
            f"repeat_interleave: output_size={output_size} but the repeats add up to "
            f"{len(positions)}"
        )
    return IndexSelect.apply(input, d, get_array_module(input._array).asarray(positions))


def _repeat_counts(repeats, size: int | None, op: str):
    """``repeats`` (an int or a 0-d/1-D integer tensor) as one non-negative count per entry,
    a NumPy array."""
    if isinstance(repeats, Tensor):
        if repeats.dtype.kind not in "iu":
            raise TypeError(f"{op}: repeats must be an int or an integer tensor, got "
                            f"{repeats.dtype}")
        if repeats.ndim > 1 or (size is None and repeats.ndim != 1):
            raise RuntimeError(f"{op}: repeats must be a 0-d or 1-D tensor (1-D when it is the "
                               f"only argument), got shape {tuple(repeats.shape)}")
        counts = repeats._array.reshape(-1)
        counts = counts if isinstance(counts, numpy.ndarray) else counts.get()
    elif isinstance(repeats, (int, numpy.integer)) and not isinstance(repeats, bool):
        counts = numpy.array([repeats])
    else:
        raise TypeError(f"{op}: repeats must be an int or an integer tensor, got "
                        f"{type(repeats).__name__}")
    if size is not None and len(counts) == 1:
        counts = counts.repeat(size)
    if size is not None and len(counts) != size:
        raise RuntimeError(f"{op}: repeats must have one count per entry along dim ({size}), "
                           f"got {len(counts)}")
    if len(counts) and int(counts.min()) < 0:
        raise RuntimeError(f"{op}: repeats can not be negative, got {int(counts.min())}")
    return counts


def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:
    """``value`` where ``mask`` is true, else ``input`` (mask broadcasts to the input).

    Args:
        input: ``(*)``.
        mask: bool tensor broadcastable to ``input``.
        value: a number or 0-d tensor.
    Returns:
        same shape as ``input``.
    """
    from .pointwise import where

    if not isinstance(mask, Tensor) or mask.dtype.kind != "b":
        kind = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"masked_fill: mask must be a bool tensor, got {kind}")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(
                "masked_fill only supports a 0-dimensional value tensor, but got tensor with "
                f"{value.ndim} dimension(s)"
            )
        value = value.to(input.dtype)
    elif input.dtype.kind == "f":
        value = float(value)
    out = where(mask, value, input)
    if out.shape != input.shape:
        raise RuntimeError(
            f"masked_fill: mask of shape {tuple(mask.shape)} does not broadcast to the input's "
            f"shape {tuple(input.shape)}"
        )
    return out if out.dtype == input.dtype else out.to(input.dtype)


def nonzero(input: Tensor, *, as_tuple: bool = False):
    """The coordinates of the non-zero (true) elements, in row-major order.

    Args:
        input: a tensor of any shape ``(*)``.
        as_tuple: return one 1-D index tensor per dim (what ``where(condition)`` returns, and
            what indexing takes: ``x[x.nonzero(as_tuple=True)]``), instead of one matrix.
    Returns:
        an int64 ``(n, input.ndim)`` tensor, or a tuple of ``input.ndim`` int64 ``(n,)``
        tensors (one for a 0-d input).
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"nonzero: input must be a Tensor, got {type(input).__name__}")
    array = input._array
    xp = get_array_module(array)
    if not as_tuple:  # a 0-d input has one element and no coordinates: (0 or 1, 0)
        found = xp.argwhere(array.reshape(1))[:, :0] if array.ndim == 0 else xp.argwhere(array)
        return Tensor._make(found.astype(xp.int64, copy=False))
    coordinates = xp.nonzero(array.reshape(1) if array.ndim == 0 else array)
    return tuple(Tensor._make(c.astype(xp.int64, copy=False)) for c in coordinates)
