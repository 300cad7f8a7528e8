"""AttentionLayer: project inputs to multi-head queries/keys/values, attend, project back."""

from __future__ import annotations

from seqlib.core.masking import FullMask, LengthMask, check_mask
from seqlib.core.tensor import Tensor
from seqlib.events import EventDispatcher, QKVEvent
from seqlib.nn.layers import Linear
from seqlib.nn.module import Module


def default_masks(queries, keys, attn_mask, query_lengths, key_lengths):
    """Fill in all-ones masks and check every mask's shape against the sequences.

    A LengthMask made for a shorter sequence raises here instead of silently counting as all
    ones (a fast-transformers pitfall).
    """
    for name, mask in (("attn_mask", attn_mask), ("query_lengths", query_lengths),
                       ("key_lengths", key_lengths)):
        check_mask(name, mask)
    N, L = queries.shape[:2]
    S = keys.shape[1]
    device = queries.device
    if attn_mask is None:
        attn_mask = FullMask(L, S, device=device)
    if query_lengths is None:
        query_lengths = LengthMask(queries.new_full((N,), L, dtype="int64"), L)
    if key_lengths is None:
        key_lengths = LengthMask(queries.new_full((N,), S, dtype="int64"), S)
    for name, mask, expected in (("attn_mask", attn_mask, (L, S)),
                                 ("query_lengths", query_lengths, (N, L)),
                                 ("key_lengths", key_lengths, (N, S))):
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"{name} has shape {tuple(mask.shape)} but the inputs need {expected} "
                f"(queries {tuple(queries.shape)}, keys {tuple(keys.shape)})"
            )
    return attn_mask, query_lengths, key_lengths


def add_projections(layer: Module, attention: Module, d_model: int, n_heads: int,
                    d_keys: int | None, d_values: int | None, event_dispatcher) -> None:
    """Give an attention layer (parallel or recurrent) fast-transformers' projections:
    ``query/key/value_projection`` into ``n_heads`` heads and ``out_projection`` back."""
    d_keys = d_keys or d_model // n_heads
    d_values = d_values or d_model // n_heads
    layer.inner_attention = attention
    layer.query_projection = Linear(d_model, d_keys * n_heads)
    layer.key_projection = Linear(d_model, d_keys * n_heads)
    layer.value_projection = Linear(d_model, d_values * n_heads)
    layer.out_projection = Linear(d_values * n_heads, d_model)
    layer.n_heads = n_heads
    layer.event_dispatcher = EventDispatcher.get(event_dispatcher)


class AttentionLayer(Module):
    """Multi-head attention around an inner attention, as fast-transformers' AttentionLayer.

    Args:
        attention: the inner attention (``FullAttention``, ``LinearAttention``, ...).
        d_model: the input and output feature size.
        n_heads: the number of heads.
        d_keys: query/key size per head (default ``d_model // n_heads``).
        d_values: value size per head (default ``d_model // n_heads``).
        event_dispatcher: an EventDispatcher or its key; receives a QKVEvent when listened to.
    Shape:
        queries ``(N, L, d_model)``, keys and values ``(N, S, d_model)`` -> ``(N, L, d_model)``.
    """

    def __init__(self, attention: Module, d_model: int, n_heads: int, d_keys: int | None = None,
                 d_values: int | None = None, event_dispatcher=""):
        super().__init__()
        add_projections(self, attention, d_model, n_heads, d_keys, d_values, event_dispatcher)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask=None,
                query_lengths=None, key_lengths=None) -> Tensor:
        attn_mask, query_lengths, key_lengths = default_masks(queries, keys, attn_mask,
                                                              query_lengths, key_lengths)
        N, L, _ = queries.shape
        S = keys.shape[1]
        H = self.n_heads
        d_keys = self.query_projection.out_features // H  # explicit: -1 is ambiguous at L=0
        d_values = self.value_projection.out_features // H
        queries = self.query_projection(queries).view(N, L, H, d_keys)
        keys = self.key_projection(keys).view(N, S, H, d_keys)
        values = self.value_projection(values).view(N, S, H, d_values)
        if self.event_dispatcher.listening:
            self.event_dispatcher.dispatch(QKVEvent(self, queries, keys, values))
        new_values = self.inner_attention(queries, keys, values, attn_mask, query_lengths,
                                          key_lengths).view(N, L, H * d_values)
        return self.out_projection(new_values)
