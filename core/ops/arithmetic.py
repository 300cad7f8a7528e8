"""Broadcasting arithmetic: add, sub, mul, div, pow, neg, maximum, minimum."""

from __future__ import annotations

import numpy

from .. import dtypes
from ..autograd.function import Function
from ..tensor import Tensor
from ._util import select, unbroadcast


def _shape(x):
    return getattr(x, "shape", ())


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        ga = unbroadcast(g, sa) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g, sb) if ctx.needs_input_grad[1] else None
        return ga, gb


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        ga = unbroadcast(g, sa) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g, sb) if ctx.needs_input_grad[1] else None
        return ga, gb


# NOTE: each Function saves only what the gradients asked for read (a's gradient reads b and
# b's reads a), as PyTorch: an input that no saved array depends on may be changed in place.


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        grad_a, grad_b = ctx.needs_input_grad
        if grad_a and grad_b:
            ctx.save_for_backward(a, b)
        elif grad_a:
            ctx.save_for_backward(None, b)
            ctx.shape = _shape(a)  # of the operand not saved
        elif grad_b:
            ctx.save_for_backward(a, None)
            ctx.shape = _shape(b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        grad_a, grad_b = ctx.needs_input_grad
        ga = unbroadcast(g * b, _shape(a) if grad_b else ctx.shape) if grad_a else None
        gb = unbroadcast(g * a, _shape(b) if grad_a else ctx.shape) if grad_b else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        grad_a, grad_b = ctx.needs_input_grad
        if grad_b:
            ctx.save_for_backward(a, b)
        elif grad_a:
            ctx.save_for_backward(None, b)
            ctx.shape = _shape(a)  # of the operand not saved
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        grad_a, grad_b = ctx.needs_input_grad
        ga = unbroadcast(g / b, _shape(a) if grad_b else ctx.shape) if grad_a else None
        # NOTE: (a / b) / b, not a / (b * b): b * b overflows (float16 beyond 256, float32
        # beyond 1.8e19) or underflows where the quotient itself is representable
        gb = unbroadcast(-g * (a / b) / b, _shape(b)) if grad_b else None
        return ga, gb


class RoundedDiv(Function):
    """``div(a, b, rounding_mode=...)`` of floats: piecewise constant, so both gradients are
    zero, as PyTorch defines them (floor of a Div would send 0 * (a / b) / b, which is nan
    where a or b is not finite)."""

    @staticmethod
    def forward(ctx, a, b, mode):
        ctx.shapes = (_shape(a), _shape(b))
        quotient = a / b
        xp = _module(*(t for t in (a, b) if hasattr(t, "shape")))
        return xp.floor(quotient) if mode == "floor" else xp.trunc(quotient)

    @staticmethod
    def backward(ctx, g):
        grad_a, grad_b, _ = ctx.needs_input_grad
        xp = _module(g)
        zeros = [xp.zeros(shape, g.dtype) if needed else None
                 for shape, needed in zip(ctx.shapes, (grad_a, grad_b))]
        return zeros[0], zeros[1], None


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = a**b
        grad_a, grad_b = ctx.needs_input_grad
        if grad_a or grad_b:
            # the output only for the exponent's gradient: (x * 1) ** 2 may change in place
            ctx.save_for_backward(a, b, out if grad_b else None)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:
            # NOTE: b * a**(b-1) rather than out*b/a, which is 0/0 at a == 0; and where b == 0
            # the gradient is 0 (PyTorch), not 0 * 0**-1 = nan at a == 0
            if isinstance(b, (int, float)):
                ga = g * b * a ** (b - 1) if b != 0 else _module(g).zeros_like(g)
            else:
                with numpy.errstate(divide="ignore", invalid="ignore"):
                    ga = select(b != 0, g * b * a ** (b - 1))
            ga = unbroadcast(ga, _shape(a))
        if ctx.needs_input_grad[1]:
            xp = numpy if isinstance(out, (int, float)) else _module(out)
            log_a = xp.log(xp.where(a > 0, a, 1))  # d(a**b)/db = 0 where a == 0 (PyTorch)
            gb = unbroadcast(g * out * log_a, _shape(b))
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Maximum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _module(a, b).maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _select_backward(ctx, g, greater=True)


class Minimum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _module(a, b).minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _select_backward(ctx, g, greater=False)


def _select_backward(ctx, g, greater: bool):
    """Gradient of max/min: to the chosen input, split evenly on ties (as PyTorch).

    Selected, not multiplied by a 0/1 weight, so an inf gradient gives the losing input 0 (not
    nan); a NaN comparison loses neither way, so both inputs get it, as in PyTorch.
    """
    a, b = ctx.saved_tensors
    ties = a == b
    share = g * (1 - g.dtype.type(0.5) * ties) if ties.any() else g
    ga = gb = None
    if ctx.needs_input_grad[0]:
        ga = unbroadcast(select(~((a < b) if greater else (a > b)), share), _shape(a))
    if ctx.needs_input_grad[1]:
        gb = unbroadcast(select(~((a > b) if greater else (a < b)), share), _shape(b))
    return ga, gb


def _module(*arrays):
    from ..backend import get_array_module

    return get_array_module(*arrays)


# ---- dtype promotion (PyTorch's categories, NumPy 2's rules within a category) -----------


def promote(a, b, true_divide: bool = False):
    """Cast operands so mixed float/int tensors give the float tensor's dtype, as PyTorch.

    NumPy alone would turn ``float32 * int64`` into float64 and ``int / int`` into float64;
    PyTorch gives float32 for both. A 0-d tensor does not promote a dimensioned one of the
    same or a lower category (``float32 (3,) + tensor(1.0, float64)`` is float32). Python
    scalars are weak (NEP 50): ``float32 * 2.0`` stays float32, and ``int_tensor * 2.5``
    becomes the default float dtype.
    """
    a_is, b_is = isinstance(a, Tensor), isinstance(b, Tensor)
    if a_is and b_is:
        da, db = a._array.dtype, b._array.dtype
        if da != db:
            target = _tensors_result_type(da, a._array.ndim == 0, db, b._array.ndim == 0)
            a = a if da == target else a.to(target)
            b = b if db == target else b.to(target)
        if true_divide and a._array.dtype.kind != "f":
            a, b = a.to(dtypes.get_default_dtype()), b.to(dtypes.get_default_dtype())
        return a, b
    tensor, scalar = (a, b) if a_is else (b, a)
    if not isinstance(tensor, Tensor):
        return a, b
    if isinstance(scalar, Tensor) or hasattr(scalar, "shape"):
        return a, b
    kind = tensor._array.dtype.kind
    needs_float = isinstance(scalar, float) or (true_divide and kind != "f")
    if needs_float and kind != "f":
        tensor = tensor.to(dtypes.get_default_dtype())
    elif isinstance(scalar, int) and not isinstance(scalar, bool) and kind == "b":
        tensor = tensor.to(dtypes.int64)
    return (tensor, b) if a_is else (a, tensor)


_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}  # bool < integer < floating


