"""A fused inference step of a recurrent encoder layer on raw arrays.

Generation calls the recurrent twin once per token at tiny batch sizes, where every seqlib
op costs far more in Python than in arithmetic. When nothing can observe the difference (no
grad, eval mode, no hooks, no event listeners, a feature map it knows) a layer runs here in
about thirty NumPy calls, with the Q/K/V projections as one GEMV. States are new arrays each
step: a state a caller kept (for beam search, say) is never modified.
"""

from __future__ import annotations

import math

from core.autograd.grad_mode import is_grad_enabled
from core.backend import get_array_module
from core.tensor import Tensor
from seqlib.feature_maps import ActivationFunctionFeatureMap, _elu_plus_one
from seqlib.recurrent.attention import RecurrentFullAttention, RecurrentLinearAttention


def can_fuse(layer) -> bool:
    """True when the fused step computes exactly what the modules would."""
    if is_grad_enabled() or layer.training:
        return False
    inner = layer.attention.inner_attention
    if type(inner) is RecurrentLinearAttention:
        feature_map = inner.feature_map
        if not (type(feature_map) is ActivationFunctionFeatureMap
                and feature_map.activation_function is _elu_plus_one):
            return False
    elif type(inner) is not RecurrentFullAttention:
        return False
    for module, dispatcher in _watched(layer):
        if module._forward_hooks or module._forward_pre_hooks:
            return False
        if dispatcher is not None and dispatcher.listening:
            return False
    return True


def _watched(layer) -> list:
    """The layer's submodules and their event dispatchers, cached until a submodule changes."""
    children = tuple(id(m) for m in layer._modules.values())
    cached = layer.__dict__.get("_watched")
    if cached is None or cached[0] != children:
        modules = [(m, m.__dict__.get("event_dispatcher")) for m in layer.modules()]
        cached = (children, modules)
        layer.__dict__["_watched"] = cached
    return cached[1]


def _fused_projection(attention):
    """The Q/K/V weights and biases stacked, cached until a parameter changes."""
    parts = (attention.query_projection, attention.key_projection, attention.value_projection)
    key = tuple((id(p._array), p._version[0]) for m in parts for p in (m.weight, m.bias))
    cached = attention.__dict__.get("_fused_qkv")
    if cached is None or cached[0] != key:
        xp = get_array_module(parts[0].weight._array)
        weight = xp.concatenate([m.weight._array for m in parts]).T.copy()
        bias = xp.concatenate([m.bias._array for m in parts])
        cached = (key, weight, bias)
        attention.__dict__["_fused_qkv"] = cached
    return cached[1], cached[2]


def _linear(x, linear):
    out = x @ linear.weight._array.T
    if linear.bias is not None:
        out += linear.bias._array
    return out


def _layer_norm(x, norm, xp):
    mean = x.sum(-1, keepdims=True) * (1.0 / x.shape[-1])
    centered = x - mean
    variance = (centered * centered).sum(-1, keepdims=True) * (1.0 / x.shape[-1])
    out = centered / xp.sqrt(variance + norm.eps)
    if norm.weight is not None:
        out *= norm.weight._array
    if norm.bias is not None:
        out += norm.bias._array
    return out


def _elu1(x, xp):
    return xp.where(x > 0, x + 1, xp.exp(xp.minimum(x, 0)))


def _attend(inner, q, k, v, state, xp):
    """One step of the inner attention on (N, H, *) arrays; returns (out, state arrays)."""
    if type(inner) is RecurrentLinearAttention:
        Q, K = _elu1(q, xp), _elu1(k, xp)
        update = K[..., :, None] * v[..., None, :]
        if state is None:
            S, Z = update, K
        else:
            S, Z = state[0]._array + update, state[1]._array + K
        out = (Q[:, :, None] @ S)[:, :, 0] / ((Q * Z).sum(-1, keepdims=True) + inner.eps)
        return out, (S, Z)
    temperature = inner.softmax_temp or 1.0 / math.sqrt(q.shape[-1])
    if state is None:
        keys, values = k[:, :, None], v[:, :, None]
    else:
        keys = xp.concatenate([state[0]._array, k[:, :, None]], axis=2)
        values = xp.concatenate([state[1]._array, v[:, :, None]], axis=2)
    scores = (keys @ (q * temperature)[..., None])[..., 0]
    weights = xp.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return (weights[:, :, None] @ values)[:, :, 0], (keys, values)


def encoder_layer_step(layer, x: Tensor, state):
    """``RecurrentTransformerEncoderLayer.forward`` for ``can_fuse(layer)`` layers."""
    a = x._array
    xp = get_array_module(a)
    attention = layer.attention
    N, H = a.shape[0], attention.n_heads
    weight, bias = _fused_projection(attention)
    qkv = a @ weight
    qkv += bias
    d_keys = attention.query_projection.weight.shape[0]
    q = qkv[:, :d_keys].reshape(N, H, -1)
    k = qkv[:, d_keys : 2 * d_keys].reshape(N, H, -1)
    v = qkv[:, 2 * d_keys :].reshape(N, H, -1)
    if state is not None and state[0].shape[0] != N:
        raise ValueError(
            f"the batch size changed during iteration: state has {state[0].shape[0]} rows, "
            f"the input {N}"
        )
    out, new_state = _attend(attention.inner_attention, q, k, v, state, xp)
    h = _layer_norm(a + _linear(out.reshape(N, -1), attention.out_projection), layer.norm1, xp)
    hidden = _linear(h, layer.linear1)
    if layer.activation.__name__ == "relu":
        xp.maximum(hidden, 0, out=hidden)
    else:
        hidden = layer.activation(Tensor._make(hidden))._array
    y = _layer_norm(h + _linear(hidden, layer.linear2), layer.norm2, xp)
    return Tensor._make(y), [Tensor._make(s) for s in new_state]
