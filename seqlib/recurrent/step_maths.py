"""The maths of one recurrent step on raw NumPy/CuPy arrays, and the Functions around it.

Each computation exists once, here: the recurrent attention modules call it through their
autograd Functions, and a fused inference step (``seqlib.recurrent.fused``) calls the same
array functions directly, so the two paths cannot drift apart.
"""

from __future__ import annotations

import seqlib.core.functional as F
from seqlib.core.autograd.function import Function
from seqlib.core.backend import get_array_module
from seqlib.core.functional.activation import GELU
from seqlib.core.tensor import Tensor

# ---------------------------------------------------------------------------- linear attention


def linear_attention_step(Q, K, v, S, Z, eps: float, decay=None):
    """One position of causal linear attention, from feature-mapped queries and keys.

    .. math::
        S' = \\gamma S + \\phi(k)^T v, \\quad Z' = \\gamma Z + \\phi(k), \\quad
        out = \\frac{\\phi(q) S'}{\\phi(q) \\cdot Z' + \\epsilon}

    Args:
        Q, K: the features ``(N, H, D)`` of the query and key.
        v: the value ``(N, H, M)``.
        S, Z: the state before, ``(N, H, D, M)`` and ``(N, H, D)``, or None at the first
            position. Never modified: the new state is new arrays.
        eps: added to the normaliser.
        decay: ``gamma`` per head ``(H,)`` (retention), or None for none (``gamma = 1``).
    Returns:
        ``(out (N, H, M), S', Z')``.
    """
    S_new = K[..., :, None] * v[..., None, :]  # (N, H, D, M)
    if S is not None:
        S_new += S if decay is None else S * decay[:, None, None]
    if Z is None:
        Z_new = K.copy()
    else:
        Z_new = K + (Z if decay is None else Z * decay[:, None])
    numerator = Q[:, :, None] @ S_new  # (N, H, 1, M)
    denominator = Q[:, :, None] @ Z_new[..., None]  # (N, H, 1, 1)
    denominator += eps
    numerator /= denominator
    return numerator[:, :, 0], S_new, Z_new


