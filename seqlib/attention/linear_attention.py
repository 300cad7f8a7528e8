"""Linear attention: ``phi(Q) (phi(K)^T V)`` normalised by ``phi(Q) . sum phi(K)``, O(L)."""

from __future__ import annotations

from seqlib.attention_registry import (
    AttentionRegistry,
    Callable,
    EventDispatcherInstance,
    Int,
    Optional,
)
from seqlib.core.tensor import Tensor
from seqlib.feature_maps import FeatureMapAttention


class LinearAttention(FeatureMapAttention):
    """Non-causal linear attention (Katharopoulos et al., 2020).

    Args:
        query_dimensions: the size E of queries and keys per head.
        feature_map: a factory ``query_dims -> FeatureMap`` (default elu(x) + 1).
        eps: added to the normaliser.
        event_dispatcher: an EventDispatcher or its key.
    Shape:
        queries ``(N, L, H, E)``, keys ``(N, S, H, E)``, values ``(N, S, H, M)`` ->
        ``(N, L, H, M)``; the attention mask must be all ones (key lengths are honoured).
    """

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask, query_lengths,
                key_lengths) -> Tensor:
        if not attn_mask.all_ones:
            raise RuntimeError(
                "LinearAttention does not support arbitrary attention masks (only all ones); "
                "use causal-linear for causal masks"
            )
        self.feature_map.new_feature_map(queries.device)
        Q = self.feature_map.forward_queries(queries).permute(0, 2, 1, 3)  # (N, H, L, D)
        K = self.masked_keys(keys, key_lengths)
        K = K.permute(0, 2, 3, 1)  # (N, H, D, S)
        KV = K @ values.permute(0, 2, 1, 3)  # (N, H, D, M)
        normaliser = 1 / ((Q @ K.sum(dim=-1, keepdim=True)) + self.eps)  # (N, H, L, 1)
        out = (Q @ KV) * normaliser  # (N, H, L, M)
        return out.permute(0, 2, 1, 3).contiguous()


AttentionRegistry.register(
    "linear", LinearAttention,
    [
        ("query_dimensions", Int),
        ("feature_map", Optional(Callable)),
        ("event_dispatcher", Optional(EventDispatcherInstance, "")),
    ],
)
