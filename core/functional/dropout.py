"""Dropout with a seeded generator: zero a fraction p of elements and scale the rest."""

from __future__ import annotations

from core.autograd.function import Function
from core.random import Generator, rng
from core.tensor import Tensor


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, g):
        (scale,) = ctx.saved_tensors
        return g * scale, None


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
            generator: Generator | None = None) -> Tensor:
    """During training, zero each element with probability ``p`` and scale by ``1/(1-p)``.

    Args:
        input: any shape.
        p: drop probability in ``[0, 1]``.
        training: if False, return ``input`` unchanged.
        generator: a seeded ``Generator`` (default: the global one).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    draws = rng(generator).random(input.shape, dtype="float32")
    keep = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    scale = (draws >= p).astype(input.dtype) * input.dtype.type(keep)
    if input.is_cuda:
        from core.backend import move_array

        scale = move_array(scale, input.device)
    out = Dropout.apply(input, scale)
    if inplace:
        from core.functional.activation import _inplace_or

        return _inplace_or(out, input, True)
    return out
