"""A fused inference step of recurrent encoder layers and stacks on raw arrays.

Generation calls the recurrent twin once per token at tiny batch sizes, where every seqlib
op costs far more in Python than in arithmetic. When nothing can observe the difference (no
grad, eval mode, no hooks, no event listeners, layers and a feature map it knows) a whole
stack runs here: about 45 NumPy calls a layer, no Tensor, Module or autograd machinery.

What makes a model fusable is decided once and cached as a *plan* (the Parameter objects and
constants each layer needs) until ``seqlib.nn.module.structure_version()`` changes, i.e. until
some module gains or loses a submodule, parameter, attribute or hook, or changes train/eval
mode. The plan keeps Parameters, not copies of their arrays, so a weight changed in place
(an optimizer step, ``p.data.mul_(2)``) is seen at the next step. States are new arrays each
step: a state a caller kept (for beam search, say) is never modified.
"""

from __future__ import annotations

import math

from seqlib.core.autograd.grad_mode import is_grad_enabled
from seqlib.core.backend import get_array_module
from seqlib.core.functional.normalization import layer_norm_rows
from seqlib.core.tensor import Tensor
from seqlib.feature_maps import (
    ActivationFunctionFeatureMap,
    _elu_plus_one,
    elu_plus_one_into,
)
from seqlib.nn.layers import Dropout, LayerNorm, Linear
from seqlib.nn.module import structure_version
from seqlib.recurrent.attention import (
    RecurrentAttentionLayer,
    RecurrentFullAttention,
    RecurrentLinearAttention,
    state_arrays,
)
from seqlib.recurrent.step_maths import (
    affine,
    append_position,
    array_activation,
    feed_forward_rows,
    linear_attention_step,
    softmax_attend,
)


class _LayerPlan:
    """What one fused encoder layer reads each step."""

    __slots__ = ("linear", "eps_or_temp", "heads", "q", "k", "v", "out", "norm1", "ff1",
                 "activation", "ff2", "norm2", "param")

    def __init__(self, layer):
        attention = layer.attention
        inner = attention.inner_attention
        self.linear = type(inner) is RecurrentLinearAttention
        self.eps_or_temp = inner.eps if self.linear else inner.softmax_temp
        self.heads = attention.n_heads
        self.q, self.k, self.v, self.out = (_linear(getattr(attention, name)) for name in (
            "query_projection", "key_projection", "value_projection", "out_projection"))
        self.norm1, self.norm2 = _norm(layer.norm1), _norm(layer.norm2)
        self.ff1, self.ff2 = _linear(layer.linear1), _linear(layer.linear2)
        self.activation = array_activation(layer.activation)
        self.param = layer.linear1.weight  # for the dtype check


def _linear(module):
    return module.weight, module.bias


def _norm(module):
    return module.weight, module.bias, module.eps, module.normalized_shape[0]


def _fusable_layer(layer) -> bool:
    from seqlib.recurrent.transformers import RecurrentTransformerEncoderLayer

    if type(layer) is not RecurrentTransformerEncoderLayer:
        return False
    attention = layer.attention
    if type(attention) is not RecurrentAttentionLayer:
        return False
    inner = attention.inner_attention
    if type(inner) is RecurrentLinearAttention:
        feature_map = inner.feature_map
        if not (type(feature_map) is ActivationFunctionFeatureMap
                and feature_map.activation_function is _elu_plus_one):
            return False
    elif type(inner) is not RecurrentFullAttention:
        return False
    linears = (attention.query_projection, attention.key_projection, attention.value_projection,
               attention.out_projection, layer.linear1, layer.linear2)
    if any(type(m) is not Linear for m in linears):
        return False
    if any(type(m) is not LayerNorm or len(m.normalized_shape) != 1
           for m in (layer.norm1, layer.norm2)):
        return False
    return type(layer.dropout) is Dropout


def _observed(modules) -> bool:
    return any(m.training or m._forward_hooks or m._forward_pre_hooks for m in modules)


def _dispatchers(modules) -> tuple:
    found = {id(d): d for m in modules if (d := m.__dict__.get("event_dispatcher")) is not None}
    return tuple(found.values())


def _cached_plan(module, build):
    """``build(module)`` (a plan or None), rebuilt only when the module structure changed."""
    version = structure_version()
    cached = module.__dict__.get("_fused_plan")
    if cached is None or cached[0] != version:
        cached = (version, build(module))
        module.__dict__["_fused_plan"] = cached  # not through __setattr__: no version bump
    return cached[1]


