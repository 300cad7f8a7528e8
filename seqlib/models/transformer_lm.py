"""A transformer language model and its recurrent twin for generation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from seqlib.attention_registry import RecurrentAttentionRegistry
from seqlib.builders import (
    RecurrentAttentionBuilder,
    RecurrentEncoderBuilder,
    TransformerEncoderBuilder,
)
from seqlib.core.losses import cross_entropy
from seqlib.core.masking import TriangularCausalMask
from seqlib.core.tensor import Tensor
from seqlib.models.base import PretrainedModel
from seqlib.models.positional import LearnedPositionalEncoding, SinusoidalPositionalEncoding
from seqlib.nn import init
from seqlib.nn.layers import Dropout, Embedding, Linear
from seqlib.nn.module import Module
from seqlib.recurrent import make_mirror


@dataclass
class TransformerLMConfig:
    """Everything that defines a TransformerLM (saved as config.json)."""

    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int | None = None  # default 4 * d_model
    dropout: float = 0.1
    attention_type: str = "causal-linear"
    positional_encoding: str = "sinusoidal"  # or "learned"
    max_length: int = 2048  # learned positions only
    tie_weights: bool = True
    activation: str = "gelu"
    attention_options: dict = field(default_factory=dict)  # e.g. {"local_context": 64}

    def builder_kwargs(self) -> dict:
        """The TransformerEncoderBuilder parameters this config describes."""
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        head = self.d_model // self.n_heads
        return dict(attention_type=self.attention_type, n_layers=self.n_layers,
                    n_heads=self.n_heads, query_dimensions=head, value_dimensions=head,
                    feed_forward_dimensions=self.d_ff or 4 * self.d_model, dropout=self.dropout,
                    activation=self.activation, **self.attention_options)


class TransformerLM(PretrainedModel):
    """Token embedding + positions + causal transformer encoder + final norm + output head.

    Args:
        config: a TransformerLMConfig.
    Shape:
        ``tokens (N, L)`` int -> ``logits (N, L, vocab_size)``.
    """

    model_type = "transformer"
    config_class = TransformerLMConfig

    def __init__(self, config: TransformerLMConfig):
        super().__init__()
        if config.positional_encoding not in ("sinusoidal", "learned"):
            raise ValueError("positional_encoding must be 'sinusoidal' or 'learned', got "
                             f"{config.positional_encoding!r}")
        self.config = config
        self.token_embedding = Embedding(config.vocab_size, config.d_model)
        init.normal_(self.token_embedding.weight, 0.0, 0.02)
        self.positions = (LearnedPositionalEncoding(config.max_length, config.d_model)
                          if config.positional_encoding == "learned"
                          else SinusoidalPositionalEncoding(config.d_model))
        self.dropout = Dropout(config.dropout)
        self.encoder = TransformerEncoderBuilder.from_kwargs(**config.builder_kwargs()).get()
        self.head = Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.token_embedding.weight

    def embed(self, tokens: Tensor, positions) -> Tensor:
        """Token embeddings plus positional encodings (``tokens`` ``(N, L)`` or ``(N,)``)."""
        x = self.token_embedding(tokens)
        if self.config.positional_encoding == "sinusoidal":
            x = x * math.sqrt(self.config.d_model)  # keeps tokens on the scale of the PE
        return x + self.positions(positions, device=x.device).to(x.dtype)

    def forward(self, tokens: Tensor, targets: Tensor | None = None):
        """``(logits, loss)``; ``loss`` is the mean next-token cross-entropy when ``targets``
        ``(N, L)`` are given, else None."""
        if tokens.ndim != 2:
            raise ValueError(f"TransformerLM: tokens must be (N, L), got {tuple(tokens.shape)}")
        L = tokens.shape[1]
        x = self.dropout(self.embed(tokens, range(L)))
        hidden = self.encoder(x, attn_mask=TriangularCausalMask(L, device=x.device))
        logits = self.head(hidden)
        loss = None
        if targets is not None:
            loss = cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def recurrent(self) -> RecurrentTransformerLM:
        """The twin that reads one token per call, sharing this model's parameters."""
        return RecurrentTransformerLM(self)

    def prefill(self, tokens: Tensor):
        """Read a prompt ``(N, P)`` in one parallel pass and return the recurrent twin's state
        after it (the twin continues at position P), without computing logits.

        Each layer's state is what the twin's attention makes of the keys and values the layer
        projects from its input (``state_from``: for linear attention ``[sum phi(k)^T v,
        sum phi(k)]``, for softmax attention the key/value cache). Only attentions with a
        recurrent twin ("linear", "causal-linear", "full", "causal-retention",
        "causal-gated-linear") have one.
        """
        attention_type = self.config.attention_type
        if attention_type not in RecurrentAttentionRegistry:
            raise ValueError(f"prefill: attention {attention_type!r} has no recurrent twin")
        twin = RecurrentAttentionBuilder.from_kwargs(
            strict=False, **self.config.builder_kwargs()).get(attention_type)
        N, P = tokens.shape
        x = self.dropout(self.embed(tokens, range(P)))
        mask = TriangularCausalMask(P, device=x.device)
        states = []
        for layer in self.encoder.layers:
            attention, H = layer.attention, layer.attention.n_heads
            make_mirror(attention.inner_attention, twin)  # this layer's own (a gate's) weights
            keys = attention.key_projection(x).view(N, P, H, -1)
            values = attention.value_projection(x).view(N, P, H, -1)
            states.append(twin.state_from(keys, values))
            x = layer(x, attn_mask=mask)
        return [P, states]


class RecurrentTransformerLM(Module):
    """One token per call with a constant-size state for linear attention.

    State: ``[position, encoder_state]`` (a plain list).
    """

    def __init__(self, parallel: TransformerLM):
        super().__init__()
        self.config = parallel.config
        self.token_embedding = parallel.token_embedding
        self.positions = parallel.positions
        self.dropout = parallel.dropout
        self.encoder = RecurrentEncoderBuilder.from_kwargs(
            **self.config.builder_kwargs()).get()
        make_mirror(parallel.encoder, self.encoder)
        self.head = parallel.head
        self.train(parallel.training)

    def forward(self, tokens: Tensor, state=None):
        """``tokens (N,)`` int -> ``(logits (N, vocab_size), state)``."""
        position = 0 if state is None else state[0]
        x = self.dropout(TransformerLM.embed(self, tokens, [position]))  # (N, d_model)
        hidden, encoder_state = self.encoder(x, None if state is None else state[1])
        return self.head(hidden), [position + 1, encoder_state]