def _tensors_result_type(da, a_is_0d: bool, db, b_is_0d: bool):
    """PyTorch's ``result_type`` of two tensors: dimensioned tensors outrank 0-d ones, unless
    the 0-d one is of a higher category (bool < integer < floating)."""
    if a_is_0d != b_is_0d:
        dimensioned, zero_dim = (db, da) if a_is_0d else (da, db)
        if _CATEGORY[zero_dim.kind] <= _CATEGORY[dimensioned.kind]:
            return dimensioned
    return dtypes.result_type(da, db)


def _wrap(value):
    """Turn ndarrays and NumPy scalars into tensors; keep Python numbers and tensors."""
    if isinstance(value, (Tensor, int, float, bool)):
        return value
    from ..creation import as_tensor

    return as_tensor(value)


def _binary(function, a, b, true_divide=False):
    # fast path: two tensors of one float dtype, or a float tensor and a Python number
    if type(a) is Tensor and a._array.dtype.kind == "f":
        if type(b) is Tensor:
            if a._array.dtype == b._array.dtype:
                return function.apply(a, b)
        elif type(b) is float or type(b) is int:
            return function.apply(a, b)
    elif type(b) is Tensor and b._array.dtype.kind == "f" and (type(a) is float or type(a) is int):
        return function.apply(a, b)
    a, b = promote(_wrap(a), _wrap(b), true_divide)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{function.__name__.lower()}: expected at least one tensor argument")
    return function.apply(a, b)


