"""Causal linear attention: each position attends to itself and the past in O(L) time, with
the chunked causal dot product; one pass computes numerator and normaliser together."""

from __future__ import annotations

from seqlib.attention_registry import (
    AttentionRegistry,
    Callable,
    EventDispatcherInstance,
    Int,
    Optional,
)
from seqlib.causal_product import causal_linear_attend
from seqlib.core.creation import zeros
from seqlib.core.ops.shape import cat
from seqlib.core.tensor import Tensor
from seqlib.feature_maps import FeatureMapAttention, fused_feature_map


class CausalLinearAttention(FeatureMapAttention):
    """Causal linear attention (Katharopoulos et al., 2020).

    .. math::
        V'_i = \\frac{\\phi(Q_i) \\sum_{j \\le i} \\phi(K_j)^T V_j}
                     {\\phi(Q_i) \\cdot \\sum_{j \\le i} \\phi(K_j) + \\epsilon}

    Args:
        query_dimensions: the size E of queries and keys per head.
        feature_map: a factory ``query_dims -> FeatureMap`` (default elu(x) + 1).
        eps: added to the normaliser.
        event_dispatcher: an EventDispatcher or its key.
    Shape:
        queries ``(N, L, H, E)``, keys ``(N, S, H, E)``, values ``(N, S, H, M)`` ->
        ``(N, L, H, M)``; keys/values are cut or zero-padded to L. The attention mask must be
        lower triangular.
    """

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask, query_lengths,
                key_lengths) -> Tensor:
        if not attn_mask.lower_triangular:
            raise RuntimeError(
                "CausalLinearAttention only supports full lower triangular masks "
                "(TriangularCausalMask)"
            )
        return normalized_attention(self, queries, keys, values, key_lengths)


def normalized_attention(attention: FeatureMapAttention, queries: Tensor, keys: Tensor,
                         values: Tensor, key_lengths, log_decay: Tensor | None = None) -> Tensor:
    """``attention``'s (a FeatureMapAttention's) normalised causal linear attention, with an
    optional fixed per-head log decay (retention): the feature map inside the one Function
    where it has an array pair and keys and queries are as long, else the map's modules
    first."""
    attention.feature_map.new_feature_map(queries.device)
    L = queries.shape[1]
    pair = fused_feature_map(attention.feature_map)
    if pair is not None and keys.shape[1] == L:
        mask = None
        if key_lengths is not None and not key_lengths.all_ones:
            mask = key_lengths.float_matrix.to(queries.dtype)
        return causal_linear_attend(queries, keys, values, attention.eps, pair, mask,
                                    log_decay=log_decay)
    Q = attention.feature_map.forward_queries(queries)
    K = attention.masked_keys(keys, key_lengths)
    K, values = _match_length(K, values, L)
    return causal_linear_attend(Q, K, values, attention.eps, log_decay=log_decay)


def _match_length(keys: Tensor, values: Tensor, length: int):
    """Cut or zero-pad keys and values to the query length (fast-transformers' behaviour)."""
    S = keys.shape[1]
    if S == length:
        return keys, values
    if S > length:
        return keys[:, :length], values[:, :length]
    pad = length - S

    def padded(x):
        return cat([x, zeros(x.shape[0], pad, *x.shape[2:], dtype=x.dtype, device=x.device)], 1)

    return padded(keys), padded(values)


AttentionRegistry.register(
    "causal-linear", CausalLinearAttention,
    [
        ("query_dimensions", Int),
        ("feature_map", Optional(Callable)),
        ("event_dispatcher", Optional(EventDispatcherInstance, "")),
    ],
)
