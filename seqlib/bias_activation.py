"""Bias plus activation (exact GELU or ReLU) as one Function over row blocks on worker threads.

In a feed-forward block ``activation(linear1(x))`` is one GEMM followed by elementwise passes
over the ``(rows, d_ff)`` pre-activation: the bias, the activation, and in backward its
derivative and the bias's gradient, each pass a single-threaded walk through memory. Here the
GEMM runs without its bias (``F.linear(x, weight)``) and ``BiasGELU``/``BiasReLU`` do the rest
block by block (``seqlib.row_blocks``), composing the same array functions as the plain
``GELU``/``ReLU`` Functions (``normal_cdf``, ``gelu_slope``, ``relu_array``, ``relu_passes``,
``select``), so both paths compute the same numbers.

NOTE: forward saves the activation's slope and nothing else (GELU: ``Phi(u) + u phi(u)``,
ReLU: a bool mask), so backward is one multiply per element and the pre-activation is never
kept: storing the slope costs one array, as storing the pre-activation would, and recomputing
erf in backward would cost a second evaluation of its rational function (about 25 passes).

Dropout after the activation (the feed-forward block's first) folds in: given the mask of kept
elements (``dropout_keep``, drawn as ``F.dropout`` draws it) and ``scale = 1 / (1 - p)``, the
output and the saved slope are multiplied by ``keep * scale`` in the same blocks, so the
dropout costs neither passes of its own nor a saved ``(rows, d_ff)`` scale array.
"""

from __future__ import annotations

import numpy

from seqlib.core.autograd.function import Function
from seqlib.core.functional.activation import gelu_slope, normal_cdf, relu_array, relu_passes
from seqlib.core.functional.dropout import dropout_keep
from seqlib.core.ops._util import select
from seqlib.core.random import Generator
from seqlib.core.tensor import Tensor
from seqlib.row_blocks import run_row_blocks


class BiasGELU(Function):
    """``gelu(h + bias)`` (exact, erf), then ``* keep * scale`` when a dropout mask is given,
    saving only the slope for backward."""

    half_in_float32 = True  # as GELU: erf's polynomial is fitted for float32 arithmetic

    @staticmethod
    def forward(ctx, h, bias, keep=None, scale=1.0):
        rows = _rows(h)  # (R, D)
        out = numpy.empty_like(rows)
        slope = numpy.empty_like(rows) if _recording(ctx) else None
        keep = None if keep is None else keep.reshape(rows.shape)
        scale = rows.dtype.type(scale)

        def block(start, stop):
            u = numpy.add(rows[start:stop], bias, out=out[start:stop])
            cdf = normal_cdf(u)
            s = None if slope is None else gelu_slope(u, cdf, out=slope[start:stop])
            u *= cdf
            if keep is not None:
                for array in (u,) if s is None else (u, s):
                    array *= keep[start:stop]
                    array *= scale

        run_row_blocks(block, *_size(rows))
        ctx.save_for_backward(slope)
        return out.reshape(h.shape)

    @staticmethod
    def backward(ctx, g):
        (slope,) = ctx.saved_tensors
        return _input_grads(ctx, g, slope, numpy.multiply)


class BiasReLU(Function):
    """``relu(h + bias)``, then ``* keep * scale`` when a dropout mask is given, saving only
    where the gradient passes (a bool mask)."""

    @staticmethod
    def forward(ctx, h, bias, keep=None, scale=1.0):
        rows = _rows(h)
        out = numpy.empty_like(rows)
        passes = numpy.empty(rows.shape, bool) if _recording(ctx) else None
        keep = None if keep is None else keep.reshape(rows.shape)
        ctx.scale = scale = rows.dtype.type(scale) if keep is not None else None

        def block(start, stop):
            u = numpy.add(rows[start:stop], bias, out=out[start:stop])
            relu_array(u, out=u)
            if passes is not None:
                relu_passes(u, out=passes[start:stop])
                if keep is not None:
                    passes[start:stop] &= keep[start:stop]
            if keep is not None:
                u *= keep[start:stop]
                u *= scale

        run_row_blocks(block, *_size(rows))
        ctx.save_for_backward(passes)
        return out.reshape(h.shape)

    @staticmethod
    def backward(ctx, g):
        (passes,) = ctx.saved_tensors
        scale = ctx.scale

        def combine(g, passes, out):
            out = select(passes, g, out=out)
            if scale is not None:
                out *= scale
            return out

        return _input_grads(ctx, g, passes, combine)


