"""Data types: NumPy dtypes under PyTorch's names, and the default float type."""

from __future__ import annotations

import numpy

float16 = half = numpy.dtype("float16")
float32 = float = numpy.dtype("float32")  # noqa: A001 - PyTorch's name
float64 = double = numpy.dtype("float64")
uint8 = numpy.dtype("uint8")
int8 = numpy.dtype("int8")
int16 = short = numpy.dtype("int16")
int32 = int = numpy.dtype("int32")  # noqa: A001 - PyTorch's name
int64 = long = numpy.dtype("int64")
bool = numpy.dtype("bool")  # noqa: A001 - PyTorch's name

_SUPPORTED = {float16, float32, float64, uint8, int8, int16, int32, int64, bool}
_default_dtype = float32


def as_dtype(dtype, argument: str = "dtype") -> numpy.dtype:
    """Normalise a dtype given as a dtype, NumPy type or name; reject unsupported ones."""
    try:
        result = numpy.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"{argument}: not a data type: {dtype!r}") from error
    if result not in _SUPPORTED:
        names = ", ".join(sorted(d.name for d in _SUPPORTED))
        raise TypeError(f"{argument}: unsupported dtype {result.name}; expected one of {names}")
    return result


def is_floating(dtype) -> bool:
    """True for float16/32/64."""
    return dtype.kind == "f"


def get_default_dtype() -> numpy.dtype:
    """The dtype of floating tensors created from Python numbers (float32 unless changed).

    Returns:
        float32 unless changed.
    """
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the dtype of floating tensors created from Python numbers (float32 or float64).

    Args:
        dtype: float32 or float64.
    Returns:
        None.
    """
    global _default_dtype
    dtype = as_dtype(dtype)
    if not is_floating(dtype):
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dtype.name}")
    _default_dtype = dtype


def result_type(a: numpy.dtype, b: numpy.dtype) -> numpy.dtype:
    """PyTorch's promotion of two tensor dtypes: a float beats any int; otherwise NumPy's rule."""
    if a == b:
        return a
    if a.kind == "f" and b.kind != "f":
        return a
    if b.kind == "f" and a.kind != "f":
        return b
    return numpy.promote_types(a, b)
