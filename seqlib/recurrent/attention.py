"""Recurrent attention: one position at a time with an explicit state, the twins of the
parallel attentions. States are plain lists of tensors (inspect, copy, slice by batch row)."""

from __future__ import annotations

import math

import numpy

import seqlib.core.functional as F
from seqlib.attention.attention_layer import add_projections
from seqlib.attention_registry import (
    Callable,
    EventDispatcherInstance,
    Float,
    Int,
    Optional,
    RecurrentAttentionRegistry,
    RecurrentCrossAttentionRegistry,
)
from seqlib.core.backend import get_array_module
from seqlib.core.ops.shape import cat
from seqlib.core.tensor import Tensor
from seqlib.events import AttentionEvent, EventDispatcher
from seqlib.feature_maps import FeatureMapAttention
from seqlib.nn.layers import Dropout
from seqlib.nn.module import Module
from seqlib.recurrent.fused import is_identity_dropout, linear_arrays
from seqlib.recurrent.step_maths import (
    LinearAttentionStep,
    SoftmaxWeights,
    affine,
    append_position,
    linear_attention_step,
    softmax_attend,
)


def fits(state, shapes: dict) -> bool:
    """Whether ``state`` is a list of tensors with the ``shapes`` of a state format
    (``{"S": (N, H, D, M), ...}``; None matches any size, a name any size that is the same
    wherever the name appears)."""
    return _tensors(state) and _shapes_fit([tensor.shape for tensor in state], shapes)


def _tensors(state) -> bool:
    return isinstance(state, (list, tuple)) and all(isinstance(t, Tensor) for t in state)


def _shapes_fit(found: list, shapes: dict) -> bool:
    wanted = list(shapes.values())
    if found == wanted:  # the common case: every size given, and equal
        return True
    if len(found) != len(wanted):
        return False
    sizes = {}
    for shape, want in zip(found, wanted):
        if len(shape) != len(want):
            return False
        for size, expected in zip(shape, want):
            if isinstance(expected, str):
                expected = sizes.setdefault(expected, size)
            if expected is not None and expected != size:
                return False
    return True


def check_state(owner: Module, state, shapes: dict, like: Tensor) -> None:
    """Raise, naming what was expected, unless ``state`` fits ``shapes`` (see ``fits``) and has
    the dtype and device of ``like``."""
    if not fits(state, shapes):
        found = [tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                 for s in (state if isinstance(state, (list, tuple)) else [state])]
        want = ", ".join(f"{name} ({', '.join(map(_size, shape))})"
                         for name, shape in shapes.items())
        raise ValueError(f"{type(owner).__name__}: the state must be [{want}] for this input, "
                         f"got {found}; was it made by another model or another batch?")
    if any(s.dtype != like.dtype or s.device != like.device for s in state):
        found = [f"{s.dtype} on {s.device}" for s in state]
        raise RuntimeError(f"{type(owner).__name__}: the state must have the same dtype and "
                           f"device as the input ({like.dtype} on {like.device}), got {found}")


def _size(expected) -> str:
    """A size of a state format as an error shows it: ``*`` for any (or a named) size."""
    return str(expected) if isinstance(expected, int) else "*"


def state_arrays(state, shapes: dict, like):
    """The arrays of ``state`` where ``check_state`` would accept it for an input array
    ``like``, else None (the fused step then leaves the error to the module)."""
    if not isinstance(state, (list, tuple)) or len(state) != len(shapes):
        return None
    kind, dtype = type(like), like.dtype
    arrays, exact = [], True
    for tensor, shape in zip(state, shapes.values()):
        if not isinstance(tensor, Tensor):
            return None
        a = tensor._array
        if type(a) is not kind or (a.dtype is not dtype and a.dtype != dtype):
            return None
        exact = exact and a.shape == shape  # the common case: every size given, and equal
        arrays.append(a)
    if kind is not numpy.ndarray and any(a.device != like.device for a in arrays):
        return None
    return arrays if exact or _shapes_fit([a.shape for a in arrays], shapes) else None


def check_step_input(owner: Module, x: Tensor, d_model: int, name: str = "x") -> None:
    """One position per call: ``x`` must be ``(N, d_model)``."""
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != d_model:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{type(owner).__name__}: {name} must be (N, {d_model}), one position "
                         f"per call, got {shape}; run the parallel model on (N, L, {d_model}) "
                         "sequences")


