"""Softmax attention, ``softmax(Q K^T / sqrt(E)) V``, with additive masks."""

from __future__ import annotations

import math

import seqlib.core.functional as F
from seqlib.attention_registry import (
    AttentionRegistry,
    EventDispatcherInstance,
    Float,
    Optional,
)
from seqlib.core.tensor import Tensor
from seqlib.events import AttentionEvent, EventDispatcher
from seqlib.nn.layers import Dropout
from seqlib.nn.module import Module


class FullAttention(Module):
    """Scaled dot-product attention over all keys.

    Args:
        softmax_temp: the scale of the scores (default ``1/sqrt(E)``).
        attention_dropout: dropout on the attention weights.
        event_dispatcher: receives an AttentionEvent with the weights when listened to.
    Shape:
        queries ``(N, L, H, E)``, keys ``(N, S, H, E)``, values ``(N, S, H, M)`` ->
        ``(N, L, H, M)``.
    """

    def __init__(self, softmax_temp: float | None = None, attention_dropout: float = 0.1,
                 event_dispatcher=""):
        super().__init__()
        self.softmax_temp = softmax_temp
        self.dropout = Dropout(attention_dropout)
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask, query_lengths,
                key_lengths) -> Tensor:
        E = queries.shape[-1]
        temperature = self.softmax_temp or 1.0 / math.sqrt(E)
        q = queries.permute(0, 2, 1, 3) * temperature  # (N, H, L, E)
        scores = q @ keys.permute(0, 2, 3, 1)  # (N, H, L, S)
        if not attn_mask.all_ones:
            scores = scores + attn_mask.additive_matrix.to(scores.dtype)
        if not key_lengths.all_ones:
            scores = scores + key_lengths.additive_matrix.to(scores.dtype)[:, None, None]
        weights = self.dropout(F.softmax(scores, dim=-1))
        if self.event_dispatcher.listening:
            self.event_dispatcher.dispatch(AttentionEvent(self, weights))
        out = weights @ values.permute(0, 2, 1, 3)  # (N, H, L, M)
        return out.permute(0, 2, 1, 3).contiguous()


AttentionRegistry.register(
    "full", FullAttention,
    [
        ("softmax_temp", Optional(Float)),
        ("attention_dropout", Optional(Float, 0.1)),
        ("event_dispatcher", Optional(EventDispatcherInstance, "")),
    ],
)
