"""``decayed_dot_product(q, k, v, log_decay)``: the kernels' decayed causal product as one
autograd Function, and ``log_sigmoid``, the log decay of a sigmoid gate."""

from __future__ import annotations

from seqlib import kernels
from seqlib.core.autograd.function import Function
from seqlib.core.backend import get_array_module
from seqlib.core.tensor import Tensor


class DecayedDotProduct(Function):
    """``S_t = exp(a_t) S_{t-1} + k_t^T v_t``, ``out_t = q_t S_t``, with an optional state
    carried in and out; differentiable in all of them, the log decays ``a`` included."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, q, k, v, log_decay, initial_state, chunk_size):
        result = kernels.decayed_dot_product(q, k, v, log_decay, initial_state,
                                             chunk_size=chunk_size, keep_for_backward=True)
        ctx.save_for_backward(q, k, v, log_decay, initial_state)
        ctx.chunk_size, ctx.kernel_saved = chunk_size, result.saved
        return result.out, result.state

    @staticmethod
    def backward(ctx, grad_out, grad_final):
        q, k, v, log_decay, initial_state = ctx.saved_tensors
        grads = kernels.decayed_dot_product_backward(
            q, k, v, log_decay, grad_out, initial_state, grad_final, chunk_size=ctx.chunk_size,
            saved=ctx.kernel_saved)
        grad_state = grads.state if initial_state is not None else None
        return grads.q, grads.k, grads.v, grads.log_decay, grad_state, None


def decayed_dot_product(queries: Tensor, keys: Tensor, values: Tensor, log_decay: Tensor,
                        initial_state: Tensor | None = None, return_final_state: bool = False,
                        chunk_size: int | None = None):
    """Causal linear attention with a decay: ``out_i = sum_{j<=i} (prod_{j<s<=i} alpha_s)
    (q_i . k_j) v_j``, ``alpha_s = exp(log_decay_s)``.

    .. math::
        S_t = \\alpha_t S_{t-1} + k_t^T v_t, \\qquad out_t = q_t S_t

    Args:
        queries, keys: ``(N, H, L, D)``.
        values: ``(N, H, L, M)``.
        log_decay: ``log alpha``, ``(N, H, L)`` per position and head (a gate's
            ``log_sigmoid``) or ``(H,)`` one per head (RetNet's ``log gamma``); finite and
            ``<= 0``.
        initial_state: optional ``(N, H, D, M)`` state from earlier positions (it decays by
            ``alpha`` at the first position too).
        return_final_state: also return the state after the last position, to continue from.
        chunk_size: positions per chunk of the chunked algorithm (default 64).
    Returns:
        ``(N, H, L, M)``, and the ``(N, H, D, M)`` final state if asked for.
    """
    for name, t in (("queries", queries), ("keys", keys), ("values", values),
                    ("log_decay", log_decay)):
        if not isinstance(t, Tensor):
            raise TypeError(
                f"decayed_dot_product: {name} must be a Tensor, got {type(t).__name__}")
    out, final = DecayedDotProduct.apply(queries, keys, values, log_decay, initial_state,
                                         chunk_size)
    return (out, final) if return_final_state else out


def log_sigmoid_array(x):
    """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))`` on a NumPy/CuPy array, finite for
    every finite ``x`` (a gate near 0 has a large negative log, not -inf)."""
    xp = get_array_module(x)
    out = xp.exp(-xp.abs(x))
    xp.log1p(out, out=out)
    return xp.subtract(xp.minimum(x, 0), out, out=out)


class LogSigmoid(Function):
    """``log_sigmoid_array`` with its derivative ``sigmoid(-x) = (1 - tanh(x / 2)) / 2``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return log_sigmoid_array(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        slope = get_array_module(x).tanh(x * 0.5)
        slope *= -0.5
        slope += 0.5
        slope *= g
        return slope


def log_sigmoid(x: Tensor) -> Tensor:
    """``log(sigmoid(x))``, stable for all ``x`` (the log decay of a gate ``sigmoid(x)``)."""
    return LogSigmoid.apply(x)
