"""Full attention for short sequences, another attention for long ones."""

from __future__ import annotations

from seqlib.attention.full_attention import FullAttention
from seqlib.attention_registry import (
    AttentionInstance,
    AttentionRegistry,
    EventDispatcherInstance,
    Float,
    Int,
    Optional,
)
from seqlib.core.tensor import Tensor
from seqlib.events import EventDispatcher
from seqlib.nn.module import Module


class ConditionalFullAttention(Module):
    """Use full attention while L and S are at most ``length_limit``, else ``attention``.

    Built by ``"conditional-full:<other>"`` in the builders (e.g. ``"conditional-full:local"``).

    Args:
        attention: the attention for long sequences.
        length_limit: the longest sequence that gets full attention.
        softmax_temp, attention_dropout, event_dispatcher: for the full attention.
    """

    def __init__(self, attention: Module, length_limit: int = 512,
                 softmax_temp: float | None = None, attention_dropout: float = 0.1,
                 event_dispatcher=""):
        super().__init__()
        if attention is None:
            raise ValueError(
                "conditional-full needs the attention for long sequences; build it as "
                "'conditional-full:<attention type>'"
            )
        self.full_attention = FullAttention(softmax_temp, attention_dropout, event_dispatcher)
        self.other_attention = attention
        self.length_limit = length_limit
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask, query_lengths,
                key_lengths) -> Tensor:
        L, S = queries.shape[1], keys.shape[1]
        chosen = self.other_attention if max(L, S) > self.length_limit else self.full_attention
        return chosen(queries, keys, values, attn_mask, query_lengths, key_lengths)


AttentionRegistry.register(
    "conditional-full", ConditionalFullAttention,
    [
        ("length_limit", Optional(Int, 512)),
        ("softmax_temp", Optional(Float)),
        ("attention_dropout", Optional(Float, 0.1)),
        ("attention", AttentionInstance),
        ("event_dispatcher", Optional(EventDispatcherInstance, "")),
    ],
)
