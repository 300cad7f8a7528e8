"""Gather and scatter along one dim: gather, scatter, scatter_add, index_add.

``gather`` reads ``input`` at ``index`` along ``dim``; ``scatter`` and ``scatter_add`` write
(or add) ``src`` there; ``index_add`` adds whole slices of ``source`` at a 1-D ``index``.
As in PyTorch, ``index`` may be smaller than ``input`` (and ``src``) in every dim but ``dim``:
position ``(i, j, k)`` of ``index`` addresses ``input[index[i, j, k], j, k]`` for ``dim=0``.
"""

from __future__ import annotations

from ..autograd.function import Function
from ..backend import get_array_module, is_array
from ..backend import scatter_add as add_at
from ..tensor import Tensor
from ._util import normalize_dim
from .indexing import check_range, index_tensor


def _positions(index, dim: int) -> tuple:
    """The advanced index that addresses, for each entry of ``index``, its element of the
    input: open grids for the other dims, ``index`` itself for ``dim``."""
    if index.ndim == 0:  # a 0-d input has one element, and its index can only be 0
        return ()
    xp = get_array_module(index)
    ones = (1,) * index.ndim
    return tuple(
        index if axis == dim else xp.arange(size).reshape(ones[:axis] + (size,) + ones[axis + 1:])
        for axis, size in enumerate(index.shape)
    )


def _leading(shape: tuple) -> tuple:
    """The slice of ``src`` that an index of ``shape`` reads: its leading corner."""
    return tuple(slice(0, n) for n in shape)


class Gather(Function):
    @staticmethod
    def forward(ctx, x, dim, index):
        ctx.save_for_backward(index)
        ctx.args = (x.shape, dim)
        return x[_positions(index, dim)]

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        shape, dim = ctx.args
        grad = get_array_module(g).zeros(shape, g.dtype)
        add_at(grad, _positions(index, dim), g)  # repeated indices accumulate
        return grad, None, None


class Scatter(Function):
    """``out = x`` with ``src`` written (or, with ``add``, added) at ``index`` along ``dim``;
    ``src`` is an array or a number."""

    @staticmethod
    def forward(ctx, x, dim, index, src, add):
        ctx.save_for_backward(index)
        ctx.args = (dim, src.shape if is_array(src) else None, add)
        positions = _positions(index, dim)
        values = src[_leading(index.shape)] if is_array(src) else src
        out = x.copy()
        if add:
            add_at(out, positions, values)
        else:
            out[positions] = values  # PyTorch leaves which of repeated indices wins unspecified
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        dim, src_shape, add = ctx.args
        positions = _positions(index, dim)
        gx = gsrc = None
        if ctx.needs_input_grad[0]:
            gx = g
            if not add:
                gx = g.copy()
                gx[positions] = 0  # overwritten entries do not reach the output
        if ctx.needs_input_grad[3]:
            gsrc = get_array_module(g).zeros(src_shape, g.dtype)
            gsrc[_leading(index.shape)] = g[positions]
        return gx, None, None, gsrc, None


class IndexAdd(Function):
    @staticmethod
    def forward(ctx, x, dim, index, source, alpha):
        ctx.save_for_backward(index)
        ctx.args = (dim, alpha)
        out = x.copy()
        add_at(out, (slice(None),) * dim + (index,), source if alpha == 1 else source * alpha)
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        dim, alpha = ctx.args
        gsource = None
        if ctx.needs_input_grad[3]:
            gsource = get_array_module(g).take(g, index, axis=dim)
            if alpha != 1:
                gsource = gsource * alpha
        return g, None, None, gsource, None


# ---- checks ------------------------------------------------------------------------------


def _check_along(op: str, input: Tensor, dim, index, src=None) -> int:
    """The checks gather, scatter and scatter_add share; returns ``dim`` as a non-negative int."""
    index_tensor(index, op)
    d = normalize_dim(dim, input.ndim, op)
    if index.ndim != input.ndim:
        raise RuntimeError(
            f"{op}: index must have as many dims as input, got index shape "
            f"{tuple(index.shape)} and input shape {tuple(input.shape)}"
        )
    too_big = any(i > n for axis, (i, n) in enumerate(zip(index.shape, input.shape)) if axis != d)
    if src is not None:
        if src.ndim != index.ndim:
            raise RuntimeError(
                f"{op}: src must have as many dims as index, got src shape {tuple(src.shape)} "
                f"and index shape {tuple(index.shape)}"
            )
        too_big = too_big or any(i > n for i, n in zip(index.shape, src.shape))
    if too_big:
        src_text = f" and no larger than src {list(src.shape)}" if src is not None else ""
        raise RuntimeError(
            f"{op}: expected index {list(index.shape)} to be no larger than input "
            f"{list(input.shape)} apart from dimension {d}{src_text}"
        )
    check_range(index, input.shape[d] if input.ndim else 1, d, op)
    return d


