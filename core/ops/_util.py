"""Helpers shared by the op families: broadcast reduction, dim checks, array coercion."""

from __future__ import annotations

import numpy

from ..backend import get_array_module


def as_array(value, like):
    """NumPy reductions over every axis return scalars; make them 0-d arrays again."""
    if isinstance(value, numpy.ndarray) or hasattr(value, "__cuda_array_interface__"):
        return value
    return get_array_module(like).asarray(value)


def unbroadcast(grad, shape: tuple):
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    reduced = grad.sum(axis=tuple(range(extra))) if extra else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and reduced.shape[i] != 1)
    if stretched:
        reduced = reduced.sum(axis=stretched, keepdims=True)
    return as_array(reduced, grad)


# float dtype -> the integer dtype of its size, to select a float's bits (see select)
_BITS = {numpy.dtype(f): numpy.dtype(i)
         for f, i in ((numpy.float16, numpy.int16), (numpy.float32, numpy.int32),
                      (numpy.float64, numpy.int64))}


def select(mask, g, out=None):
    """``g`` where ``mask`` holds, else 0 (``mask`` broadcasts to ``g``): the gradient of an op
    that passes some elements through and replaces the rest. ``out``: an array like ``g`` to
    write into (then returned), or None for a new one.

    NOTE: a select, not ``g * mask``: an inf or NaN arriving at a replaced element (from
    ``sqrt`` at 0, say) must give 0 there, as in PyTorch, not ``inf * 0 = nan``. The float's
    bits, read as an integer, are multiplied by the 0/1 mask: exact, and as fast as the float
    multiply was; ``where(mask, g, 0)`` branches per element and is 15-20x slower on a random
    mask (NumPy 2.4, 256x1024 float32: 950 us against 60 us).
    """
    bits = _BITS.get(g.dtype)
    if bits is None:
        selected = get_array_module(g).where(mask, g, g.dtype.type(0))
        if out is None:
            return selected
        out[...] = selected
        return out
    if out is None:
        return (g.view(bits) * mask).view(g.dtype)
    get_array_module(g).multiply(g.view(bits), mask, out=out.view(bits))
    return out


def normalize_dim(dim: int, ndim: int, op: str = "") -> int:
    """A dim in ``[-ndim, ndim)`` as a non-negative int, or a PyTorch-style IndexError."""
    size = max(ndim, 1)
    if not isinstance(dim, (int, numpy.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    if not -size <= dim < size:
        raise IndexError(
            f"{op}: Dimension out of range (expected to be in range of "
            f"[{-size}, {size - 1}], but got {dim})"
        )
    return int(dim) % size


def normalize_dims(dim, ndim: int, op: str = "") -> tuple:
    """``dim`` given as None (all), an int, a tuple or a list, as a sorted tuple of ints."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        dims = tuple(normalize_dim(d, ndim, op) for d in dim)
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"{op}: dim {dim} appears multiple times in the list of dims")
        return tuple(sorted(dims))
    return (normalize_dim(dim, ndim, op),)


def parse_size(args: tuple, op: str) -> tuple:
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])`` for shapes."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    sizes = []
    for n in args:
        if isinstance(n, bool) or not isinstance(n, (int, numpy.integer)):
            if hasattr(n, "item") and getattr(n, "ndim", 1) == 0:
                n = n.item()
            else:
                raise TypeError(f"{op}: size must be a sequence of ints, got {args!r}")
        sizes.append(int(n))
    return tuple(sizes)
