"""Local attention: query i attends only to keys j with -C//2 <= j - i < (C+1)//2, C the
local context, as fast-transformers' LocalAttention. Scores are computed only inside each
query's window, so memory is O(L * C), not O(L * S)."""

from __future__ import annotations

import math

import numpy

import core.functional as F
from core.tensor import Tensor
from seqlib.attention_registry import (
    AttentionRegistry,
    EventDispatcherInstance,
    Float,
    Int,
    Optional,
)
from seqlib.events import AttentionEvent, EventDispatcher
from seqlib.nn.layers import Dropout
from seqlib.nn.module import Module


def local_window(L: int, S: int, context: int):
    """``(positions (L, C), valid (L, C))``: the key index of every window slot, and whether
    it exists (inside ``[0, S)``)."""
    offsets = numpy.arange(context) - context // 2
    positions = numpy.arange(L)[:, None] + offsets[None, :]
    valid = (positions >= 0) & (positions < S)
    return numpy.clip(positions, 0, max(S - 1, 0)), valid


class LocalAttention(Module):
    """Softmax attention restricted to a band of ``local_context`` keys around each query.

    Args:
        local_context: the window size C.
        softmax_temp: the score scale (default ``1/sqrt(E)``).
        attention_dropout: dropout on the attention weights.
        event_dispatcher: receives an AttentionEvent ``(N, H, L, C)`` when listened to.
    Shape:
        queries ``(N, L, H, E)``, keys ``(N, S, H, E)``, values ``(N, S, H, M)`` ->
        ``(N, L, H, M)``.
    """

    def __init__(self, local_context: int, softmax_temp: float | None = None,
                 attention_dropout: float = 0.1, event_dispatcher=""):
        super().__init__()
        if local_context < 1:
            raise ValueError(f"local_context must be >= 1, got {local_context}")
        self.local_context = local_context
        self.softmax_temp = softmax_temp
        self.dropout = Dropout(attention_dropout)
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask, query_lengths,
                key_lengths) -> Tensor:
        N, L, H, E = queries.shape
        S = keys.shape[1]
        temperature = self.softmax_temp or 1.0 / math.sqrt(E)
        positions, valid = local_window(L, S, self.local_context)
        q = queries.permute(0, 2, 1, 3)[:, :, :, None]  # (N, H, L, 1, E)
        window_keys = keys.permute(0, 2, 1, 3)[:, :, positions]  # (N, H, L, C, E)
        scores = (q @ window_keys.transpose(-1, -2))[:, :, :, 0] * temperature  # (N, H, L, C)
        allowed = valid[None] & _gather_allowed(attn_mask, key_lengths, positions)
        scores = scores.masked_fill(_as_tensor(~allowed)[:, None], -1e24)
        weights = self.dropout(F.softmax(scores, dim=-1))
        if self.event_dispatcher.listening:
            self.event_dispatcher.dispatch(AttentionEvent(self, weights))
        window_values = values.permute(0, 2, 1, 3)[:, :, positions]  # (N, H, L, C, M)
        out = (weights[:, :, :, None] @ window_values)[:, :, :, 0]  # (N, H, L, M)
        return out.permute(0, 2, 1, 3).contiguous()


def _gather_allowed(attn_mask, key_lengths, positions):
    """``(N, L, C)``: the attention mask and key lengths read at every window slot."""
    rows = numpy.arange(positions.shape[0])[:, None]
    matrix = attn_mask.bool_matrix.numpy() if not attn_mask.all_ones else None
    allowed = numpy.ones((1,) + positions.shape, bool) if matrix is None else \
        matrix[rows, positions][None]
    if not key_lengths.all_ones:
        lengths = key_lengths.lengths.numpy()
        allowed = allowed & (positions[None] < lengths[:, None, None])
    return allowed


def _as_tensor(array):
    from core.creation import tensor

    return tensor(array)


AttentionRegistry.register(
    "local", LocalAttention,
    [
        ("local_context", Int),
        ("softmax_temp", Optional(Float)),
        ("attention_dropout", Optional(Float, 0.1)),
        ("event_dispatcher", Optional(EventDispatcherInstance, "")),
    ],
)
