"""Causal retention: causal linear attention whose past fades by a fixed decay per head
(RetNet's retention, Sun et al. 2023), in O(L) time with the chunked decayed product."""

from __future__ import annotations

import math
from collections.abc import Sequence

from seqlib.attention.causal_linear_attention import normalized_attention
from seqlib.attention_registry import (
    AttentionRegistry,
    Callable,
    EventDispatcherInstance,
    Int,
    Optional,
    Spec,
)
from seqlib.core.creation import ones, tensor
from seqlib.core.ops.shape import cat
from seqlib.core.tensor import Tensor
from seqlib.decayed_product import decayed_dot_product
from seqlib.feature_maps import FeatureMapAttention


def _is_decay(value) -> bool:
    def one(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= 1

    if isinstance(value, Sequence) and not isinstance(value, str):
        return len(value) > 0 and all(map(one, value))
    return one(value)


Decay = Spec("Float in (0, 1] or a list of them, one per head", _is_decay)


def retention_decays(n_heads: int, decay=None) -> tuple:
    """The decay ``gamma`` of each of ``n_heads`` heads.

    Args:
        n_heads: the number of heads H.
        decay: None for RetNet's ``gamma_h = 1 - 2^(-5 - h)`` (0.969, 0.984, ... : memories
            from ~32 positions up), a float in (0, 1] for every head, or one per head.
    Returns:
        a tuple of H floats.
    """
    if decay is None:
        return tuple(1 - 2.0 ** (-5 - h) for h in range(n_heads))
    if not _is_decay(decay):
        raise ValueError(f"decay must be a float in (0, 1] or a list of them, got {decay!r}")
    if isinstance(decay, Sequence):
        if len(decay) != n_heads:
            raise ValueError(f"decay lists {len(decay)} values but the attention has {n_heads} "
                             "heads")
        return tuple(float(d) for d in decay)
    return (float(decay),) * n_heads


class CausalRetention(FeatureMapAttention):
    """Causal linear attention with a fixed decay ``gamma_h`` per head (retention).

    .. math::
        V'_i = \\frac{\\phi(Q_i) \\sum_{j \\le i} \\gamma^{i-j} \\phi(K_j)^T V_j}
                     {\\phi(Q_i) \\cdot \\sum_{j \\le i} \\gamma^{i-j} \\phi(K_j) + \\epsilon}

    Normalisation: seqlib's feature map and normaliser, with the decay applied to numerator
    and denominator alike (RetNet itself uses no feature map and a group norm on the output).
    The output stays a convex combination of values at any decay and length, so a model
    trained with "causal-linear" settings trains unchanged, and ``decay=1`` is exactly
    "causal-linear". The decays are fixed, not parameters: the recurrent twin has nothing
    more to load.

    Args:
        query_dimensions: the size E of queries and keys per head.
        feature_map: a factory ``query_dims -> FeatureMap`` (default elu(x) + 1).
        decay: see ``retention_decays`` (default RetNet's, one per head).
        eps: added to the normaliser.
        event_dispatcher: an EventDispatcher or its key.
    Shape:
        queries ``(N, L, H, E)``, keys ``(N, S, H, E)``, values ``(N, S, H, M)`` ->
        ``(N, L, H, M)``; keys/values are cut or zero-padded to L. The attention mask must be
        lower triangular.
    """

    def __init__(self, query_dimensions: int, feature_map=None, decay=None, eps: float = 1e-6,
                 event_dispatcher=""):
        super().__init__(query_dimensions, feature_map, eps, event_dispatcher)
        if decay is not None and not _is_decay(decay):  # the error now, not at the first call
            raise ValueError(f"{type(self).__name__}: decay must be a float in (0, 1] or a list "
                             f"of them, got {decay!r}")
        self.decay = tuple(decay) if isinstance(decay, Sequence) else decay  # (immutable)

    def log_decays(self, n_heads: int, like: Tensor) -> Tensor:
        """``log gamma`` per head, ``(H,)``, of ``like``'s dtype and device."""
        return tensor([math.log(g) for g in retention_decays(n_heads, self.decay)],
                      dtype=like.dtype, device=like.device)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask, query_lengths,
                key_lengths) -> Tensor:
        if not attn_mask.lower_triangular:
            raise RuntimeError("CausalRetention only supports full lower triangular masks "
                               "(TriangularCausalMask)")
        return normalized_attention(self, queries, keys, values, key_lengths,
                                    self.log_decays(queries.shape[2], queries))

    def decayed_product(self, Q: Tensor, K: Tensor, values: Tensor, final_state: bool = False):
        """The decayed product of features ``Q, K (N, L, H, D)`` and ``[values | 1]``:
        numerator and normaliser in one pass (the column of ones, as in causal-linear);
        ``(N, H, L, M + 1)``, and the ``(N, H, D, M + 1)`` state after it if asked for."""
        with_ones = cat([values, ones(*values.shape[:3], 1, dtype=values.dtype,
                                      device=values.device)], dim=-1)
        return decayed_dot_product(Q.permute(0, 2, 1, 3), K.permute(0, 2, 1, 3),
                                   with_ones.permute(0, 2, 1, 3),
                                   self.log_decays(Q.shape[2], Q), None, final_state)


RETENTION_PARAMETERS = [
    ("query_dimensions", Int),
    ("feature_map", Optional(Callable)),
    ("decay", Optional(Decay)),
    ("event_dispatcher", Optional(EventDispatcherInstance, "")),
]
AttentionRegistry.register("causal-retention", CausalRetention, RETENTION_PARAMETERS)
