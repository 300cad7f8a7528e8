"""Indexing: ``x[index]``, index_select, masked_fill, nonzero (gather and scatter: scatter.py)."""

from __future__ import annotations

import numpy

from .. import dtypes
from ..autograd.function import Function
from ..autograd.views import track
from ..backend import get_array_module, scatter_add
from ..tensor import Tensor
from ._util import normalize_dim

_BASIC = frozenset((int, numpy.int64, numpy.int32, slice, type(None), type(Ellipsis)))


def split_index(index, xp, ndim: int) -> tuple:
    """PyTorch's ``x[index]`` as NumPy's ``x[basic][advanced]``.

    PyTorch applies ints (and 0-d integer tensors) first, as ``select``, and then NumPy's rule
    for index tensors on what remains: index tensors next to each other keep their place, ones
    separated by a slice or None go first. NumPy instead counts an int as one more index array,
    so ``x[0, :, t]`` would put t's dim first where PyTorch keeps it in place. A bool (or 0-d
    bool tensor) adds a dim of size 1 that it indexes with ``[0]`` (True) or ``[]`` (False).

    Args:
        index: what ``__getitem__`` received (tensors, lists, ints, slices, None, Ellipsis,
            bools, or a tuple of those).
        xp: the array module of the indexed tensor.
        ndim: the number of dims of the indexed tensor.
    Returns:
        ``(basic, advanced)``: ``basic`` a tuple of ints, slices, None and Ellipsis (a view);
        ``advanced`` None when the index holds no index arrays, else a tuple of index arrays and
        ``slice(None)`` applied to ``x[basic]``.
    """
    if type(index) is Tensor and index._array.ndim:  # x[indices], x[mask]: NumPy's own rule
        array = index._array
        if (xp is numpy) == (type(array) is numpy.ndarray):
            return (), (array,)
    parts = index if type(index) is tuple else (index,)
    if all(type(p) in _BASIC for p in parts):
        return parts, None
    parts = [_index_part(p, xp) for p in parts]
    consumed = sum(_dims_consumed(p) for p in parts)
    basic, advanced, has_arrays = [], [], False
    for p in parts:
        if p is None or type(p) is slice:
            basic.append(p)
            advanced.append(slice(None))
        elif p is Ellipsis:
            basic.append(p)
            advanced += [slice(None)] * max(ndim - consumed, 0)
        elif type(p) is bool:  # a new dim of size 1, indexed by [0] or []
            basic.append(None)
            advanced.append(xp.zeros(int(p), dtype=numpy.int64))
            has_arrays = True
        elif hasattr(p, "dtype") and p.ndim:  # an index array over one dim, a mask over ndim
            basic += [slice(None)] * (p.ndim if p.dtype.kind == "b" else 1)
            advanced.append(p)
            has_arrays = True
        else:  # ints, and what NumPy will refuse with its own message
            basic.append(p)
    return tuple(basic), (tuple(advanced) if has_arrays else None)


def _index_part(part, xp):
    """One entry of an index as NumPy takes it: tensors and lists as arrays of ``xp``, 0-d
    integer tensors as ints (PyTorch selects with them), 0-d bool tensors as bools."""
    if isinstance(part, Tensor):
        part = part._array
    elif isinstance(part, list):
        part = [p.item() if isinstance(p, Tensor) else p for p in part]
        part = xp.asarray(part)
        if part.size == 0:  # x[[]] selects nothing, as an integer index
            part = part.astype(numpy.int64)
    elif isinstance(part, numpy.bool_):
        return bool(part)
    if hasattr(part, "dtype") and not isinstance(part, numpy.generic):
        if part.ndim == 0 and part.dtype.kind in "iub":
            return bool(part) if part.dtype.kind == "b" else int(part)
        if xp is not numpy and isinstance(part, numpy.ndarray):
            part = xp.asarray(part)
    return part


def _dims_consumed(part) -> int:
    """How many dims of the indexed tensor ``part`` uses up (for Ellipsis' share)."""
    if part is None or part is Ellipsis or type(part) is bool:
        return 0
    if hasattr(part, "dtype") and part.ndim and part.dtype.kind == "b":
        return part.ndim
    return 1


def index_array(array, basic: tuple, advanced):
    """``array[basic][advanced]`` (see ``split_index``); basic indexing alone is a view."""
    out = array[basic] if basic else array
    if advanced is not None:
        return out[advanced]
    if isinstance(out, numpy.generic):  # NumPy copies single elements out: a 0-d view instead
        return array[basic + (Ellipsis,)]
    return out


class GetItem(Function):
    @staticmethod
    def forward(ctx, x, basic, advanced):
        ctx.args = (x.shape, basic, advanced)
        return index_array(x, basic, advanced)

    @staticmethod
    def backward(ctx, g):
        shape, basic, advanced = ctx.args
        grad = get_array_module(g).zeros(shape, g.dtype)
        if advanced is None:
            grad[basic] = g
        else:
            scatter_add(grad[basic] if basic else grad, advanced, g)  # repeats accumulate
        return grad, None, None


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
    """``input[index]`` with PyTorch's semantics; basic indexing returns a view."""
    basic, advanced = split_index(index, get_array_module(input._array), input._array.ndim)
    out = GetItem.apply(input, basic, advanced)
    return out if advanced is not None else track(out, input, ("index", basic))


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
