"""Linear layer math: ``y = x W^T + b`` as one Function (three GEMMs in backward)."""

from __future__ import annotations

from ..autograd.function import Function
from ..tensor import Tensor


class Linear(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        # one 2-D GEMM over all rows, not a batch of small ones
        out = _rows(x) @ weight.T  # (rows, out)
        if bias is not None:
            out += bias
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g2 = _rows(g)  # (rows, out)
        gx = (g2 @ weight).reshape(x.shape) if need_x else None
        gw = g2.T @ _rows(x) if need_w else None
        gb = g2.sum(axis=0) if need_b and ctx.has_bias else None
        return gx, gw, gb


def _rows(a):
    """``(*, n)`` as ``(rows, n)``; the row count is explicit because NumPy cannot infer a -1
    next to a size 0."""
    rows = 1
    for size in a.shape[:-1]:
        rows *= size
    return a.reshape(rows, a.shape[-1])


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Apply ``input @ weight.T + bias``.

    Args:
        input: ``(*, in_features)``.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)`` or None.
    Returns:
        ``(*, out_features)``.
    """
    if weight.ndim != 2:
        raise RuntimeError(f"linear: weight must be 2-D, got shape {tuple(weight.shape)}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise RuntimeError(
            f"linear: input's last dimension ({tuple(input.shape)}) must match weight's "
            f"in_features (weight shape {tuple(weight.shape)})"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise RuntimeError(
            f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}"
        )
    if input.dtype != weight.dtype:
        raise RuntimeError(
            f"linear: expected input and weight to have the same dtype, got {input.dtype} "
            f"and {weight.dtype}"
        )
    return Linear.apply(input, weight, bias)
