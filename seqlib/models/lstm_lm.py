"""An LSTM language model with a step API for generation."""

from __future__ import annotations

from dataclasses import dataclass

from seqlib.core.losses import cross_entropy
from seqlib.core.tensor import Tensor
from seqlib.models.base import PretrainedModel
from seqlib.nn import init
from seqlib.nn.layers import Dropout, Embedding, Linear
from seqlib.nn.module import Module
from seqlib.nn.rnn import LSTM


@dataclass
class LSTMLMConfig:
    """Everything that defines an LSTMLM (saved as config.json)."""

    vocab_size: int
    embedding_dim: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.2
    tie_weights: bool = False  # needs embedding_dim == hidden_size


class LSTMLM(PretrainedModel):
    """Embedding + nn.LSTM + output head.

    Args:
        config: an LSTMLMConfig.
    Shape:
        ``tokens (N, L)`` int -> ``logits (N, L, vocab_size)``.
    """

    model_type = "lstm"
    config_class = LSTMLMConfig

    def __init__(self, config: LSTMLMConfig):
        super().__init__()
        self.config = config
        self.embedding = Embedding(config.vocab_size, config.embedding_dim)
        init.normal_(self.embedding.weight, 0.0, 0.1)
        self.lstm = LSTM(config.embedding_dim, config.hidden_size, config.num_layers,
                         batch_first=True,
                         dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.dropout = Dropout(config.dropout)
        self.head = Linear(config.hidden_size, config.vocab_size)
        if config.tie_weights:
            if config.embedding_dim != config.hidden_size:
                raise ValueError("tie_weights needs embedding_dim == hidden_size, got "
                                 f"{config.embedding_dim} and {config.hidden_size}")
            self.head.weight = self.embedding.weight

    def forward(self, tokens: Tensor, targets: Tensor | None = None, state=None):
        """``(logits, loss)`` (loss None without targets); ``state`` continues from a step."""
        if tokens.ndim != 2:
            raise ValueError(f"LSTMLM: tokens must be (N, L), got {tuple(tokens.shape)}")
        hidden, _ = self.lstm(self.dropout(self.embedding(tokens)), state)
        logits = self.head(self.dropout(hidden))
        loss = None
        if targets is not None:
            loss = cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def step(self, tokens: Tensor, state=None):
        """``tokens (N,)`` -> ``(logits (N, vocab_size), state)`` with state ``(h, c)``."""
        hidden, state = self.lstm(self.dropout(self.embedding(tokens[:, None])), state)
        return self.head(self.dropout(hidden[:, 0])), state

    def recurrent(self) -> Module:
        """The step-by-step twin (shares every parameter)."""
        return _LSTMStepper(self)


class _LSTMStepper(Module):
    def __init__(self, model: LSTMLM):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, state=None):
        return self.model.step(tokens, state)
