"""Reductions over dims: sum, mean, prod, max/min (+indices), var/std, logsumexp, cumsum,
cumprod, norm."""

from __future__ import annotations

from collections import namedtuple

from .. import dtypes
from ..autograd.function import Function
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import as_array, normalize_dim, normalize_dims, select

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _expand(g, shape, dims, keepdim):
    """Broadcast a reduced gradient back to the input's shape."""
    xp = get_array_module(g)
    if not keepdim:
        g = xp.expand_dims(g, dims) if dims else g
    return xp.broadcast_to(g, shape)


class Sum(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, dims, keepdim, dtype):
        ctx.args = (x.shape, dims, keepdim)
        return as_array(x.sum(axis=dims, keepdims=keepdim, dtype=dtype), x)

    @staticmethod
    def backward(ctx, g):
        shape, dims, keepdim = ctx.args
        return _expand(g, shape, dims, keepdim), None, None, None


class Mean(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.args = (x.shape, dims, keepdim)
        count = 1
        for d in dims:
            count *= x.shape[d]
        ctx.count = count
        # sum/count: NumPy's mean() is Python-level and costs ~10 us even on tiny arrays;
        # half precision accumulates in float32 as NumPy's mean does
        accumulate = "float32" if x.dtype.itemsize < 4 else None
        total = x.sum(axis=dims, keepdims=keepdim, dtype=accumulate)
        with _ignore_zero_division():
            return as_array((total / count).astype(x.dtype, copy=False), x)

    @staticmethod
    def backward(ctx, g):
        shape, dims, keepdim = ctx.args
        g = g / ctx.count if ctx.count else g  # count 0: the input is empty, so is its gradient
        return _expand(g, shape, dims, keepdim), None, None


class Prod(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        out = as_array(x.prod(axis=dims, keepdims=keepdim), x)
        ctx.save_for_backward(x)
        ctx.args = (dims, keepdim)
        return out

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        dims, keepdim = ctx.args
        xp = get_array_module(x)
        # NOTE: the product of all *other* entries via exclusive prefix/suffix products, which
        # stays exact where x has zeros (dividing the product by x would not).
        targets = tuple(range(x.ndim - len(dims), x.ndim))
        moved = xp.moveaxis(x, dims, targets)
        count = 1  # not -1: NumPy cannot infer it next to a size 0
        for d in dims:
            count *= x.shape[d]
        flat = moved.reshape(moved.shape[: x.ndim - len(dims)] + (count,))
        ones = xp.ones_like(flat[..., :1])
        left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], -1), -1)
        right = xp.flip(xp.cumprod(xp.concatenate([ones, xp.flip(flat, -1)[..., :-1]], -1), -1), -1)
        others = xp.moveaxis((left * right).reshape(moved.shape), targets, dims)
        return _expand(g, x.shape, dims, keepdim) * others, None, None


class AMax(Function):
    """max/min over dims with the gradient split evenly among ties (``amax``/``amin``); with
    ``nan_ties`` a NaN result counts the NaNs as its ties (PyTorch's ``max()``/``min()``,
    where amax's NaN gradient is NaN)."""

    @staticmethod
    def forward(ctx, x, dims, keepdim, largest, nan_ties):
        out = as_array((x.max if largest else x.min)(axis=dims, keepdims=True), x)
        ctx.save_for_backward(x, out)
        ctx.args = (dims, keepdim, nan_ties)
        return out if keepdim else as_array(out.reshape(_drop(out.shape, dims)), x)

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        dims, keepdim, nan_ties = ctx.args
        hits = x == out
        if nan_ties:
            xp = get_array_module(x)
            hits |= xp.isnan(x) & xp.isnan(out)
        count = hits.sum(axis=dims, keepdims=True)
        g = g if keepdim else g.reshape(out.shape)
        with _ignore_zero_division():  # amax of a NaN hits nothing: 0 / 0, nan as PyTorch's
            if nan_ties:  # max()/min() fill the hits: a nan arriving reaches only them
                return select(hits, g / count), None, None, None, None
            return g * hits / count, None, None, None, None


def _drop(shape, dims):
    return tuple(n for i, n in enumerate(shape) if i not in dims)


def _kept(shape, dims):
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


