"""Layer normalisation as one Function with the closed-form backward."""

from __future__ import annotations

import functools
import math

import numpy

from ..autograd.function import Function
from ..backend import get_array_module
from ..tensor import Tensor


def layer_norm_rows(rows, weight, bias, eps: float, in_place: bool = False, out=None):
    """LayerNorm of each row of a 2-D NumPy/CuPy array: ``(rows - mean) / sqrt(var + eps)``,
    scaled by ``weight`` and shifted by ``bias``.

    The LayerNorm Function, the fused residual + LayerNorm and the fused recurrent step all
    compute LayerNorm with this.

    Args:
        rows: ``(R, D)``.
        weight, bias: ``(D,)`` arrays or None.
        eps: added to the variance.
        in_place: compute in ``rows`` itself (an array of the caller's own, as in a fused
            inference step); without ``out``, ``normalized`` is then ``out``, no longer what
            backward needs.
        out: an ``(R, D)`` array for the scaled and shifted rows (with ``in_place``, rows
            then keeps the normalised rows that backward needs), or None.
    Returns:
        ``(out, normalized, rstd)``: ``out`` ``(R, D)`` (a new array unless ``in_place`` or
        ``out``; ``normalized`` itself when there is neither weight nor bias nor ``out``), the
        normalised rows and the ``(R, 1)`` reciprocal standard deviations (a float for one row
        of a NumPy array).
    """
    R, D = rows.shape
    size = max(D, 1)
    if R == 1 and type(rows) is numpy.ndarray:  # one row (a generation step): Python floats
        mean = float(numpy.vdot(rows, _average(numpy, D, rows.dtype)))
        if in_place:
            rows -= mean
            normalized = rows
        else:
            normalized = rows - mean
        rstd = 1.0 / math.sqrt(float(numpy.vdot(normalized, normalized)) / size + eps)
        normalized *= rstd
    else:
        xp = get_array_module(rows)
        means = rows @ _average(xp, D, rows.dtype)
        normalized = xp.subtract(rows, means, out=rows if in_place else None)
        variance = xp.einsum("rd,rd->r", normalized, normalized)[:, None]
        variance *= 1.0 / size
        variance += eps
        rstd = xp.sqrt(variance, out=variance)
        xp.divide(1, rstd, out=rstd)
        normalized *= rstd
    if out is not None:
        if weight is not None:
            get_array_module(rows).multiply(normalized, weight, out=out)
        else:
            out[...] = normalized
        if bias is not None:
            out += bias
    elif in_place:
        out = normalized
        if weight is not None:
            out *= weight
        if bias is not None:
            out += bias
    elif weight is not None:
        out = normalized * weight
        if bias is not None:
            out += bias
    else:
        out = normalized if bias is None else normalized + bias
    return out, normalized, rstd


def layer_norm_rows_backward(g, normalized, rstd, weight, out=None):
    """The gradient of ``layer_norm_rows``'s input from that of its output.

    .. math::
        dx = r \\left(g_n - \\overline{g_n} - \\hat{x}\\, \\overline{g_n \\hat{x}}\\right),
        \\quad g_n = g \\odot w

    Args:
        g: ``(R, D)``, the gradient of the output.
        normalized, rstd: what ``layer_norm_rows`` returned, ``(R, D)`` and ``(R, 1)``.
        weight: ``(D,)`` or None.
        out: an ``(R, D)`` array to write into (it may be ``g`` itself), or None.
    Returns:
        ``(R, D)``: ``out`` when given, else a new array.
    """
    xp = get_array_module(g)
    D = normalized.shape[1]
    if weight is not None:
        gx = xp.multiply(g, weight, out=out)
    elif out is None:
        gx = g.copy()
    else:
        gx = out
        gx[...] = g
    projection = xp.einsum("rd,rd->r", gx, normalized)[:, None]
    projection *= 1.0 / max(D, 1)
    gx -= gx @ _average(xp, D, gx.dtype)
    gx -= normalized * projection
    gx *= rstd
    return gx


def _average(xp, D: int, dtype):
    """The ``(D, 1)`` column of ``1/D`` that takes row means as a GEMV (3-4x faster than
    ``mean``); NumPy's are made once per size and dtype (read-only)."""
    if xp is numpy:
        return _numpy_average(D, numpy.dtype(dtype))
    return xp.full((D, 1), 1.0 / max(D, 1), dtype)


@functools.lru_cache(maxsize=64)
def _numpy_average(D: int, dtype):
    column = numpy.full((D, 1), 1.0 / max(D, 1), dtype)
    column.flags.writeable = False
    return column


class LayerNorm(Function):
    """Over rows of ``D = prod(normalized_shape)`` values. Row sums are GEMVs with a ``1/D``
    column and row dot products one-pass einsums (3-4x faster than NumPy's mean and
    multiply-then-sum); the arithmetic is in place where the array is our own."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, weight, bias, dims, eps):
        D = math.prod(x.shape[d] for d in dims)
        out, normalized, rstd = layer_norm_rows(
            x.reshape(x.size // D if D else 0, D), None if weight is None else weight.reshape(D),
            None if bias is None else bias.reshape(D), eps)
        ctx.save_for_backward(normalized, rstd, weight)
        ctx.shape = tuple(x.shape[d] for d in dims)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        normalized, rstd, weight = ctx.saved_tensors
        xp = get_array_module(g)
        D = normalized.shape[1]
        rows = g.reshape(normalized.shape)
        need = ctx.needs_input_grad
        gw = xp.einsum("rd,rd->d", rows, normalized).reshape(ctx.shape) if need[1] else None
        gb = rows.sum(axis=0).reshape(ctx.shape) if need[2] else None
        gx = None
        if need[0]:
            gx = layer_norm_rows_backward(rows, normalized, rstd,
                                          None if weight is None else weight.reshape(D))
            gx = gx.reshape(g.shape)
        return gx, gw, gb, None, None


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims, then scale and shift.

    Args:
        input: ``(*, *normalized_shape)``.
        normalized_shape: int or tuple, the trailing shape to normalise over.
        weight, bias: ``normalized_shape``-shaped affine parameters, or None.
        eps: added to the variance (biased, as PyTorch) before the square root.
    Returns:
        a tensor shaped like ``input``.
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(shape):]) != shape or len(shape) > input.ndim:
        raise RuntimeError(
            f"layer_norm: input of shape {tuple(input.shape)} does not end with "
            f"normalized_shape {shape}"
        )
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != shape:
            raise RuntimeError(
                f"layer_norm: {name} must have shape {shape}, got {tuple(p.shape)}"
            )
    dims = tuple(range(input.ndim - len(shape), input.ndim))
    return LayerNorm.apply(input, weight, bias, dims, eps)