class RecurrentAttentionLayer(Module):
    """The recurrent twin of AttentionLayer: same parameters, one position per call.

    Args: as ``AttentionLayer``.
    Shape:
        query, key, value ``(N, d_model)`` -> ``((N, d_model), state)``.
    """

    def __init__(self, attention: Module, d_model: int, n_heads: int, d_keys: int | None = None,
                 d_values: int | None = None, event_dispatcher=""):
        super().__init__()
        add_projections(self, attention, d_model, n_heads, d_keys, d_values, event_dispatcher)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, state=None):
        d_model = self.query_projection.in_features
        for name, x in (("query", query), ("key", key), ("value", value)):
            check_step_input(self, x, d_model, name)
        N = query.shape[0]
        H = self.n_heads
        q = self.query_projection(query).view(N, H, -1)
        k = self.key_projection(key).view(N, H, -1)
        v = self.value_projection(value).view(N, H, -1)
        new_value, state = self.inner_attention(q, k, v, state)
        return self.out_projection(new_value.view(N, -1)), state

    def array_function(self, reads):
        """Self-attention on arrays for a fused step: ``(x (N, d_model), state) -> (y, state)``
        (or None: the module must run), with query, key and value all ``x``.

        The inner attention's array function takes the queries and keys stacked,
        ``qk (2, N, H, E)``, so that a feature map runs once over both."""
        attend = reads.part(self, "inner_attention")
        H = reads.get(self, "n_heads")
        projections = [linear_arrays(reads, self, name) for name in (
            "query_projection", "key_projection", "value_projection", "out_projection")]
        if attend is None or any(p is None for p in projections):
            return None
        query, key, value, out = projections
        if query[0].shape != key[0].shape:
            return None
        xp = get_array_module(query[0])

        def step(x, state):
            N = x.shape[0]
            qk = xp.empty((2, N, query[0].shape[0]), x.dtype)
            affine(x, *query, out=qk[0])
            affine(x, *key, out=qk[1])
            attended = attend(qk.reshape(2, N, H, -1), affine(x, *value).reshape(N, H, -1),
                              state)
            if attended is None:
                return None
            heads, state = attended
            return affine(heads.reshape(N, -1), *out), state

        return step


class RecurrentFullAttention(Module):
    """Softmax attention over every position so far (a growing key/value cache).

    State: ``[keys (N, H, S, E), values (N, H, S, M)]`` (``state_shapes``).
    """

    def __init__(self, softmax_temp: float | None = None, attention_dropout: float = 0.1,
                 event_dispatcher=""):
        super().__init__()
        self.softmax_temp = softmax_temp
        self.dropout = Dropout(attention_dropout)
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)

    @staticmethod
    def state_shapes(N: int, H: int, E: int, M: int) -> dict:
        """The state format for ``N`` rows of ``H`` heads, keys of size ``E``, values ``M``."""
        return {"keys": (N, H, "S", E), "values": (N, H, "S", M)}

    def state_from(self, keys: Tensor, values: Tensor) -> list:
        """The state after the positions of ``keys`` ``(N, P, H, E)`` and ``values``
        ``(N, P, H, M)`` (a prompt prefilled in one parallel pass)."""
        return [keys.permute(0, 2, 1, 3), values.permute(0, 2, 1, 3)]

    def forward(self, query: Tensor, key: Tensor, value: Tensor, state=None):
        temperature = self.softmax_temp or 1.0 / math.sqrt(query.shape[-1])
        if state is None:
            keys, values = key[:, :, None], value[:, :, None]
        else:
            check_state(self, state, self.state_shapes(*key.shape, value.shape[-1]), key)
            keys = cat([state[0], key[:, :, None]], dim=2)
            values = cat([state[1], value[:, :, None]], dim=2)
        weights = self.dropout(SoftmaxWeights.apply(query, keys, temperature))  # (N, H, S)
        if self.event_dispatcher.listening:
            self.event_dispatcher.dispatch(AttentionEvent(self, weights))
        out = (weights[:, :, None] @ values)[:, :, 0]  # weigh_values, (N, H, M)
        return out, [keys, values]

    def array_function(self, reads):
        """``(qk (2, N, H, E), v, state) -> (out, state)`` on arrays for a fused step, or
        None."""
        if not is_identity_dropout(reads, self, "dropout"):
            return None
        reads.silent(reads.get(self, "event_dispatcher"))
        softmax_temp = reads.get(self, "softmax_temp")
        shapes = self.state_shapes

        def attend(qk, v, state):
            q, k = qk
            cache = (None, None)
            if state is not None:
                cache = state_arrays(state, shapes(*k.shape, v.shape[-1]), k)
                if cache is None:
                    return None
            keys, values = append_position(cache[0], k), append_position(cache[1], v)
            temperature = softmax_temp or 1.0 / math.sqrt(q.shape[-1])
            out = softmax_attend(q, keys, values, temperature)
            return out, [Tensor._make(keys), Tensor._make(values)]

        return attend


