"""Comparisons and logic: bool results, never part of the graph."""

from __future__ import annotations

from ..backend import get_array_module
from ..tensor import Tensor
from ._util import as_array


def _raw(value):
    return value._array if isinstance(value, Tensor) else value


def _compare(name):
    def apply(input, other) -> Tensor:
        a, b = _raw(input), _raw(other)
        xp = get_array_module(a, b)
        try:
            return Tensor._make(as_array(getattr(xp, name)(a, b), a))
        except ValueError as error:
            raise RuntimeError(f"{name}: {error} (shapes {_shape(a)} and {_shape(b)})") from None

    apply.__name__ = name
    apply.__doc__ = (
        f"Elementwise ``{name}`` with broadcasting.\n\n"
        "    Args:\n        input: a tensor.\n        other: a tensor or number, broadcast.\n"
        "    Returns:\n        a bool tensor of the broadcast shape.\n"
    )
    return apply


def _shape(x):
    return tuple(getattr(x, "shape", ()))


eq = _compare("equal")
ne = _compare("not_equal")
lt = _compare("less")
le = _compare("less_equal")
gt = _compare("greater")
ge = _compare("greater_equal")


def logical_op(input, other, name: str) -> Tensor:
    """``&``, ``|`` and ``^`` on bool or integer tensors."""
    a, b = _raw(input), _raw(other)
    for x in (a, b):
        if getattr(x, "dtype", None) is not None and x.dtype.kind == "f":
            raise TypeError(f"{name}: only bool and integer tensors are supported, got {x.dtype}")
    return Tensor._make(as_array(getattr(get_array_module(a, b), name)(a, b), a))


def invert(input: Tensor) -> Tensor:
    """``~x``: logical not for bool tensors, bitwise not for integers."""
    if input.dtype.kind == "f":
        raise TypeError(f"~: only bool and integer tensors are supported, got {input.dtype}")
    return Tensor._make(as_array(~input._array, input._array))


def logical_not(input: Tensor) -> Tensor:
    """Elementwise logical not.

    Args:
        input: a tensor of any shape ``(*)``.
    Returns:
        a bool tensor, same shape.
    """
    return Tensor._make(as_array(get_array_module(input._array).logical_not(input._array),
                                 input._array))


def logical_and(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise logical and.

    Args:
        input, other: tensors (broadcast).
    Returns:
        a bool tensor.
    """
    a, b = _raw(input), _raw(other)
    return Tensor._make(as_array(get_array_module(a, b).logical_and(a, b), a))


def logical_or(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise logical or.

    Args:
        input, other: tensors (broadcast).
    Returns:
        a bool tensor.
    """
    a, b = _raw(input), _raw(other)
    return Tensor._make(as_array(get_array_module(a, b).logical_or(a, b), a))


def isnan(input: Tensor) -> Tensor:
    """Where the input is NaN.

    Args:
        input: a tensor of any shape ``(*)``.
    Returns:
        a bool tensor, same shape.
    """
    return Tensor._make(as_array(get_array_module(input._array).isnan(input._array),
                                 input._array))


def isinf(input: Tensor) -> Tensor:
    """Where the input is +-inf.

    Args:
        input: a tensor of any shape ``(*)``.
    Returns:
        a bool tensor, same shape.
    """
    return Tensor._make(as_array(get_array_module(input._array).isinf(input._array),
                                 input._array))


def isfinite(input: Tensor) -> Tensor:
    """Where the input is finite.

    Args:
        input: a tensor of any shape ``(*)``.
    Returns:
        a bool tensor, same shape.
    """
    return Tensor._make(as_array(get_array_module(input._array).isfinite(input._array),
                                 input._array))


def equal(input: Tensor, other: Tensor) -> bool:
    """True if both tensors have the same shape and elements.

    Args:
        input, other: tensors.
    Returns:
        a Python bool.
    """
    a, b = _raw(input), _raw(other)
    return a.shape == b.shape and bool(get_array_module(a, b).array_equal(a, b))


def allclose(input: Tensor, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    """True if ``|input - other| <= atol + rtol * |other|`` everywhere.

    Args:
        input, other: tensors (broadcast).
        rtol, atol: tolerances.
        equal_nan: NaNs compare equal.
    Returns:
        a Python bool.
    """
    a, b = _raw(input), _raw(other)
    return bool(get_array_module(a, b).allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def isclose(input: Tensor, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> Tensor:
    """Elementwise ``|input - other| <= atol + rtol * |other|``.

    Args:
        input, other: tensors (broadcast).
        rtol, atol: tolerances.
        equal_nan: NaNs compare equal.
    Returns:
        a bool tensor of the broadcast shape.
    """
    a, b = _raw(input), _raw(other)
    xp = get_array_module(a, b)
    return Tensor._make(as_array(xp.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan), a))