class LinearAttentionStep(Function):
    """``linear_attention_step`` with its gradient (to the features, the value and the state
    before) from the gradients of the output and of the new state. A fixed ``decay``, if
    given as the last input, takes no gradient."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, Q, K, v, S, Z, eps, decay=None):
        out, S_new, Z_new = linear_attention_step(Q, K, v, S, Z, eps, decay)
        ctx.save_for_backward(Q, K, v, S_new, Z_new, out)
        ctx.eps, ctx.decay = eps, decay
        return out, S_new, Z_new

    @staticmethod
    def backward(ctx, g_out, g_S, g_Z):
        Q, K, v, S, Z, out = ctx.saved_tensors
        xp = get_array_module(g_out)
        denominator = (Q[:, :, None] @ Z[..., None])[..., 0] + ctx.eps  # (N, H, 1)
        g_numerator = g_out / denominator  # (N, H, M)
        g_denominator = -(g_out * out).sum(-1, keepdims=True) / denominator  # (N, H, 1)
        g_S = g_S + Q[..., :, None] * g_numerator[..., None, :]  # everything S' reaches
        g_Z = g_Z + Q * g_denominator
        g_Q = (S @ g_numerator[..., None])[..., 0] + Z * g_denominator
        g_K = (g_S @ v[..., None])[..., 0] + g_Z
        g_v = xp.matmul(K[..., None, :], g_S)[..., 0, :]
        need = ctx.needs_input_grad
        if ctx.decay is not None:  # the state before reaches S' through the decay
            g_S = g_S * ctx.decay[:, None, None] if need[3] else None
            g_Z = g_Z * ctx.decay[:, None] if need[4] else None
        grads = (g_Q, g_K, g_v, g_S if need[3] else None, g_Z if need[4] else None, None, None)
        return grads[:len(need)]  # one per input given (decay is optional)


# ---------------------------------------------------------------------------- gated attention


def decayed_attention_step(q, k, v, S, log_decay):
    """One position of decayed (gated) linear attention, unnormalised.

    .. math::
        S' = e^{a} S + k^T v, \\quad out = q S'

    Args:
        q, k: ``(N, H, D)`` (queries already scaled).
        v: ``(N, H, M)``.
        S: the state before, ``(N, H, D, M)``, or None at the first position. Never modified.
        log_decay: ``a = log alpha`` ``(N, H)``.
    Returns:
        ``(out (N, H, M), S')``.
    """
    S_new = k[..., :, None] * v[..., None, :]  # (N, H, D, M)
    if S is not None:
        S_new += S * get_array_module(S).exp(log_decay)[..., None, None]
    return (q[:, :, None] @ S_new)[:, :, 0], S_new


class DecayedAttentionStep(Function):
    """``decayed_attention_step`` with its gradient, the log decay's included:
    ``d a = alpha <dS', S>``."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, q, k, v, S, log_decay):
        out, S_new = decayed_attention_step(q, k, v, S, log_decay)
        ctx.save_for_backward(q, k, v, S, S_new, log_decay)
        return out, S_new

    @staticmethod
    def backward(ctx, g_out, g_S):
        q, k, v, S, S_new, log_decay = ctx.saved_tensors
        xp = get_array_module(g_out)
        g_S = g_S + q[..., :, None] * g_out[..., None, :]  # everything S' reaches
        g_q = (S_new @ g_out[..., None])[..., 0]
        g_k = (g_S @ v[..., None])[..., 0]
        g_v = xp.matmul(k[..., None, :], g_S)[..., 0, :]
        g_before = g_log_decay = None
        if S is not None:
            alpha = xp.exp(log_decay)
            g_log_decay = alpha * xp.einsum("nhdm,nhdm->nh", g_S, S)
            g_before = g_S * alpha[..., None, None]
        elif ctx.needs_input_grad[4]:  # nothing decayed at the first position
            g_log_decay = xp.zeros_like(log_decay)
        return g_q, g_k, g_v, g_before, g_log_decay


# ---------------------------------------------------------------------------- softmax attention


def append_position(cache, x):
    """A key/value cache ``(N, H, S, E)`` (or None) with ``x`` ``(N, H, E)`` appended as
    position ``S``; a new array."""
    if cache is None:
        return x[:, :, None]
    return get_array_module(x).concatenate([cache, x[:, :, None]], axis=2)


def softmax_weights(q, keys, temperature: float):
    """The attention weights ``softmax(temperature * keys q)`` ``(N, H, S)`` of one query
    ``(N, H, E)`` over the cached keys ``(N, H, S, E)``."""
    xp = get_array_module(q)
    scores = (keys @ (q * temperature)[..., None])[..., 0]  # (N, H, S)
    scores -= scores.max(-1, keepdims=True)
    weights = xp.exp(scores, out=scores)
    weights /= weights.sum(-1, keepdims=True)
    return weights


def weigh_values(weights, values):
    """``sum_s weights[s] values[s]``: ``(N, H, S)`` and ``(N, H, S, M)`` -> ``(N, H, M)``."""
    return (weights[:, :, None] @ values)[:, :, 0]


def softmax_attend(q, keys, values, temperature: float):
    """Softmax attention of one query over a key/value cache (no dropout: inference).

    Args:
        q: ``(N, H, E)``.
        keys, values: ``(N, H, S, E)`` and ``(N, H, S, M)``, the new position included.
        temperature: the scale of the scores.
    Returns:
        ``(N, H, M)``.
    """
    return weigh_values(softmax_weights(q, keys, temperature), values)


class SoftmaxWeights(Function):
    """``softmax_weights`` with its gradient; the module path applies dropout to the weights
    and weighs the values with tensor ops (``weigh_values``' matmul), so both stay visible."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, q, keys, temperature):
        weights = softmax_weights(q, keys, temperature)
        ctx.save_for_backward(q, keys, weights)
        ctx.temperature = temperature
        return weights

    @staticmethod
    def backward(ctx, g):
        q, keys, weights = ctx.saved_tensors
        g_scores = g * weights
        g_scores -= weights * g_scores.sum(-1, keepdims=True)  # (N, H, S)
        g_scores *= ctx.temperature
        g_q = (g_scores[:, :, None] @ keys)[:, :, 0] if ctx.needs_input_grad[0] else None
        g_keys = g_scores[..., None] * q[:, :, None] if ctx.needs_input_grad[1] else None
        return g_q, g_keys, None


# ---------------------------------------------------------------------------- linear and FF


def affine(x, weight, bias, out=None):
    """``x @ weight.T + bias`` on rows ``(R, in)``, as the Linear Function computes it (into
    ``out`` if given)."""
    out = x @ weight.T if out is None else get_array_module(x).matmul(x, weight.T, out=out)
    if bias is not None:
        out += bias
    return out


def feed_forward_rows(x, linear1, activation, linear2):
    """The feed-forward block at inference, ``linear2(activation(linear1(x)))``.

    Args:
        x: ``(R, d_model)``.
        linear1, linear2: ``(weight, bias)`` arrays of the two Linear layers.
        activation: an array function from ``array_activation`` (it may overwrite its input).
    Returns:
        ``(R, d_model)``, a new array.
    """
    return affine(activation(affine(x, *linear1)), *linear2)


def array_activation(activation):
    """The array form of a layer's activation (a function of tensors), computed as the module
    path computes it: ReLU as the ReLU Function does (``maximum(x, 0)``, here in place), GELU
    by the GELU Function's own forward, any other through its Function on a Tensor."""
    if activation is F.relu:
        return _relu_in_place
    if activation is F.gelu:
        return _gelu

    def on_tensor(x):
        return activation(Tensor._make(x))._array

    return on_tensor


def _relu_in_place(x):
    return get_array_module(x).maximum(x, 0, out=x)


def _gelu(x):
    return GELU.forward(GELU(), x, "none")  # a Function's forward maps arrays to arrays
