"""The recurrent twins of the decayed attentions, "causal-retention" and
"causal-gated-linear": one position per call, constant time and memory, with their own state
formats (``state_shapes``, ``check_state``, ``state_from`` for a prompt prefilled in one
parallel pass)."""

from __future__ import annotations

import functools

import numpy

from seqlib.attention.causal_retention import (
    RETENTION_PARAMETERS,
    CausalRetention,
    retention_decays,
)
from seqlib.attention.gated_linear_attention import (
    GATED_PARAMETERS,
    NORM_EPS,
    GatedAttentionBase,
)
from seqlib.attention_registry import RecurrentAttentionRegistry
from seqlib.core.functional.normalization import layer_norm_rows
from seqlib.core.tensor import Tensor
from seqlib.decayed_product import decayed_dot_product, log_sigmoid_array
from seqlib.recurrent.attention import check_state, linear_attend, linear_step, state_arrays
from seqlib.recurrent.fused import linear_arrays
from seqlib.recurrent.step_maths import (
    DecayedAttentionStep,
    affine,
    decayed_attention_step,
)


@functools.lru_cache(maxsize=64)
def _numpy_decays(decays: tuple, dtype) -> numpy.ndarray:
    array = numpy.array(decays, dtype)
    array.flags.writeable = False
    return array


def decay_array(xp, n_heads: int, decay, dtype):
    """``gamma`` per head as an ``(H,)`` array of ``dtype`` (NumPy's made once and kept)."""
    decays = retention_decays(n_heads, decay)
    if xp is numpy:
        return _numpy_decays(decays, numpy.dtype(dtype))
    return xp.asarray(decays, dtype)


class RecurrentRetention(CausalRetention):
    """Causal retention one position at a time, the twin of ``CausalRetention``.

    State: ``[S (N, H, D, M) = sum_j gamma^(t-j) phi(k_j)^T v_j, Z (N, H, D) = sum_j
    gamma^(t-j) phi(k_j)]`` (``state_shapes``); one step is ``S = gamma S + phi(k)^T v``,
    ``Z = gamma Z + phi(k)``.

    Args: as ``CausalRetention``.
    """

    @staticmethod
    def state_shapes(N: int, H: int, D: int, M: int) -> dict:
        """The state format for ``N`` rows of ``H`` heads, ``D`` features, values of size
        ``M``."""
        return {"S": (N, H, D, M), "Z": (N, H, D)}

    def state_from(self, keys: Tensor, values: Tensor) -> list:
        """The state after the positions of ``keys`` ``(N, P, H, E)`` and ``values``
        ``(N, P, H, M)`` (a prompt prefilled in one parallel pass): the final state of the
        parallel model's own decayed product."""
        K = self.feature_map.forward_keys(keys)
        _, state = self.decayed_product(K, K, values, final_state=True)  # (N, H, D, M + 1)
        M = values.shape[-1]
        return [state[..., :M], state[..., M]]

    def forward(self, query: Tensor, key: Tensor, value: Tensor, state=None):
        return linear_step(self, query, key, value, state, self._decays)

    def _decays(self, xp, heads: int, dtype):
        return decay_array(xp, heads, self.decay, dtype)

    def array_function(self, reads):
        """``(qk (2, N, H, E), v, state) -> (out, state)`` on arrays for a fused step, or
        None."""
        phi = reads.part(self, "feature_map", ("forward", "forward_queries", "forward_keys"))
        eps, decay = reads.get(self, "eps"), reads.get(self, "decay")
        if phi is None:
            return None
        return linear_attend(phi, eps, self.state_shapes,
                             lambda xp, heads, dtype: decay_array(xp, heads, decay, dtype))


class RecurrentGatedLinearAttention(GatedAttentionBase):
    """Gated causal linear attention one position at a time, the twin of
    ``GatedCausalLinearAttention`` (the same ``gate_projection``).

    State: ``[S (N, H, D, M)]``; one step is ``S = alpha S + k^T v``, ``out =
    LayerNorm(q S / sqrt(E))`` with ``alpha`` the gate of this position's key.

    Args: as ``GatedCausalLinearAttention``.
    """

    @staticmethod
    def state_shapes(N: int, H: int, D: int, M: int) -> dict:
        """The state format for ``N`` rows of ``H`` heads, keys of size ``D``, values ``M``."""
        return {"S": (N, H, D, M)}

    def state_from(self, keys: Tensor, values: Tensor) -> list:
        """The state after the positions of ``keys`` ``(N, P, H, E)`` and ``values``
        ``(N, P, H, M)`` (the gates come from the keys): the final state of the parallel
        model's own decayed product."""
        K = keys.permute(0, 2, 1, 3)
        _, state = decayed_dot_product(K, K, values.permute(0, 2, 1, 3),
                                       self.log_decays(keys).permute(0, 2, 1), None, True)
        return [state]

    def forward(self, query: Tensor, key: Tensor, value: Tensor, state=None):
        S = None
        if state is not None:
            check_state(self, state, self.state_shapes(*key.shape, value.shape[-1]), key)
            (S,) = state
        out, S = DecayedAttentionStep.apply(query * self.scale, key, value, S,
                                            self.log_decays(key))  # (N, H, M)
        return self.normalized(out), [S]

    def array_function(self, reads):
        """``(qk (2, N, H, E), v, state) -> (out, state)`` on arrays for a fused step, or
        None."""
        gate = linear_arrays(reads, self, "gate_projection")
        temperature, scale = reads.get(self, "gate_temperature"), reads.get(self, "scale")
        if gate is None:
            return None
        shapes = self.state_shapes

        def attend(qk, v, state):
            q, k = qk
            N, H, E = k.shape
            S = None
            if state is not None:
                before = state_arrays(state, shapes(N, H, E, v.shape[-1]), k)
                if before is None:
                    return None
                (S,) = before
            log_decay = log_sigmoid_array(affine(k.reshape(N * H, E), *gate).reshape(N, H))
            log_decay *= 1 / temperature
            out, S = decayed_attention_step(q * scale, k, v, S, log_decay)
            out = layer_norm_rows(out.reshape(N * H, -1), None, None, NORM_EPS, in_place=True)[0]
            return out.reshape(N, H, -1), [Tensor._make(S)]

        return attend


RecurrentAttentionRegistry.register("causal-retention", RecurrentRetention,
                                    RETENTION_PARAMETERS)
RecurrentAttentionRegistry.register("causal-gated-linear", RecurrentGatedLinearAttention,
                                    GATED_PARAMETERS)
