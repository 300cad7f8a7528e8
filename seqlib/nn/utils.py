"""Gradient clipping and flattening parameters into one vector."""

from __future__ import annotations

import math

from seqlib.core.autograd.grad_mode import no_grad
from seqlib.core.backend import get_array_module
from seqlib.core.missing import module_getattr as _module_getattr
from seqlib.core.tensor import Tensor


def _as_list(parameters) -> list:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Scale gradients so that their joint norm is at most ``max_norm``.

    A NaN anywhere makes the norm NaN, and then every gradient NaN (as PyTorch), unless
    ``error_if_nonfinite`` raises first.

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` to clip.
        max_norm: the largest allowed norm (non-negative).
        norm_type: p of the p-norm (``inf`` for the max norm).
        error_if_nonfinite: raise if the total norm is nan or inf.
        foreach: accepted for PyTorch compatibility; the result is the same either way.
    Returns:
        the total norm of the gradients before clipping, as a 0-d tensor.
    """
    max_norm = float(max_norm)
    if not max_norm >= 0:  # also catches NaN
        raise ValueError(f"clip_grad_norm_: max_norm must be a non-negative number, got "
                         f"{max_norm} (a negative one would flip every gradient)")
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        from seqlib.core.creation import tensor

        return tensor(0.0)
    xp = get_array_module(grads[0]._array)
    norm_type = float(norm_type)
    if norm_type == math.inf:
        # NaN-propagating maximum (Python's max() would skip a NaN depending on order)
        maxima = [xp.abs(g._array).max().astype(xp.float64) for g in grads if g.numel()]
        total = float(xp.max(xp.stack(maxima))) if maxima else 0.0
    else:
        total = sum(float((xp.abs(g._array.astype(xp.float64)) ** norm_type).sum())
                    for g in grads) ** (1.0 / norm_type)
    total = float(total)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    coefficient = max_norm / (total + 1e-6)
    if not coefficient >= 1:  # a NaN norm scales everything to NaN, as PyTorch's clamp does
        with no_grad():
            for g in grads:
                g.mul_(coefficient)
    from seqlib.core.creation import tensor

    return tensor(total, dtype=grads[0].dtype)


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]``.

    Args:
        parameters: a tensor or an iterable of tensors whose ``.grad`` to clip.
        clip_value: the bound.
    """
    with no_grad():
        for p in _as_list(parameters):
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters) -> Tensor:
    """All parameters flattened and joined into one 1-D tensor.

    Args:
        parameters: an iterable of tensors.
    Returns:
        ``(total_numel,)``.
    """
    from seqlib.core.ops.shape import cat

    return cat([p.reshape(-1) for p in _as_list(parameters)])


def vector_to_parameters(vec: Tensor, parameters) -> None:
    """Copy consecutive slices of a 1-D ``vec`` into the parameters (inverse of the above).

    Args:
        vec: ``(total_numel,)``.
        parameters: an iterable of tensors to overwrite.
    """
    params = _as_list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.numel() != total:
        raise RuntimeError(
            f"vector_to_parameters: expected a 1-D vector of {total} elements, got shape "
            f"{tuple(vec.shape)}"
        )
    offset = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vec[offset : offset + n].view(p.shape))
            offset += n


# a PyTorch name this module lacks gets an AttributeError that says so (seqlib.core.missing)
__getattr__ = _module_getattr(__name__, "torch.nn.utils")