class RecurrentLinearAttention(FeatureMapAttention):
    """Causal linear attention one position at a time, in constant time and memory.

    State: ``[S (N, H, D, M) = sum phi(k)^T v, Z (N, H, D) = sum phi(k)]``
    (``state_shapes``).
    """

    @staticmethod
    def state_shapes(N: int, H: int, D: int, M: int) -> dict:
        """The state format for ``N`` rows of ``H`` heads, ``D`` features, values of size
        ``M``."""
        return {"S": (N, H, D, M), "Z": (N, H, D)}

    def state_from(self, keys: Tensor, values: Tensor) -> list:
        """The state after the positions of ``keys`` ``(N, P, H, E)`` and ``values``
        ``(N, P, H, M)`` (a prompt prefilled in one parallel pass)."""
        features = self.feature_map.forward_keys(keys).permute(0, 2, 3, 1)  # (N, H, D, P)
        return [features @ values.permute(0, 2, 1, 3), features.sum(-1)]

    def forward(self, query: Tensor, key: Tensor, value: Tensor, state=None):
        return linear_step(self, query, key, value, state)

    def array_function(self, reads):
        """``(qk (2, N, H, E), v, state) -> (out, state)`` on arrays for a fused step, or
        None."""
        phi = reads.part(self, "feature_map", ("forward", "forward_queries", "forward_keys"))
        eps = reads.get(self, "eps")
        if phi is None:
            return None
        return linear_attend(phi, eps, self.state_shapes)


def linear_step(attention, query: Tensor, key: Tensor, value: Tensor, state, decay=None):
    """The module path of one linear-attention position for ``attention`` (a recurrent linear
    attention with ``feature_map``, ``eps`` and ``state_shapes``), with an optional per-head
    ``decay(xp, H, dtype) -> (H,)`` of the state (retention).

    Returns:
        ``(out (N, H, M), [S, Z])``.
    """
    if state is None:
        attention.feature_map.new_feature_map(query.device)
    Q = attention.feature_map.forward_queries(query)  # (N, H, D)
    K = attention.feature_map.forward_keys(key)
    S = Z = None
    if state is not None:
        check_state(attention, state, attention.state_shapes(*K.shape, value.shape[-1]), K)
        S, Z = state
    extra = () if decay is None else (decay(get_array_module(K._array), K.shape[1], K.dtype),)
    out, S, Z = LinearAttentionStep.apply(Q, K, value, S, Z, attention.eps, *extra)
    return out, [S, Z]


def linear_attend(phi, eps: float, shapes, decay=None):
    """The fused step's ``attend(qk (2, N, H, E), v, state) -> (out, state)`` of linear
    attention (None where the state does not fit), with an optional per-head ``decay(xp, H,
    dtype) -> (H,)`` of the state (retention)."""

    def attend(qk, v, state):
        Q, K = phi(qk, qk)  # the step's own array: one pass over queries and keys
        S = Z = None
        if state is not None:
            before = state_arrays(state, shapes(*K.shape, v.shape[-1]), K)
            if before is None:
                return None
            S, Z = before
        gamma = None if decay is None else decay(get_array_module(K), K.shape[1], K.dtype)
        out, S, Z = linear_attention_step(Q, K, v, S, Z, eps, gamma)
        return out, [Tensor._make(S), Tensor._make(Z)]

    return attend


