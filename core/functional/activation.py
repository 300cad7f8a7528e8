"""Activations and softmax as single fused Functions with hand-written backward."""

from __future__ import annotations

import math

import numpy

from .. import dtypes
from ..autograd import views
from ..autograd.function import Function
from ..backend import get_array_module
from ..ops._util import normalize_dim, select
from ..special import erf
from ..tensor import Tensor


class ReLU(Function):
    @staticmethod
    def forward(ctx, x):
        out = relu_array(x)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(relu_passes(out))
        return out

    @staticmethod
    def backward(ctx, g):
        (passes,) = ctx.saved_tensors
        return select(passes, g)  # not g * passes: an inf at x <= 0 must give 0, not nan


class LeakyReLU(Function):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return get_array_module(x).where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return get_array_module(g).where(x > 0, g, g * ctx.slope), None


class GELU(Function):
    half_in_float32 = True  # erf's polynomial is fitted for float32 arithmetic

    @staticmethod
    def forward(ctx, x, approximate):
        xp = get_array_module(x)
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        if approximate == "tanh":
            inner = (x + 0.044715 * x * x * x) * math.sqrt(2 / math.pi)
            return 0.5 * x * (1 + xp.tanh(inner))
        cdf = normal_cdf(x)
        ctx.cdf = cdf  # backward reuses it instead of evaluating erf again
        return x * cdf

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = get_array_module(x)
        if ctx.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            t = xp.tanh((x + 0.044715 * x * x * x) * k)
            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
            return g * slope, None
        slope = gelu_slope(x, ctx.cdf)
        slope *= g
        return slope, None


# ---- array functions: the maths of ReLU and exact GELU, also run block by block by the
# ---- fused bias + activation of seqlib's feed-forward blocks


def relu_array(x, out=None):
    """``max(x, 0)`` of a NumPy/CuPy array (``out`` may be ``x`` itself)."""
    return get_array_module(x).maximum(x, 0, out=out)


def relu_passes(y, out=None):
    """Where ReLU's gradient passes, from its output ``y``: ``y`` is never negative, so
    ``!= 0`` is ``> 0`` plus NaN (PyTorch zeroes only where y <= 0); a bool mask is a quarter
    of the output's size. The gradient is ``select(passes, g)``; ``out``: a bool array like
    ``y`` to write into, or None."""
    return get_array_module(y).not_equal(y, 0, out=out)


def normal_cdf(x, out=None):
    """The standard normal CDF of a NumPy/CuPy float array.

    .. math::
        \\Phi(x) = \\frac{1}{2} \\left(1 + \\operatorname{erf}(x / \\sqrt{2})\\right)

    Args:
        x: any shape.
        out: an array like ``x`` to write into (it may be ``x`` itself), or None.
    Returns:
        ``Phi(x)``: ``out`` when given, else a new array.
    """
    xp = get_array_module(x)
    out = xp.multiply(x, 1 / math.sqrt(2), out=xp.empty_like(x) if out is None else out)
    erf(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def gelu_slope(x, cdf, out=None):
    """The derivative of exact GELU, from ``x`` and ``cdf = normal_cdf(x)``.

    .. math::
        \\frac{d}{dx} x \\Phi(x) = \\Phi(x) + x \\frac{e^{-x^2/2}}{\\sqrt{2 \\pi}}

    Args:
        x, cdf: arrays of one shape.
        out: an array like ``x`` to write into (not ``x`` nor ``cdf``), or None.
    Returns:
        the slope: ``out`` when given, else a new array.
    """
    xp = get_array_module(x)
    # then in place on this one array (an array even for 0-d x, where NumPy returns scalars)
    out = xp.multiply(x, x, out=xp.empty_like(x) if out is None else out)
    out *= -0.5
    xp.exp(out, out=out)
    out *= x
    out *= 1 / math.sqrt(2 * math.pi)
    out += cdf
    return out


class SiLU(Function):
    @staticmethod
    def forward(ctx, x):
        s = get_array_module(x).tanh(x * 0.5) * 0.5 + 0.5
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        return g * s * (1 + x * (1 - s))


class ELU(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        xp = get_array_module(x)
        ctx.save_for_backward(x)  # not the output, which may then be changed in place (PyTorch)
        ctx.alpha = alpha
        return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = get_array_module(g)
        negative = xp.exp(xp.minimum(x, 0))  # d/dx alpha * (exp(x) - 1), for x <= 0
        negative *= ctx.alpha
        negative *= g
        return xp.where(x > 0, g, negative), None


class Softmax(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, dim):
        xp = get_array_module(x)
        with numpy.errstate(invalid="ignore"):  # a row of -inf gives NaN silently, as PyTorch
            e = xp.exp(x - _row_max(x, dim))
            out = e / e.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        gy = g * out
        return gy - out * gy.sum(axis=ctx.dim, keepdims=True), None


class LogSoftmax(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, dim):
        out = log_softmax_array(x, dim)
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        xp = get_array_module(g)
        return g - xp.exp(out) * g.sum(axis=ctx.dim, keepdims=True), None


def log_softmax_array(x, dim: int):
    """``x - logsumexp(x)`` along ``dim`` on a raw array, stable for logits of any size."""
    xp = get_array_module(x)
    shifted = x - _row_max(x, dim)
    with numpy.errstate(divide="ignore"):  # log(0) of an empty row: -inf, as it should be
        return shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))


