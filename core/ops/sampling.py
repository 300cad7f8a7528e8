"""Random draws on tensors through seqlib's Generator: multinomial, uniform_, normal_.

As in ``core.creation``, the random numbers are drawn on the CPU (from ``generator``, or the
default one that ``manual_seed`` seeds) and moved to the tensor's device, so a seed gives
the same draws on every device.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ..random import Generator, rng
from ..tensor import Tensor
from .sorting import top_order


def _check_distribution(input, num_samples, replacement: bool) -> None:
    """PyTorch's checks on ``multinomial``'s arguments, in PyTorch's order."""
    if not isinstance(input, Tensor):
        raise TypeError(f"multinomial: input must be a Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise RuntimeError(
            f"multinomial: input must hold floating-point probabilities, got {input.dtype}"
        )
    if input.ndim not in (1, 2):
        raise RuntimeError(
            f"multinomial: input must be 1-D or 2-D (categories last), got shape "
            f"{tuple(input.shape)}"
        )
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, numpy.integer)):
        raise TypeError(f"multinomial: num_samples must be an int, got {num_samples!r}")
    if num_samples <= 0:
        raise RuntimeError(f"multinomial: num_samples must be positive, got {num_samples}")
    categories = input.shape[-1]
    if not replacement and num_samples > categories:
        raise RuntimeError(
            f"multinomial: cannot draw num_samples={num_samples} of {categories} categories "
            "without replacement"
        )


def _check_weights(weights, xp) -> None:
    """Finite, non-negative weights with a positive sum in every row."""
    if weights.size and not bool(xp.isfinite(weights).all() & (weights >= 0).all()):
        raise RuntimeError(
            "multinomial: the probability tensor contains either inf, nan or an element < 0"
        )
    if weights.shape[0] and not bool((weights.sum(axis=1) > 0).all()):
        raise RuntimeError(
            "multinomial: invalid distribution: a row of probabilities sums to 0"
        )


def _inverse_cdf(weights, num_samples: int, draw: numpy.random.Generator, xp):
    """``num_samples`` categories per row, with replacement, by inverting the running sum."""
    rows, categories = weights.shape
    cdf = xp.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    # NOTE: one searchsorted for all rows: row r's cdf (in [0, 1]) and its uniforms (in
    # [0, 1)) are shifted by 2r, so the rows never overlap. side="right" never lands on a
    # zero-weight category (its cdf equals its predecessor's); rounding at the top of a row
    # can overshoot, and is clamped to the row's last category with a positive weight.
    offsets = 2.0 * xp.arange(rows)[:, None]
    uniforms = xp.asarray(draw.random((rows, num_samples)))
    found = xp.searchsorted((cdf + offsets).reshape(-1), (uniforms + offsets).reshape(-1),
                            side="right").reshape(rows, num_samples)
    found -= categories * xp.arange(rows)[:, None]
    last = xp.where(weights > 0, xp.arange(categories), -1).max(axis=1, keepdims=True)
    return xp.minimum(found, last)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator: Generator | None = None) -> Tensor:
    """Draw category indices from the rows of ``input``, weighted by its entries.

    The weights need not be normalised; zero-weight categories are drawn only without
    replacement, once every positive-weight category has been drawn (as in PyTorch).

    Args:
        input: ``(C,)`` or ``(N, C)`` non-negative, finite weights; each row sums to > 0.
        num_samples: draws per row (at most ``C`` without replacement).
        replacement: draw with replacement.
        generator: a seeded Generator (default: the global one).
    Returns:
        int64 ``(num_samples,)`` or ``(N, num_samples)``.
    """
    _check_distribution(input, num_samples, replacement)
    xp = get_array_module(input._array)
    weights = input._array.reshape(-1, input.shape[-1]).astype(xp.float64)
    _check_weights(weights, xp)
    draw = rng(generator)
    if replacement or num_samples == 1:  # one draw has the same law either way
        found = _inverse_cdf(weights, num_samples, draw, xp)
    else:
        # NOTE: drawing without replacement, successively in proportion to the weights, is
        # taking the largest keys w / E with E ~ Exp(1) i.i.d. (the exponential race); zero
        # weights get key 0 even where E is 0.
        race = xp.asarray(draw.standard_exponential(weights.shape))
        keys = xp.where(weights > 0, weights / race, 0.0)
        found = top_order(keys, 1, num_samples, True)
    found = found.astype(xp.int64, copy=False)
    return Tensor._make(found.reshape(-1) if input.ndim == 1 else found)


def _fill_random(tensor: Tensor, values: numpy.ndarray, op: str) -> Tensor:
    """Write drawn ``values`` into a floating ``tensor`` as an in-place op (its history, if
    recorded, gets a zero gradient, as PyTorch's)."""
    from .inplace import _check_rebase, _recording, copy_

    if _recording(tensor):
        _check_rebase(tensor, op)
    return copy_(tensor, Tensor._make(values))


def _floating(tensor, op: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(f"{op}: only floating tensors can be filled, got {tensor.dtype}")


def uniform_(tensor: Tensor, low: float = 0.0, high: float = 1.0, *,
             generator: Generator | None = None) -> Tensor:
    """Fill ``tensor`` in place with samples from ``U(low, high)``.

    Args:
        tensor: a floating tensor of any shape.
        low: the lower bound (PyTorch's ``from``).
        high: the upper bound (PyTorch's ``to``), at least ``low``.
        generator: a seeded Generator (default: the global one).
    Returns:
        ``tensor``.
    """
    _floating(tensor, "uniform_")
    if low > high:
        raise RuntimeError(f"uniform_: expected from <= to, got from={low} > to={high}")
    return _fill_random(tensor, rng(generator).uniform(low, high, tensor.shape), "uniform_")


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, *,
            generator: Generator | None = None) -> Tensor:
    """Fill ``tensor`` in place with samples from ``N(mean, std**2)``.

    Args:
        tensor: a floating tensor of any shape.
        mean: the mean.
        std: the standard deviation, at least 0.
        generator: a seeded Generator (default: the global one).
    Returns:
        ``tensor``.
    """
    _floating(tensor, "normal_")
    if std < 0:
        raise RuntimeError(f"normal_: expected std >= 0.0, got std={std}")
    return _fill_random(tensor, rng(generator).normal(mean, std, tensor.shape), "normal_")