class RecurrentCrossAttentionLayer(Module):
    """Cross-attention of one query position to a fixed memory; the memory's keys and values
    are projected once and kept in the state.

    Args: as ``AttentionLayer``.
    Shape:
        query ``(N, d_model)``, memory ``(N, S, d_model)`` -> ``((N, d_model), state)``.
    """

    def __init__(self, attention: Module, d_model: int, n_heads: int, d_keys: int | None = None,
                 d_values: int | None = None, event_dispatcher=""):
        super().__init__()
        add_projections(self, attention, d_model, n_heads, d_keys, d_values, event_dispatcher)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, key_lengths=None,
                state=None):
        N, H = query.shape[0], self.n_heads
        q = self.query_projection(query).view(N, H, -1)
        if state is None:  # project the memory once
            S = keys.shape[1]
            k = self.key_projection(keys).view(N, S, H, -1)
            v = self.value_projection(values).view(N, S, H, -1)
        else:
            k = v = None
        new_value, state = self.inner_attention(q, k, v, key_lengths, state)
        return self.out_projection(new_value.view(N, -1)), state


class RecurrentCrossFullAttention(Module):
    """Softmax cross-attention for one query position; state ``[keys, values]`` of the memory
    as ``(N, H, S, E)`` and ``(N, H, S, M)``."""

    def __init__(self, softmax_temp: float | None = None, attention_dropout: float = 0.1,
                 event_dispatcher=""):
        super().__init__()
        self.softmax_temp = softmax_temp
        self.dropout = Dropout(attention_dropout)
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)

    def forward(self, query: Tensor, keys, values, key_lengths, state=None):
        if state is None:
            keys, values = keys.permute(0, 2, 1, 3), values.permute(0, 2, 1, 3)
            mask = None if key_lengths is None or key_lengths.all_ones else \
                key_lengths.additive_matrix.to(query.dtype)[:, None, :]
            state = [keys, values] if mask is None else [keys, values, mask]
        keys, values = state[0], state[1]
        temperature = self.softmax_temp or 1.0 / math.sqrt(query.shape[-1])
        scores = (keys @ (query * temperature)[..., None])[..., 0]  # (N, H, S)
        if len(state) == 3:
            scores = scores + state[2]
        weights = self.dropout(F.softmax(scores, dim=-1))
        if self.event_dispatcher.listening:
            self.event_dispatcher.dispatch(AttentionEvent(self, weights))
        return (weights[:, :, None] @ values)[:, :, 0], state


class RecurrentCrossLinearAttention(FeatureMapAttention):
    """Linear cross-attention for one query position; state ``[S (N, H, D, M), Z (N, H, D)]``
    summarising the memory."""

    def forward(self, query: Tensor, keys, values, key_lengths, state=None):
        if state is None:
            self.feature_map.new_feature_map(query.device)
            K = self.masked_keys(keys, key_lengths)  # (N, S, H, D)
            K = K.permute(0, 2, 3, 1)  # (N, H, D, S)
            state = [K @ values.permute(0, 2, 1, 3), K.sum(-1)]
        S, Z = state
        Q = self.feature_map.forward_queries(query)  # (N, H, D)
        normaliser = 1 / ((Q * Z).sum(-1, keepdim=True) + self.eps)
        return (Q[:, :, None] @ S)[:, :, 0] * normaliser, state


_SOFTMAX = [("softmax_temp", Optional(Float)), ("attention_dropout", Optional(Float, 0.1)),
            ("event_dispatcher", Optional(EventDispatcherInstance, ""))]
_LINEAR = [("query_dimensions", Int), ("feature_map", Optional(Callable)),
           ("event_dispatcher", Optional(EventDispatcherInstance, ""))]
RecurrentAttentionRegistry.register("full", RecurrentFullAttention, _SOFTMAX)
RecurrentAttentionRegistry.register("linear", RecurrentLinearAttention, _LINEAR)
RecurrentAttentionRegistry.register("causal-linear", RecurrentLinearAttention, _LINEAR)
RecurrentCrossAttentionRegistry.register("full", RecurrentCrossFullAttention, _SOFTMAX)
RecurrentCrossAttentionRegistry.register("linear", RecurrentCrossLinearAttention, _LINEAR)
