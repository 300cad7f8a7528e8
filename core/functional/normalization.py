"""Layer normalisation as one Function with the closed-form backward."""

from __future__ import annotations

from core.autograd.function import Function
from core.backend import get_array_module
from core.tensor import Tensor


class LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, dims, eps):
        xp = get_array_module(x)
        mean = x.mean(axis=dims, keepdims=True)
        centered = x - mean
        variance = (centered * centered).mean(axis=dims, keepdims=True)
        rstd = 1 / xp.sqrt(variance + eps)
        normalized = centered * rstd  # x-hat
        ctx.save_for_backward(normalized, rstd, weight)
        ctx.dims = dims
        out = normalized * weight if weight is not None else normalized
        if bias is not None:
            out = out + bias
        return out

    @staticmethod
    def backward(ctx, g):
        normalized, rstd, weight = ctx.saved_tensors
        dims = ctx.dims
        batch = tuple(range(g.ndim - len(dims)))
        gw = (g * normalized).sum(axis=batch) if ctx.needs_input_grad[1] else None
        gb = g.sum(axis=batch) if ctx.needs_input_grad[2] else None
        gx = None
        if ctx.needs_input_grad[0]:
            gn = g * weight if weight is not None else g
            # dx = rstd * (gn - mean(gn) - x_hat * mean(gn * x_hat))
            gx = rstd * (
                gn - gn.mean(axis=dims, keepdims=True)
                - normalized * (gn * normalized).mean(axis=dims, keepdims=True)
            )
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
