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
from seqlib.causal_product import causal_dot_product
from seqlib.core.creation import ones, zeros
from seqlib.core.ops.shape import cat
from seqlib.core.tensor import Tensor
from seqlib.feature_maps import FeatureMapAttention


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
        self.feature_map.new_feature_map(queries.device)
        Q = self.feature_map.forward_queries(queries)
        K = self.masked_keys(keys, key_lengths)
        K, values = _match_length(K, values, queries.shape[1])
        M = values.shape[-1]
        # NOTE: a column of ones appended to V makes the last output column Q_i . cumsum(K)_i,
        # the normaliser, so one causal product (and one backward pass) serves both.
        with_ones = cat([values, ones(*values.shape[:3], 1, dtype=values.dtype,
                                      device=values.device)], dim=-1)
        product = causal_dot_product(Q.permute(0, 2, 1, 3), K.permute(0, 2, 1, 3),
                                     with_ones.permute(0, 2, 1, 3))  # (N, H, L, M + 1)
        out = product[..., :M] / (product[..., M:] + self.eps)
        return out.permute(0, 2, 1, 3).contiguous()


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