def _build_layer_plan(layer):
    modules = list(layer.modules())
    if not _fusable_layer(layer) or _observed(modules):
        return None
    return [_LayerPlan(layer)], None, _dispatchers(modules)


def _build_encoder_plan(encoder):
    modules = list(encoder.modules())
    if (not len(encoder.layers) or _observed(modules)
            or not all(_fusable_layer(layer) for layer in encoder.layers)):
        return None
    norm = encoder.norm
    if norm is not None and (type(norm) is not LayerNorm or len(norm.normalized_shape) != 1):
        return None
    layers = [_LayerPlan(layer) for layer in encoder.layers]
    return layers, None if norm is None else _norm(norm), _dispatchers(modules)


def layer_plan(layer):
    """The fused plan of a RecurrentTransformerEncoderLayer, or None where it must not fuse."""
    return _usable(_cached_plan(layer, _build_layer_plan))


def encoder_plan(encoder):
    """The fused plan of a whole RecurrentTransformerEncoder, or None."""
    return _usable(_cached_plan(encoder, _build_encoder_plan))


def _usable(plan):
    if plan is None or is_grad_enabled() or any(d._listeners for d in plan[2]):
        return None
    return plan


def can_fuse(layer) -> bool:
    """True when the fused step computes exactly what the layer's modules would."""
    return layer_plan(layer) is not None


def run(plan, x: Tensor, state):
    """Apply a plan to ``x (N, d_model)``; returns ``(y, state)`` as the modules do, or None
    when the inputs are unusual (wrong dtype or rank, a state of another shape): the module
    path then runs and raises its own, clearer error."""
    layers, final_norm, _ = plan
    a = x._array
    weight = layers[0].param._array
    if a.ndim != 2 or a.dtype != weight.dtype or type(a) is not type(weight):
        return None
    if state is not None and not _state_fits(layers, state, a):
        return None
    xp = get_array_module(a)
    new_state = []
    for i, layer in enumerate(layers):
        a, layer_state = _layer_step(layer, a, None if state is None else state[i], xp)
        new_state.append([Tensor._make(s) for s in layer_state])
    if final_norm is not None:
        a = _layer_norm(a, final_norm, xp)
    return Tensor._make(a), new_state


def _state_fits(layers, state, a) -> bool:
    """Whether ``state`` is what each layer's attention accepts (its own state format)."""
    N = a.shape[0]
    if len(state) != len(layers):
        return False
    for layer, entry in zip(layers, state):
        if entry is None:
            continue
        H = layer.heads
        D, M = layer.q[0].shape[0] // H, layer.v[0].shape[0] // H
        attention = RecurrentLinearAttention if layer.linear else RecurrentFullAttention
        if state_arrays(entry, attention.state_shapes(N, H, D, M), a) is None:
            return False
    return True


def _layer_step(plan: _LayerPlan, a, state, xp):
    N, H = a.shape[0], plan.heads
    q, k, v = _affine(a, plan.q), _affine(a, plan.k), _affine(a, plan.v)
    q, k, v = q.reshape(N, H, -1), k.reshape(N, H, -1), v.reshape(N, H, -1)
    before = (None, None) if state is None else (state[0]._array, state[1]._array)
    if plan.linear:
        Q, K = elu_plus_one_into(q, q), elu_plus_one_into(k, k)
        out, *new_state = linear_attention_step(Q, K, v, *before, plan.eps_or_temp)
    else:
        new_state = [append_position(before[0], k), append_position(before[1], v)]
        temperature = plan.eps_or_temp or 1.0 / math.sqrt(q.shape[-1])
        out = softmax_attend(q, *new_state, temperature)
    h = _affine(out.reshape(N, -1), plan.out)
    h += a
    h = _layer_norm(h, plan.norm1, xp)
    y = feed_forward_rows(h, _arrays(plan.ff1), plan.activation, _arrays(plan.ff2))
    y += h
    return _layer_norm(y, plan.norm2, xp), new_state


def _arrays(weight_bias):
    weight, bias = weight_bias
    return weight._array, None if bias is None else bias._array


def _affine(a, weight_bias):
    return affine(a, *_arrays(weight_bias))


def _layer_norm(h, norm, xp):
    """LayerNorm over the last dim of ``h`` (a fresh array, which it overwrites)."""
    weight, bias, eps, _ = norm
    return layer_norm_rows(h, None if weight is None else weight._array,
                           None if bias is None else bias._array, eps, in_place=True)[0]