def _same_dtype(input: Tensor, src: Tensor, op: str, argument: str = "src") -> None:
    if not isinstance(src, Tensor):
        raise TypeError(f"{op}: {argument} must be a Tensor, got {type(src).__name__}")
    if src.dtype != input.dtype:
        raise RuntimeError(
            f"{op}: expected {argument} to have input's dtype {input.dtype}, got {src.dtype}"
        )


# ---- public functions --------------------------------------------------------------------


def gather(input: Tensor, dim: int, index: Tensor, *, sparse_grad: bool = False) -> Tensor:
    """``out[i][j] = input[i][index[i][j]]`` for ``dim=1`` (and likewise for other dims).

    Args:
        input: ``(*)``.
        dim: the dim to index along.
        index: int64 (or int32) tensor with ``input``'s number of dims, no larger than
            ``input`` in the other dims; entries in ``[0, input.size(dim))``.
        sparse_grad: accepted for PyTorch compatibility; the gradient is always dense.
    Returns:
        ``index``-shaped values.
    """
    d = _check_along("gather", input, dim, index)
    return Gather.apply(input, d, index._array)


def scatter(input: Tensor, dim: int, index: Tensor, src=None, *, value=None,
            reduce: str | None = None) -> Tensor:
    """A copy of ``input`` with ``src[i][j]`` written at ``[i][index[i][j]]`` for ``dim=1``.

    Where ``index`` repeats a position, which value lands there is unspecified (as in
    PyTorch); the gradient of ``src`` is ``grad.gather(dim, index)`` for every entry.

    Args:
        input: ``(*)``.
        dim: the dim to index along.
        index: int64 (or int32) tensor, no larger than ``input`` apart from ``dim`` and no
            larger than ``src``.
        src: a tensor of ``input``'s dtype (only its leading ``index.shape`` corner is read),
            or a number.
        value: a number to write, instead of ``src``.
        reduce: None, or "add" (as ``scatter_add``).
    Returns:
        same shape as ``input``.
    """
    if (src is None) == (value is None):
        raise TypeError("scatter: give exactly one of 'src' (a tensor or number) and 'value'")
    if reduce not in (None, "add"):
        raise NotImplementedError(
            f"scatter: reduce={reduce!r} is not supported; seqlib has reduce=None and 'add' "
            "(or use scatter_add)"
        )
    src = value if src is None else src
    if isinstance(src, Tensor):
        _same_dtype(input, src, "scatter")
        d = _check_along("scatter", input, dim, index, src)
    else:
        d = _check_along("scatter", input, dim, index)
        src = input._array.dtype.type(src)
    return Scatter.apply(input, d, index._array, src, reduce == "add")


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """A copy of ``input`` with ``src[i][j]`` added at ``[i][index[i][j]]`` for ``dim=1``;
    repeated positions accumulate.

    Args:
        input: ``(*)``.
        dim: the dim to index along.
        index: int64 (or int32) tensor, no larger than ``input`` apart from ``dim`` and no
            larger than ``src``.
        src: a tensor of ``input``'s dtype; only its leading ``index.shape`` corner is read.
    Returns:
        same shape as ``input``.
    """
    _same_dtype(input, src, "scatter_add")
    d = _check_along("scatter_add", input, dim, index, src)
    return Scatter.apply(input, d, index._array, src, True)


def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha=1) -> Tensor:
    """A copy of ``input`` with ``alpha * source`` added: slice ``i`` of ``source`` along
    ``dim`` goes to slice ``index[i]``; repeated indices accumulate.

    Args:
        input: ``(*)``.
        dim: the dim to index along.
        index: 1-D (or 0-d) int64 or int32 tensor with entries in ``[0, input.size(dim))``.
        source: ``input``'s shape and dtype, except ``len(index)`` along ``dim``.
        alpha: scales ``source``.
    Returns:
        same shape as ``input``.
    """
    index_tensor(index, "index_add")
    _same_dtype(input, source, "index_add", "source")
    if index.ndim > 1:
        raise IndexError(f"index_add: index must be 1-D, got shape {tuple(index.shape)}")
    if input.ndim == 0:  # one element: the 1-D case with size 1, and back
        return index_add(input.reshape(1), dim, index, source.reshape(-1), alpha=alpha).view(())
    d = normalize_dim(dim, input.ndim, "index_add")
    flat = index._array.reshape(-1)
    expected = tuple(len(flat) if axis == d else n for axis, n in enumerate(input.shape))
    if tuple(source.shape) != expected:
        raise RuntimeError(
            f"index_add: source must have input's shape {list(input.shape)} with size "
            f"{len(flat)} (the number of indices) along dim {d}, got {list(source.shape)}"
        )
    check_range(index, input.shape[d], d, "index_add")
    return IndexAdd.apply(input, d, flat, source, alpha)
