"""``layer_norm(x + y)`` (a residual connection and the LayerNorm after it, as in a post-LN
transformer) as one Function over row blocks on the worker threads.

Apart, the add is one pass through memory and LayerNorm's forward and backward some five
each, all on one thread. Here each block of rows is added, normalised, scaled and shifted
(and in backward: the input's gradient and the weight's and bias's partial sums) while it is in
cache, by the same array functions as the LayerNorm Function (``layer_norm_rows``,
``layer_norm_rows_backward``). The sum ``x + y`` is never kept: it is normalised in place into
the one ``(R, D)`` array backward needs. A dropout of ``y`` (a sub-layer's output, before the
residual add) folds in as ``x + y * keep * scale`` with the mask ``F.dropout`` would draw.
"""

from __future__ import annotations

import numpy

from seqlib.core.autograd.function import Function
from seqlib.core.functional.dropout import dropout_keep
from seqlib.core.functional.normalization import layer_norm_rows, layer_norm_rows_backward
from seqlib.core.random import Generator
from seqlib.core.tensor import Tensor
from seqlib.row_blocks import run_row_blocks


class ResidualLayerNorm(Function):
    """``layer_norm(x + y * keep * scale)`` over the last dim (without a mask:
    ``layer_norm(x + y)``)."""

    half_in_float32 = True  # as LayerNorm: sums of squares overflow float16

    @staticmethod
    def forward(ctx, x, y, weight, bias, eps, keep=None, scale=1.0):
        D = x.shape[-1]
        R = x.size // D if D else 0
        xr, yr = x.reshape(R, D), y.reshape(R, D)
        out = numpy.empty((R, D), x.dtype)
        recording = any(ctx.needs_input_grad)  # none under no_grad
        normalized = numpy.empty_like(out) if recording else None
        rstd = numpy.empty((R, 1), out.dtype)
        ctx.keep = keep = None if keep is None else keep.reshape(R, D)
        ctx.scale = scale = x.dtype.type(scale)

        def block(start, stop):
            rows = (normalized[start:stop] if recording
                    else numpy.empty((stop - start, D), out.dtype))
            if keep is None:
                numpy.add(xr[start:stop], yr[start:stop], out=rows)
            else:  # x + y * (keep * scale), as x + dropout(y)
                numpy.multiply(yr[start:stop], keep[start:stop], out=rows)
                rows *= scale
                rows += xr[start:stop]
            rstd[start:stop] = layer_norm_rows(rows, weight, bias, eps, in_place=True,
                                               out=out[start:stop])[2]

        run_row_blocks(block, R, D * out.itemsize)
        ctx.save_for_backward(normalized, rstd, weight)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        normalized, rstd, weight = ctx.saved_tensors
        keep, scale = ctx.keep, ctx.scale
        rows = g.reshape(normalized.shape)
        need = ctx.needs_input_grad
        grad = numpy.empty_like(normalized) if need[0] or need[1] else None
        grad_y = numpy.empty_like(normalized) if need[1] and keep is not None else grad

        def block(start, stop):
            part, n = rows[start:stop], normalized[start:stop]
            if grad is not None:
                gx = layer_norm_rows_backward(part, n, rstd[start:stop], weight,
                                              out=grad[start:stop])
                if grad_y is not grad:
                    gy = numpy.multiply(gx, keep[start:stop], out=grad_y[start:stop])
                    gy *= scale
            return (numpy.einsum("rd,rd->d", part, n) if need[2] else None,
                    part.sum(axis=0) if need[3] else None)

        R, D = normalized.shape
        sums = run_row_blocks(block, R, D * normalized.itemsize)
        gw = _total([s[0] for s in sums], normalized) if need[2] else None
        gb = _total([s[1] for s in sums], normalized) if need[3] else None
        gx = grad.reshape(g.shape) if need[0] else None
        gy = grad_y.reshape(g.shape) if need[1] else None
        return (gx, gy, gw, gb) + (None,) * (len(need) - 4)


def _total(partials: list, like):
    """The sum of per-block ``(D,)`` partial sums (zeros when there were no rows)."""
    return numpy.sum(partials, axis=0) if partials else numpy.zeros(like.shape[1], like.dtype)


def residual_layer_norm(x: Tensor, y: Tensor, weight: Tensor | None, bias: Tensor | None,
                        eps: float = 1e-5, dropout: float = 0.0,
                        generator: Generator | None = None) -> Tensor:
    """``F.layer_norm(x + F.dropout(y, dropout), (D,), weight, bias, eps)`` of CPU float
    tensors of one shape, computed in row blocks; the dropout mask is drawn as ``F.dropout``
    draws it.

    Args:
        x, y: ``(*, D)``, the same shape and float dtype, NumPy-backed.
        weight, bias: ``(D,)`` or None.
        eps: added to the variance.
        dropout: the probability of zeroing an element of ``y``, in ``[0, 1)`` (0: none; pass
            0 outside training).
        generator: the dropout's ``Generator`` (default: the global one).
    Returns:
        ``(*, D)``.
    """
    if tuple(x.shape) != tuple(y.shape) or x.dtype != y.dtype or x.dtype.kind != "f":
        raise ValueError(f"residual_layer_norm: x and y must be float tensors of one shape and "
                         f"dtype, got {tuple(x.shape)} {x.dtype} and {tuple(y.shape)} {y.dtype}")
    if x.is_cuda or y.is_cuda:
        raise TypeError("residual_layer_norm: CPU tensors only")
    if x.ndim == 0:
        raise ValueError("residual_layer_norm: x and y must have at least one dim")
    D = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (D,):
            raise ValueError(f"residual_layer_norm: {name} must have shape ({D},), got "
                             f"{tuple(p.shape)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"residual_layer_norm: dropout must be in [0, 1), got {dropout}")
    if dropout == 0.0:
        return ResidualLayerNorm.apply(x, y, weight, bias, eps)
    keep = dropout_keep(tuple(y.shape), dropout, generator)
    return ResidualLayerNorm.apply(x, y, weight, bias, eps, keep, 1.0 / (1.0 - dropout))
