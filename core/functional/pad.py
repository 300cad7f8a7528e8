"""Padding (PyTorch's pad order: last dim first), constant, reflect, replicate or circular."""

from __future__ import annotations

from ..autograd.function import Function
from ..backend import get_array_module, scatter_add
from ..tensor import Tensor


class ConstantPad(Function):
    @staticmethod
    def forward(ctx, x, widths, value):
        xp = get_array_module(x)
        # NOTE: negative widths crop, as in PyTorch; split them into crop and pad.
        crop = tuple(slice(max(-a, 0), n - max(-b, 0)) for (a, b), n in zip(widths, x.shape))
        cropped = x[crop]
        positive = [(max(a, 0), max(b, 0)) for a, b in widths]
        ctx.args = (x.shape, crop, positive)
        return xp.pad(cropped, positive, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, g):
        shape, crop, positive = ctx.args
        inner = tuple(slice(a, g.shape[i] - b) for i, (a, b) in enumerate(positive))
        grad = get_array_module(g).zeros(shape, g.dtype)
        grad[crop] = g[inner]
        return grad, None, None


class IndexPad(Function):
    """reflect/replicate/circular: every output element copies one input element."""

    @staticmethod
    def forward(ctx, x, widths, mode):
        xp = get_array_module(x)
        index = tuple(
            _source_index(xp, n, a, b, mode).reshape((-1,) + (1,) * (x.ndim - 1 - i))
            for i, ((a, b), n) in enumerate(zip(widths, x.shape))
        )
        ctx.args = (x.shape, index)
        return x[index]

    @staticmethod
    def backward(ctx, g):
        shape, index = ctx.args
        grad = get_array_module(g).zeros(shape, g.dtype)
        scatter_add(grad, index, g)
        return grad, None, None


def _source_index(xp, n, before, after, mode):
    positions = xp.arange(-before, n + after)
    if mode == "replicate":
        return xp.clip(positions, 0, n - 1)
    if mode == "circular":
        return positions % n
    period = 2 * (n - 1)  # reflect without repeating the edge
    folded = positions % period if period else positions * 0
    return xp.where(folded < n, folded, period - folded)


def pad(input: Tensor, pad: tuple, mode: str = "constant", value: float | None = None):
    """Pad ``input``; ``pad = (left, right, top, bottom, ...)`` starts from the last dim.

    Args:
        input: any shape.
        pad: an even-length tuple of widths, two per padded dim, last dim first.
        mode: "constant" (with ``value``, default 0; negative widths crop, at most the whole
            dim), "reflect", "replicate" or "circular".
    Returns:
        the padded tensor.
    """
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(
            f"pad: padding length must be even and at most 2 * ndim ({2 * input.ndim}), "
            f"got {len(pad)}"
        )
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if mode == "constant":
        for d, ((a, b), n) in enumerate(zip(widths, input.shape)):
            if n < max(-a, 0) + max(-b, 0):
                raise RuntimeError(
                    f"pad: negative padding ({a}, {b}) would crop {max(-a, 0) + max(-b, 0)} "
                    f"elements from dimension {d}, which has {n}"
                )
        return ConstantPad.apply(input, widths, 0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(
            f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}"
        )
    for (a, b), n in zip(widths, input.shape):
        if min(a, b) < 0:
            raise ValueError("pad: negative padding is only supported in constant mode")
        if mode == "reflect" and max(a, b) >= n and max(a, b) > 0:
            raise ValueError(
                f"pad: reflect padding ({a}, {b}) must be smaller than the dimension size {n}"
            )
        if mode == "circular" and max(a, b) > n:
            raise ValueError(f"pad: circular padding ({a}, {b}) must be at most the size {n}")
    return IndexPad.apply(input, widths, mode)