class MaxDim(Function):
    """max/min along one dim returning (values, indices); the gradient goes to the index."""

    @staticmethod
    def forward(ctx, x, dim, keepdim, largest):
        xp = get_array_module(x)
        indices = (xp.argmax if largest else xp.argmin)(x, axis=dim, keepdims=True)
        values = xp.take_along_axis(x, indices, axis=dim)
        ctx.save_for_backward(indices)
        ctx.args = (x.shape, dim)
        if not keepdim:
            values, indices = values.squeeze(dim), indices.squeeze(dim)
        indices = indices.astype(xp.int64, copy=False)
        ctx.mark_non_differentiable(indices)
        return values, indices

    @staticmethod
    def backward(ctx, g, g_indices):
        (indices,) = ctx.saved_tensors
        shape, dim = ctx.args
        xp = get_array_module(g)
        grad = xp.zeros(shape, g.dtype)
        if g.ndim < len(shape):
            g = xp.expand_dims(g, dim)
        xp.put_along_axis(grad, indices, g, axis=dim)
        return grad, None, None, None


class Var(Function):
    """Variance over dims, or with ``root`` the standard deviation (one Function, so that a
    constant row, where std is 0, gets the gradient 0 as in PyTorch, not inf * 0 = nan)."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, dims, correction, keepdim, root, full):
        xp = get_array_module(x)
        count = 1
        for d in dims:
            count *= x.shape[d]
        # NOTE: shifted by each group's first element, a constant group is exactly 0 (as
        # PyTorch's Welford pass gives), not mean's rounding error, whose std would be ~1e-17
        # and whose gradient would be O(1) noise. The sums divide by count: no warning for
        # an empty group.
        first = x[tuple(slice(0, 1) if d in dims else slice(None) for d in range(x.ndim))]
        shifted = x - first
        with _ignore_zero_division():
            centered = as_array(shifted - shifted.sum(axis=dims, keepdims=True) / count, x)
            divisor = count - correction if count > correction else 0
            out = as_array((centered * centered).sum(axis=dims, keepdims=keepdim) / divisor, x)
        out = as_array(xp.sqrt(out), x) if root else out
        ctx.save_for_backward(centered, out if root else None)
        ctx.args = (dims, keepdim, count - correction, full)
        return out

    @staticmethod
    def backward(ctx, g):
        centered, std = ctx.saved_tensors
        dims, keepdim, dof, full = ctx.args
        xp = get_array_module(g)
        if std is not None:  # d sqrt(v)/dv = 1 / (2 sqrt(v)), taken as 0 where std is 0
            with _ignore_zero_division():
                g = select(std != 0, g / (2 * std))
        g = _expand(g, centered.shape, dims, keepdim)
        if dof > 0:
            return g * centered * (2 / dof), None, None, None, None, None
        # no degrees of freedom: PyTorch gives nan where x is its mean and inf elsewhere over
        # the whole tensor, and divides by count - correction (0 or negative) along dims
        with _ignore_zero_division():
            if full:
                grad = g * xp.where(centered == 0, xp.nan, xp.inf).astype(g.dtype)
            else:
                grad = g * centered * (g.dtype.type(2) / g.dtype.type(dof))
        return grad, None, None, None, None, None


def _ignore_zero_division():
    import numpy

    return numpy.errstate(divide="ignore", invalid="ignore")


class LogSumExp(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        xp = get_array_module(x)
        if x.size:
            peak = x.max(axis=dims, keepdims=True)
            peak = xp.where(xp.isfinite(peak), peak, 0)
        else:  # NumPy's max of an empty dim raises; the sum of no exp() is 0, its log -inf
            peak = xp.zeros(_kept(x.shape, dims), x.dtype)
        with _ignore_zero_division():  # all -inf gives log(0) = -inf, as PyTorch
            out = xp.log(xp.exp(x - peak).sum(axis=dims, keepdims=True)) + peak
        ctx.save_for_backward(x, out)
        ctx.args = (dims, keepdim)
        return out if keepdim else as_array(out.reshape(_drop(out.shape, dims)), x)

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        dims, keepdim = ctx.args
        g = g if keepdim else g.reshape(out.shape)
        return g * get_array_module(x).exp(x - out), None, None


class Cumsum(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        return get_array_module(x).cumsum(x, axis=dim)

    @staticmethod
    def backward(ctx, g):
        xp = get_array_module(g)
        return xp.flip(xp.cumsum(xp.flip(g, ctx.dim), axis=ctx.dim), ctx.dim), None


class Cumprod(Function):
    @staticmethod
    def forward(ctx, x, dim):
        out = get_array_module(x).cumprod(x, axis=dim)
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        dim = ctx.dim
        xp = get_array_module(g)

        def suffix_sum(a):  # sum over i >= k, for each k
            return xp.flip(xp.cumsum(xp.flip(a, dim), axis=dim), dim)

        # NOTE: d out[i] / d x[k] = prod_{j <= i, j != k} x[j] for i >= k. Before the first
        # zero of a line that is out[i] / x[k]; at the first zero it is the running product
        # with that zero replaced by one; after it, the zero is among the factors.
        zeros = xp.cumsum(x == 0, axis=dim)
        before = zeros == 0
        first_zero = (zeros == 1) & (x == 0)
        grad = xp.where(before, suffix_sum(g * out) / xp.where(before, x, 1), 0)
        if first_zero.any():
            skipped = xp.cumprod(xp.where(first_zero, 1, x), axis=dim)
            grad = xp.where(first_zero, suffix_sum(g * skipped), grad)
        return grad.astype(x.dtype, copy=False), None


class Norm(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, p, dims, keepdim):
        xp = get_array_module(x)
        a = xp.abs(x)
        if p == float("inf"):
            out = a.max(axis=dims, keepdims=True)
        elif p == 2:
            out = xp.sqrt((x * x).sum(axis=dims, keepdims=True))
        else:
            out = (a**p).sum(axis=dims, keepdims=True) ** (1.0 / p)
        ctx.save_for_backward(x, out)
        ctx.args = (p, dims, keepdim)
        return out if keepdim else as_array(out.reshape(_drop(out.shape, dims)), x)

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        p, dims, keepdim = ctx.args
        xp = get_array_module(x)
        g = g if keepdim else g.reshape(out.shape)
        safe = xp.where(out == 0, 1, out)  # the subgradient 0 at the origin, as PyTorch
        if p == float("inf"):
            hits = xp.abs(x) == out
            return g * xp.sign(x) * hits / hits.sum(axis=dims, keepdims=True), None, None, None
        if p == 2:
            return g * x / safe * (out != 0), None, None, None
        scale = xp.abs(x) ** (p - 1) * xp.sign(x) / safe ** (p - 1)
        return select(out != 0, g * scale), None, None, None


# ---- public functions --------------------------------------------------------------------


def _reduced_dims(dim, input: Tensor, op: str) -> tuple:
    """``dim`` as a sorted tuple of dims to reduce. A 0-d tensor accepts dim 0 or -1, as in
    PyTorch, and has no axis to reduce: the result is the value itself."""
    ndim = input._array.ndim
    dims = normalize_dims(dim, ndim, op)
    return dims if ndim else ()


def _check_nonempty(input: Tensor, dims: tuple, op: str) -> None:
    """max/min/argmax/amax of no elements is undefined: PyTorch's errors."""
    if input._array.size:
        return
    for d in dims:
        if input.shape[d] == 0:
            raise IndexError(f"{op}(): Expected reduction dim {d} to have non-zero size.")