def _row_max(x, dim: int):
    """The maximum along ``dim`` (kept), or zeros when some dim is empty (NumPy's max of an
    empty axis raises; the softmax of an empty tensor is empty, as in PyTorch)."""
    if x.size == 0:
        shape = list(x.shape)
        shape[dim] = 1
        return get_array_module(x).zeros(shape, x.dtype)
    return x.max(axis=dim, keepdims=True)


def _float(input: Tensor, op: str) -> Tensor:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(input).__name__}")
    return input if input._array.dtype.kind == "f" else input.to(dtypes.get_default_dtype())


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``max(x, 0)``.

    Args:
        input: a tensor of any shape ``(*)``.
        inplace: overwrite ``input``.
    Returns:
        same shape.
    """
    return _inplace_or(ReLU.apply(_float(input, "relu")), input, inplace)


def _inplace_or(result: Tensor, input: Tensor, inplace: bool) -> Tensor:
    if not inplace:
        return result
    from ..ops.inplace import _bump, _check_cast, _check_rebase, _recording, _write

    op = "inplace activation"
    views.check_writable(input, op)
    if _recording(input):
        _check_rebase(input, op)
        return _write(input, result, op)
    _check_cast(result._array.dtype, input._array.dtype, op)
    input._array[...] = result._array  # no history to change (no_grad, or none needed)
    return _bump(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``x`` for ``x > 0``, else ``negative_slope * x``.

    Args:
        input: a tensor of any shape ``(*)``.
        negative_slope: the slope for negative inputs.
        inplace: overwrite ``input``.
    Returns:
        same shape.
    """
    return _inplace_or(LeakyReLU.apply(_float(input, "leaky_relu"), negative_slope), input,
                       inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """``x * Phi(x)`` exactly (erf), or with ``approximate="tanh"`` the tanh formula.

    Args:
        input: a tensor of any shape ``(*)``.
        approximate: "none" or "tanh".
    Returns:
        same shape.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(_float(input, "gelu"), approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """``x * sigmoid(x)`` (swish).

    Args:
        input: a tensor of any shape ``(*)``.
        inplace: overwrite ``input``.
    Returns:
        same shape.
    """
    return _inplace_or(SiLU.apply(_float(input, "silu")), input, inplace)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Args:
        input: a tensor of any shape ``(*)``.
        alpha: the saturation value for negative inputs.
        inplace: overwrite ``input``.
    Returns:
        same shape.
    """
    return _inplace_or(ELU.apply(_float(input, "elu"), alpha), input, inplace)


def sigmoid(input: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))``, computed without overflow.

    Args:
        input: a tensor of any shape ``(*)``.
    Returns:
        same shape.
    """
    from ..ops.pointwise import sigmoid as _sigmoid

    return _sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent.

    Args:
        input: a tensor of any shape ``(*)``.
    Returns:
        same shape.
    """
    from ..ops.pointwise import tanh as _tanh

    return _tanh(input)


def _softmax_input(input, dim, dtype, op):
    input = _float(input, op)
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        raise TypeError(f"{op}: the 'dim' argument is required")
    return input, normalize_dim(dim, input.ndim, op)


def softmax(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``, stable for large logits.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: the dim that sums to one.
        dtype: compute in this dtype.
    Returns:
        same shape.
    """
    input, d = _softmax_input(input, dim, dtype, "softmax")
    return Softmax.apply(input, d)


def log_softmax(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    """``x - logsumexp(x)`` along ``dim``, stable for large logits.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: the dim to normalise over.
        dtype: compute in this dtype.
    Returns:
        same shape.
    """
    input, d = _softmax_input(input, dim, dtype, "log_softmax")
    return LogSoftmax.apply(input, d)
