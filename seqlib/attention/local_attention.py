"""Local attention: query i attends only to keys j with -C//2 <= j - i < (C+1)//2, C the
local context, as fast-transformers' LocalAttention. Memory is O(L * C), not O(L * S)."""

from __future__ import annotations

import math

import numpy

import seqlib.core.functional as F
from seqlib.attention_registry import (
    AttentionRegistry,
    EventDispatcherInstance,
    Float,
    Int,
    Optional,
)
from seqlib.core.ops.shape import cat
from seqlib.core.tensor import Tensor
from seqlib.events import AttentionEvent, EventDispatcher
from seqlib.nn.layers import Dropout
from seqlib.nn.module import Module


class LocalAttention(Module):
    """Softmax attention restricted to a band of ``local_context`` keys around each query.

    Queries are taken in blocks of C; a block can only reach the 2C keys starting C//2 before
    it, so each block is one ``(C x 2C)`` product with the band masked: batched GEMMs, memory
    O(L * C), and a backward pass without scatters.

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
        C = self.local_context
        blocks = -(-L // C)
        temperature = self.softmax_temp or 1.0 / math.sqrt(E)
        q = _pad_positions(queries.permute(0, 2, 1, 3), 0, blocks * C - L)  # (N, H, nb*C, E)
        q = q.view(N, H, blocks, C, E)
        k_window = _windows(keys.permute(0, 2, 1, 3), C, blocks)  # (N, H, nb, 2C, E)
        v_window = _windows(values.permute(0, 2, 1, 3), C, blocks)
        scores = (q * temperature) @ k_window.transpose(-1, -2)  # (N, H, nb, C, 2C)
        allowed = _allowed(attn_mask, key_lengths, L, S, C, blocks)  # (N or 1, nb, C, 2C)
        scores = scores.masked_fill(_as_tensor(~allowed, scores.device)[:, None], -1e24)
        weights = self.dropout(F.softmax(scores, dim=-1))
        if self.event_dispatcher.listening:
            self.event_dispatcher.dispatch(AttentionEvent(self, _band(weights, L, C)))
        out = (weights @ v_window).view(N, H, blocks * C, -1)[:, :, :L]  # (N, H, L, M)
        return out.permute(0, 2, 1, 3).contiguous()


def _pad_positions(x: Tensor, front: int, back: int) -> Tensor:
    """Zero-pad (or, for negative ``back``, crop) dim 2 of ``(N, H, S, E)``."""
    return F.pad(x, (0, 0, front, back))


def _windows(x: Tensor, C: int, blocks: int) -> Tensor:
    """``(N, H, S, E)`` -> ``(N, H, blocks, 2C, E)``: block b sees positions
    ``b*C - C//2 .. b*C - C//2 + 2C`` (zero outside the sequence)."""
    N, H, S, E = x.shape
    padded = _pad_positions(x, C // 2, (blocks + 1) * C - C // 2 - S)
    chunks = padded.view(N, H, blocks + 1, C, E)
    return cat([chunks[:, :, :-1], chunks[:, :, 1:]], dim=3)


def _allowed(attn_mask, key_lengths, L: int, S: int, C: int, blocks: int) -> numpy.ndarray:
    """Which (query, window slot) pairs may attend: inside the band, inside the sequence, and
    allowed by the attention mask and the key lengths."""
    row = numpy.arange(blocks)[:, None, None] * C + numpy.arange(C)[None, :, None]  # query
    column = row - numpy.arange(C)[None, :, None] + numpy.arange(2 * C)[None, None, :] - C // 2
    slot = column - row + C // 2  # 0 .. C-1 inside the band
    allowed = (slot >= 0) & (slot < C) & (column >= 0) & (column < S) & (row < L)
    allowed = allowed[None]
    clipped_row, clipped_column = numpy.minimum(row, L - 1), numpy.clip(column, 0, S - 1)
    if not attn_mask.all_ones:
        allowed = allowed & attn_mask.bool_matrix.cpu().numpy()[clipped_row, clipped_column][None]
    if not key_lengths.all_ones:
        lengths = key_lengths.lengths.cpu().numpy()[:, None, None, None]
        allowed = allowed & (clipped_column[None] < lengths)
    return allowed


def _band(weights: Tensor, L: int, C: int) -> Tensor:
    """The ``(N, H, L, C)`` window weights out of the block-wise ``(N, H, nb, C, 2C)`` ones."""
    N, H, blocks = weights.shape[:3]
    rows = numpy.arange(C)[:, None] + numpy.arange(C)[None, :]  # slot c of row i is i + c
    band = weights[:, :, :, numpy.arange(C)[:, None], rows]  # (N, H, nb, C, C)
    return band.reshape(N, H, blocks * C, C)[:, :, :L]


def _as_tensor(array, device):
    from seqlib.core.creation import tensor

    return tensor(array, device=device)


AttentionRegistry.register(
    "local", LocalAttention,
    [
        ("local_context", Int),
        ("softmax_temp", Optional(Float)),
        ("attention_dropout", Optional(Float, 0.1)),
        ("event_dispatcher", Optional(EventDispatcherInstance, "")),
    ],
)