def _float_input(input, op):
    if input._array.dtype.kind != "f":
        raise RuntimeError(
            f"{op}(): could not infer output dtype. Input dtype must be a floating point dtype. "
            f"Got: {input.dtype}"
        )


def sum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:  # noqa: A001
    """Sum over ``dim`` (None: all dims). Integer and bool inputs sum in int64.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: an int, a tuple/list of ints, or None for all dims.
        keepdim: keep reduced dims as size 1.
        dtype: accumulate and return in this dtype.
    Returns:
        ``input`` without (or with size-1) reduced dims; int64 for integer inputs.
    """
    dims = _reduced_dims(dim, input, "sum")
    if dtype is None and input._array.dtype.kind in "biu":
        dtype = dtypes.int64
    return Sum.apply(input, dims, keepdim, dtypes.as_dtype(dtype) if dtype is not None else None)


def mean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Mean over ``dim`` (None: all dims); needs a floating input, as PyTorch.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: an int, a tuple/list of ints, or None for all dims.
        keepdim: keep reduced dims as size 1.
        dtype: cast the input to this dtype first.
    Returns:
        ``input`` without (or with size-1) reduced dims.
    """
    if dtype is not None:
        input = input.to(dtype)
    _float_input(input, "mean")
    return Mean.apply(input, _reduced_dims(dim, input, "mean"), keepdim)


def prod(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Product over ``dim`` (None: all dims); the gradient is exact where inputs are zero.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: an int, a tuple/list of ints, or None for all dims.
        keepdim: keep reduced dims as size 1.
    Returns:
        ``input`` without (or with size-1) reduced dims.
    """
    return Prod.apply(input, _reduced_dims(dim, input, "prod"), keepdim)


