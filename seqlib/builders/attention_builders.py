"""Builders of attention modules from their registries."""

from __future__ import annotations

from seqlib.attention_registry import (
    AttentionRegistry,
    RecurrentAttentionRegistry,
    RecurrentCrossAttentionRegistry,
)
from seqlib.builders.base import AttentionBuilderBase


class AttentionBuilder(AttentionBuilderBase):
    """Builds parallel attentions (``full``, ``linear``, ``causal-linear``, ...)."""

    def __init__(self):
        super().__init__(AttentionRegistry)


class RecurrentAttentionBuilder(AttentionBuilderBase):
    """Builds recurrent self-attentions."""

    def __init__(self):
        super().__init__(RecurrentAttentionRegistry)


class RecurrentCrossAttentionBuilder(AttentionBuilderBase):
    """Builds recurrent cross-attentions."""

    def __init__(self):
        super().__init__(RecurrentCrossAttentionRegistry)