def _input_grads(ctx, g, saved, combine):
    """``(grad of h, grad of bias)`` and None for the dropout mask and scale if given:
    ``combine(g, saved)`` per block, and its column sums per block (while the block is in
    cache), added up."""
    rows = g.reshape(saved.shape)
    grad = numpy.empty(saved.shape, g.dtype)
    need_bias = ctx.needs_input_grad[1]

    def block(start, stop):
        part = combine(rows[start:stop], saved[start:stop], out=grad[start:stop])
        return part.sum(axis=0) if need_bias else None

    sums = run_row_blocks(block, *_size(grad))
    grad_bias = None
    if need_bias:
        grad_bias = numpy.sum(sums, axis=0) if sums else numpy.zeros(saved.shape[1], g.dtype)
    return (grad.reshape(g.shape), grad_bias) + (None,) * (len(ctx.needs_input_grad) - 2)


def _rows(h):
    """``(*, D)`` as ``(R, D)``; the row count is explicit for NumPy's sake (a 0 beside -1)."""
    D = h.shape[-1]
    return h.reshape(h.size // D if D else 0, D)


def _size(rows) -> tuple:
    """``(rows, bytes per row)`` for ``run_row_blocks``."""
    return rows.shape[0], rows.shape[1] * rows.itemsize


def _recording(ctx) -> bool:
    """Whether backward can run: some input needs a gradient (none does under no_grad)."""
    return any(ctx.needs_input_grad)


FUNCTIONS = {"gelu": BiasGELU, "relu": BiasReLU}


def bias_activation(input: Tensor, bias: Tensor, activation: str, dropout: float = 0.0,
                    generator: Generator | None = None) -> Tensor:
    """``F.dropout(activation(input + bias), dropout)`` of a CPU float tensor, computed in row
    blocks; the dropout mask is drawn as ``F.dropout`` draws it (so a seeded run gives the same
    mask either way).

    Args:
        input: ``(*, D)`` float32 or float64 (or float16, computed in float32) NumPy-backed.
        bias: ``(D,)``, of the input's dtype.
        activation: "gelu" (exact, as ``F.gelu``) or "relu".
        dropout: the probability of zeroing an element, in ``[0, 1)`` (0: no dropout; pass 0
            outside training, as ``F.dropout(training=False)`` does nothing).
        generator: the dropout's ``Generator`` (default: the global one).
    Returns:
        ``(*, D)``.
    """
    if activation not in FUNCTIONS:
        raise ValueError(f"bias_activation: activation must be one of {sorted(FUNCTIONS)}, "
                         f"got {activation!r}")
    if input.is_cuda or input.dtype.kind != "f":
        raise TypeError(f"bias_activation: input must be a float tensor on the CPU, got "
                        f"{input.dtype} on {input.device}")
    if tuple(bias.shape) != (input.shape[-1],) or bias.dtype != input.dtype:
        raise ValueError(f"bias_activation: bias must be ({input.shape[-1]},) of {input.dtype}, "
                         f"got {tuple(bias.shape)} of {bias.dtype}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"bias_activation: dropout must be in [0, 1), got {dropout}")
    if dropout == 0.0:
        return FUNCTIONS[activation].apply(input, bias)
    keep = dropout_keep(tuple(input.shape), dropout, generator)
    return FUNCTIONS[activation].apply(input, bias, keep, 1.0 / (1.0 - dropout))