def _extreme(input, dim, keepdim, largest, op):
    if dim is None:
        _check_all_nonempty(input, op, RuntimeError)
        return AMax.apply(input, tuple(range(input.ndim)), False, largest, True)
    if isinstance(dim, Tensor):  # max(a, b): elementwise, as torch.max(input, other)
        from .arithmetic import maximum, minimum

        return (maximum if largest else minimum)(input, dim)
    d = normalize_dim(dim, input.ndim, op)
    if input.ndim == 0:  # the value itself, at index 0 (keepdim has no dim to keep)
        input, d, keepdim = input.reshape(1), 0, False
    _check_nonempty(input, (d,), op)
    values, indices = MaxDim.apply(input, d, keepdim, largest)
    return ValuesIndices(values, indices)


def _check_all_nonempty(input: Tensor, op: str, error: type) -> None:
    """A reduction over all of no elements that has no identity: PyTorch's error and type."""
    if input._array.size == 0:
        message = f"{op}(): Expected reduction dim to be specified for input.numel() == 0."
        if error is RuntimeError:
            message += " Specify the reduction dim with the 'dim' argument."
        raise error(message)


def max(input: Tensor, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    """Largest element; with ``dim`` a ``(values, indices)`` pair; with a tensor, elementwise.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: None (all elements), an int (values and indices along it), or a tensor
            (elementwise maximum).
        keepdim: keep reduced dims as size 1.
    Returns:
        a 0-d tensor, a ``(values, indices)`` named tuple, or the elementwise maximum.
    """
    return _extreme(input, dim, keepdim, True, "max")


def min(input: Tensor, dim=None, keepdim: bool = False):  # noqa: A001 - PyTorch's name
    """Smallest element; with ``dim`` a ``(values, indices)`` pair; with a tensor, elementwise.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: None (all elements), an int (values and indices along it), or a tensor
            (elementwise minimum).
        keepdim: keep reduced dims as size 1.
    Returns:
        a 0-d tensor, a ``(values, indices)`` named tuple, or the elementwise minimum.
    """
    return _extreme(input, dim, keepdim, False, "min")


def amax(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Largest value over ``dim`` (all dims if empty); ties share the gradient evenly.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: an int or tuple; () for all dims.
        keepdim: keep reduced dims as size 1.
    Returns:
        ``input`` without (or with size-1) reduced dims.
    """
    if dim == () or dim is None:
        _check_all_nonempty(input, "amax", RuntimeError)
    dims = _reduced_dims(None if dim == () else dim, input, "amax")
    _check_nonempty(input, dims, "amax")
    return AMax.apply(input, dims, keepdim, True, False)


def amin(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Smallest value over ``dim`` (all dims if empty); ties share the gradient evenly.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: an int or tuple; () for all dims.
        keepdim: keep reduced dims as size 1.
    Returns:
        ``input`` without (or with size-1) reduced dims.
    """
    if dim == () or dim is None:
        _check_all_nonempty(input, "amin", RuntimeError)
    dims = _reduced_dims(None if dim == () else dim, input, "amin")
    _check_nonempty(input, dims, "amin")
    return AMax.apply(input, dims, keepdim, False, False)


def _arg(input, dim, keepdim, largest):
    array = input._array
    xp = get_array_module(array)
    function = xp.argmax if largest else xp.argmin
    op = "argmax" if largest else "argmin"
    if dim is None:  # an index into the flattened input; keepdim keeps every dim as size 1
        _check_all_nonempty(input, op, IndexError)
        shape = (1,) * array.ndim if keepdim else ()
        index = function(array.reshape(-1))
    else:
        d = normalize_dim(dim, input.ndim, op)
        _check_nonempty(input, (d,) if array.ndim else (), op)
        index = function(array, axis=d, keepdims=keepdim) if array.ndim else 0
        shape = None
    # NOTE: NumPy returns a scalar, not an array, when the result has no dims (1-D input)
    index = xp.asarray(index, dtype=xp.int64)
    return Tensor._make(index if shape is None else index.reshape(shape))


def argmax(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the largest element (first on ties), over all dims or along ``dim``.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: None (index into the flattened input) or an int.
        keepdim: keep reduced dims as size 1.
    Returns:
        int64 indices.
    """
    return _arg(input, dim, keepdim, True)


def argmin(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the smallest element (first on ties), over all dims or along ``dim``.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: None (index into the flattened input) or an int.
        keepdim: keep reduced dims as size 1.
    Returns:
        int64 indices.
    """
    return _arg(input, dim, keepdim, False)


def var(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """Variance over ``dim`` with Bessel's ``correction`` (default 1; ``unbiased=False`` is 0).

    Args:
        input: a floating tensor ``(*)``.
        dim: an int, a tuple/list of ints, or None for all dims.
        unbiased: False is ``correction=0``.
        keepdim: keep reduced dims as size 1.
        correction: subtracted from the count in the divisor (default 1).
    Returns:
        ``input`` without (or with size-1) reduced dims.
    """
    _float_input(input, "var")
    correction = _correction(unbiased, correction)
    return Var.apply(input, _reduced_dims(dim, input, "var"), correction, keepdim, False,
                     dim is None or input.ndim == 0)


def std(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """Standard deviation: ``sqrt(var(...))`` with the same arguments; its gradient is 0 where
    it is 0 (a constant row), as PyTorch's.

    Args:
        input: a floating tensor ``(*)``.
        dim: an int, a tuple/list of ints, or None for all dims.
        unbiased: False is ``correction=0``.
        keepdim: keep reduced dims as size 1.
        correction: subtracted from the count in the divisor (default 1).
    Returns:
        ``input`` without (or with size-1) reduced dims.
    """
    _float_input(input, "std")
    correction = _correction(unbiased, correction)
    return Var.apply(input, _reduced_dims(dim, input, "std"), correction, keepdim, True,
                     dim is None or input.ndim == 0)


def _correction(unbiased, correction):
    if unbiased is not None and correction is not None:
        raise ValueError("var/std: give either 'unbiased' or 'correction', not both")
    if correction is not None:
        return correction
    return 0 if unbiased is False else 1


def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` over ``dim``, computed without overflow.

    Args:
        input: a floating tensor ``(*)``.
        dim: an int or tuple of ints.
        keepdim: keep reduced dims as size 1.
    Returns:
        ``input`` without (or with size-1) reduced dims.
    """
    _float_input(input, "logsumexp")
    return LogSumExp.apply(input, _reduced_dims(dim, input, "logsumexp"), keepdim)


def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running sum along ``dim``.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: the dim to accumulate along.
        dtype: compute in this dtype.
    Returns:
        same shape (int64 for integer inputs).
    """
    return _running(Cumsum, input, dim, dtype, "cumsum")


def cumprod(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running product along ``dim``; its gradient is exact where the input has zeros.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: the dim to accumulate along.
        dtype: compute in this dtype.
    Returns:
        same shape (int64 for integer and bool inputs).
    """
    return _running(Cumprod, input, dim, dtype, "cumprod")


def _running(function, input: Tensor, dim: int, dtype, op: str) -> Tensor:
    """cumsum/cumprod: in ``dtype`` if given, else int64 for integer and bool inputs; a 0-d
    input stays 0-d (NumPy would return shape (1,))."""
    if dtype is not None:
        input = input.to(dtype)
    elif input._array.dtype.kind in "biu":
        input = input.to(dtypes.int64)
    d = normalize_dim(dim, input.ndim, op)
    return input * 1 if input.ndim == 0 else function.apply(input, d)


def norm(input: Tensor, p=2, dim=None, keepdim: bool = False) -> Tensor:
    """Vector p-norm over ``dim`` (None: all elements); ``p`` is a positive number or inf.

    Args:
        input: a floating tensor ``(*)``.
        p: a positive number, inf, or "fro" (= 2).
        dim: an int, a tuple/list of ints, or None for all dims.
        keepdim: keep reduced dims as size 1.
    Returns:
        ``input`` without (or with size-1) reduced dims.
    """
    if p == "fro":
        p = 2
    if not isinstance(p, (int, float)) or p <= 0:
        raise ValueError(f"norm: p must be a positive number or inf, got {p!r}")
    _float_input(input, "norm")
    dims = _reduced_dims(dim, input, "norm")
    if p == float("inf") and input._array.size == 0:  # the max of nothing: no identity
        empty = [d for d in dims if input.shape[d] == 0]
        if dim is None or empty:
            where = "an empty tensor" if dim is None else f"the empty dimension {empty[0]}"
            raise RuntimeError(f"norm: cannot compute the inf norm on {where}, because the "
                               "operation does not have an identity")
    return Norm.apply(input, p, dims, keepdim)


def all(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """True where every element (over ``dim``) is nonzero.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: an int, a tuple/list of ints, or None for all dims.
        keepdim: keep reduced dims as size 1.
    Returns:
        a bool tensor.
    """
    dims = _reduced_dims(dim, input, "all")
    return Tensor._make(as_array(input._array.all(axis=dims, keepdims=keepdim), input._array))


def any(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """True where some element (over ``dim``) is nonzero.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: an int, a tuple/list of ints, or None for all dims.
        keepdim: keep reduced dims as size 1.
    Returns:
        a bool tensor.
    """
    dims = _reduced_dims(dim, input, "any")
    return Tensor._make(as_array(input._array.any(axis=dims, keepdims=keepdim), input._array))