def add(input, other, *, alpha=1) -> Tensor:
    """``input + alpha * other`` with broadcasting.

    Args:
        input: tensor or number.
        other: tensor or number, broadcast against ``input``.
        alpha: multiplier of ``other``.
    Returns:
        the broadcast shape.
    """
    if alpha != 1:
        other = mul(other, alpha) if isinstance(other, Tensor) else other * alpha
    return _binary(Add, input, other)


def sub(input, other, *, alpha=1) -> Tensor:
    """``input - alpha * other`` with broadcasting.

    Args:
        input: tensor or number.
        other: tensor or number, broadcast against ``input``.
        alpha: multiplier of ``other``.
    Returns:
        the broadcast shape.
    """
    if alpha != 1:
        other = mul(other, alpha) if isinstance(other, Tensor) else other * alpha
    return _binary(Sub, input, other)


def mul(input, other) -> Tensor:
    """Elementwise product with broadcasting.

    Args:
        input: tensor or number.
        other: tensor or number, broadcast against ``input``.
    Returns:
        the broadcast shape.
    """
    return _binary(Mul, input, other)


def div(input, other, *, rounding_mode: str | None = None) -> Tensor:
    """True division with broadcasting; ``rounding_mode`` "floor" or "trunc" as PyTorch.

    Args:
        input: dividend (tensor or number).
        other: divisor (tensor or number), broadcast.
        rounding_mode: None (true division), "floor" or "trunc".
    Returns:
        the broadcast shape; float unless both are integers and rounding_mode is set.
    """
    if rounding_mode is None:
        return _binary(Div, input, other, true_divide=True)
    if rounding_mode not in ("floor", "trunc"):
        raise ValueError(
            f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}"
        )
    a, b = promote(_wrap(input), _wrap(other))
    if _integral(a) and _integral(b):
        x = a._array if isinstance(a, Tensor) else a
        y = b._array if isinstance(b, Tensor) else b
        xp = _module(*(t for t in (x, y) if hasattr(t, "shape")))
        if bool(xp.any(xp.asarray(y) == 0)):
            raise IntegerDivisionByZero(
                f"integer division or modulo by zero (//, % or div(rounding_mode="
                f"{rounding_mode!r})), as PyTorch raises")
        if rounding_mode == "floor":
            return Tensor._make(xp.asarray(xp.floor_divide(x, y)))
        return Tensor._make(xp.asarray(xp.trunc(xp.true_divide(x, y)).astype(xp.result_type(x, y))))
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError("div: expected at least one tensor argument")
    return RoundedDiv.apply(a, b, rounding_mode)


class IntegerDivisionByZero(ZeroDivisionError, RuntimeError):
    """Integer ``//`` or ``%`` by zero. PyTorch raises a RuntimeError that says
    ZeroDivisionError; this is both, so either ``except`` catches it."""


def _integral(x) -> bool:
    if isinstance(x, Tensor):
        return x._array.dtype.kind in "iub"
    return isinstance(x, int)


def pow(input, exponent) -> Tensor:  # noqa: A001 - PyTorch's name
    """``input ** exponent`` with broadcasting.

    Args:
        input: base (tensor or number).
        exponent: tensor or number, broadcast.
    Returns:
        the broadcast shape.
    """
    return _binary(Pow, input, exponent)


def neg(input: Tensor) -> Tensor:
    """``-input``.

    Args:
        input: a tensor of any shape ``(*)``.
    Returns:
        same shape.
    """
    return Neg.apply(input)


def maximum(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise maximum; on ties the gradient is split evenly.

    Args:
        input: tensor.
        other: tensor, broadcast against ``input``.
    Returns:
        the broadcast shape.
    """
    return _binary(Maximum, input, other)


def minimum(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise minimum; on ties the gradient is split evenly.

    Args:
        input: tensor.
        other: tensor, broadcast against ``input``.
    Returns:
        the broadcast shape.
    """
    return _binary(Minimum, input, other)
