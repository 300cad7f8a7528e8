"""Unary math, clamp, where, tril/triu, and the rounding ops (zero gradient)."""

from __future__ import annotations

from .. import dtypes
from ..autograd.function import Function
from ..backend import get_array_module
from ..special import erf as _erf
from ..tensor import Tensor
from ._util import as_array, select, unbroadcast


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = get_array_module(x).exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x


class Log1p(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log1p(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (1 + x)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        out = get_array_module(x).sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g / (2 * out)


class Rsqrt(Function):
    @staticmethod
    def forward(ctx, x):
        out = 1 / get_array_module(x).sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * -0.5 * out * out * out


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).abs(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * get_array_module(x).sign(x)


class Sin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * get_array_module(x).cos(x)


class Cos(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).cos(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -g * get_array_module(x).sin(x)


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        out = get_array_module(x).tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        # NOTE: 0.5*tanh(0.5x)+0.5 never overflows, unlike 1/(1+exp(-x))
        out = get_array_module(x).tanh(x * 0.5) * 0.5 + 0.5
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out * (1 - out)


class Erf(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _erf(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = get_array_module(x)
        return g * (xp.exp(-x * x) * (2 / 3.141592653589793**0.5))


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, low, high):
        ctx.save_for_backward(x)
        ctx.bounds = (low, high)
        return get_array_module(x).clip(x, low, high)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        low, high = ctx.bounds
        inside = True
        if low is not None:
            inside = x >= low
        if high is not None:
            inside = inside & (x <= high)
        return select(inside, g), None, None


class Where(Function):
    @staticmethod
    def forward(ctx, condition, a, b):
        ctx.save_for_backward(condition)
        ctx.shapes = (getattr(a, "shape", ()), getattr(b, "shape", ()))
        return get_array_module(condition).where(condition, a, b)

    @staticmethod
    def backward(ctx, g):
        (condition,) = ctx.saved_tensors
        ga = unbroadcast(select(condition, g), ctx.shapes[0]) if ctx.needs_input_grad[1] else None
        gb = unbroadcast(select(~condition, g), ctx.shapes[1]) if ctx.needs_input_grad[2] else None
        return None, ga, gb


class Triangle(Function):
    @staticmethod
    def forward(ctx, x, diagonal, lower):
        ctx.args = (diagonal, lower)
        xp = get_array_module(x)
        return xp.tril(x, diagonal) if lower else xp.triu(x, diagonal)

    @staticmethod
    def backward(ctx, g):
        diagonal, lower = ctx.args
        xp = get_array_module(g)
        return (xp.tril(g, diagonal) if lower else xp.triu(g, diagonal)), None, None


class Rounding(Function):
    """floor/ceil/round/trunc/sign: piecewise constant, so the gradient is zero (PyTorch)."""

    @staticmethod
    def forward(ctx, x, name, decimals):
        xp = get_array_module(x)
        if name == "round":
            return xp.round(x, decimals)
        return getattr(xp, name)(x)

    @staticmethod
    def backward(ctx, g):
        return get_array_module(g).zeros_like(g), None, None


def _unary(function, op):
    def apply(input: Tensor) -> Tensor:
        if input._array.dtype.kind != "f":
            input = input.to(dtypes.get_default_dtype())
        return function.apply(input)

    apply.__name__ = op
    apply.__doc__ = (
        f"Elementwise ``{op}``; integer inputs are computed in the default float dtype.\n\n"
        "    Args:\n        input: a tensor of any shape ``(*)``.\n"
        "    Returns:\n        a floating tensor of the same shape.\n"
    )
    return apply


exp = _unary(Exp, "exp")
log = _unary(Log, "log")
log1p = _unary(Log1p, "log1p")
sqrt = _unary(Sqrt, "sqrt")
rsqrt = _unary(Rsqrt, "rsqrt")
sin = _unary(Sin, "sin")
cos = _unary(Cos, "cos")
tanh = _unary(Tanh, "tanh")
sigmoid = _unary(Sigmoid, "sigmoid")
erf = _unary(Erf, "erf")


def abs(input: Tensor) -> Tensor:  # noqa: A001 - PyTorch's name
    """Elementwise absolute value (gradient ``sign(x)``, 0 at 0).

    Args:
        input: a tensor of any shape ``(*)``.
    Returns:
        same shape.
    """
    return Abs.apply(input)


def clamp(input: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch's names
    """Limit values to ``[min, max]``; the gradient passes where ``min <= x <= max``.

    Args:
        input: a tensor of any shape ``(*)``.
        min: lower bound or None.
        max: upper bound or None.
    Returns:
        same shape.
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    return Clamp.apply(input, min, max)


def where(condition: Tensor, input=None, other=None):
    """Pick ``input`` where ``condition`` is true, else ``other`` (broadcasting all three);
    ``where(condition)`` alone is ``nonzero(condition, as_tuple=True)``.

    Args:
        condition: bool tensor (any dtype in the one-argument form).
        input: values where true (tensor or number).
        other: values where false (tensor or number); all three broadcast.
    Returns:
        the broadcast shape; in the one-argument form a tuple of int64 index tensors.
    """
    from .arithmetic import _wrap, promote

    if input is None and other is None:
        from .indexing import nonzero

        return nonzero(condition, as_tuple=True)
    if input is None or other is None:
        raise TypeError("where: give both 'input' and 'other', or neither (where(condition))")

    condition = _wrap(condition)
    if condition._array.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor, got {condition.dtype}")
    input, other = promote(_wrap(input), _wrap(other))
    return Where.apply(condition, input, other)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """Keep the lower triangle (``j <= i + diagonal``) of the last two dims.

    Args:
        input: ``(*, R, C)``.
        diagonal: 0 is the main diagonal, >0 above it, <0 below.
    Returns:
        ``(*, R, C)``.
    """
    _check_matrix(input, "tril")
    return Triangle.apply(input, diagonal, True)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """Keep the upper triangle (``j >= i + diagonal``) of the last two dims.

    Args:
        input: ``(*, R, C)``.
        diagonal: 0 is the main diagonal, >0 above it, <0 below.
    Returns:
        ``(*, R, C)``.
    """
    _check_matrix(input, "triu")
    return Triangle.apply(input, diagonal, False)


def _check_matrix(input, op):
    if input.ndim < 2:
        raise RuntimeError(f"{op}: input tensor must have at least 2 dimensions, got {input.ndim}")


def _rounding(name):
    def apply(input: Tensor, decimals: int = 0) -> Tensor:
        if input._array.dtype.kind != "f":  # integers are already whole numbers
            array = input._array
            xp = get_array_module(array)
            return Tensor._make(as_array(xp.sign(array), array) if name == "sign"
                                else array.copy())
        return Rounding.apply(input, name, decimals)

    apply.__name__ = name
    apply.__doc__ = (
        f"Elementwise ``{name}`` (zero gradient).\n\n"
        "    Args:\n        input: a tensor of any shape ``(*)``.\n"
        "        decimals: for ``round``, the number of decimals to keep.\n"
        "    Returns:\n        a tensor of the same shape and dtype.\n"
    )
    return apply


floor = _rounding("floor")
ceil = _rounding("ceil")
round = _rounding("round")  # noqa: A001 - PyTorch's name
trunc = _rounding("trunc")
sign = _rounding("sign")
