"""Exact top-k attention: softmax over only the k largest scores of each query."""

from __future__ import annotations

import math

import seqlib.core.functional as F
from seqlib.attention_registry import (
    AttentionRegistry,
    EventDispatcherInstance,
    Float,
    Optional,
    PositiveInt,
)
from seqlib.core.backend import get_array_module
from seqlib.core.tensor import Tensor
from seqlib.events import AttentionEvent, EventDispatcher
from seqlib.nn.layers import Dropout
from seqlib.nn.module import Module


class ExactTopKAttention(Module):
    """Full attention that keeps, for every query, only its ``topk`` highest (masked) scores.

    Args:
        topk: how many keys each query attends to (at most S).
        softmax_temp: the score scale (default ``1/sqrt(E)``).
        attention_dropout: dropout on the attention weights.
        event_dispatcher: receives an AttentionEvent when listened to.
    Shape: as ``FullAttention``.
    """

    def __init__(self, topk: int = 32, softmax_temp: float | None = None,
                 attention_dropout: float = 0.1, event_dispatcher=""):
        super().__init__()
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"ExactTopKAttention: topk must be an int >= 1, got {topk!r}")
        self.topk = topk
        self.softmax_temp = softmax_temp
        self.dropout = Dropout(attention_dropout)
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask, query_lengths,
                key_lengths) -> Tensor:
        E = queries.shape[-1]
        temperature = self.softmax_temp or 1.0 / math.sqrt(E)
        scores = queries.permute(0, 2, 1, 3) @ keys.permute(0, 2, 3, 1)  # (N, H, L, S)
        if not attn_mask.all_ones:
            scores = scores + attn_mask.additive_matrix.to(scores.dtype)
        if not key_lengths.all_ones:
            scores = scores + key_lengths.additive_matrix.to(scores.dtype)[:, None, None]
        k = min(self.topk, scores.shape[-1])
        raw = scores.detach().array
        xp = get_array_module(raw)
        # NOTE: the k-th largest score per row; everything below it is dropped (ties kept)
        kth = xp.partition(raw, raw.shape[-1] - k, axis=-1)[..., -k][..., None]
        from seqlib.core.creation import as_tensor

        scores = scores.masked_fill(as_tensor(raw < kth), float("-inf"))
        weights = self.dropout(F.softmax(scores * temperature, dim=-1))
        if self.event_dispatcher.listening:
            self.event_dispatcher.dispatch(AttentionEvent(self, weights))
        out = weights @ values.permute(0, 2, 1, 3)
        return out.permute(0, 2, 1, 3).contiguous()


AttentionRegistry.register(
    "exact-topk", ExactTopKAttention,
    [
        ("topk", Optional(PositiveInt, 32)),
        ("softmax_temp", Optional(Float)),
        ("attention_dropout", Optional(Float, 0.1)),
        ("event_dispatcher", Optional(EventDispatcherInstance, "")),
    ],
)
