"""Positional encodings usable at any position, in parallel and one step at a time."""

from __future__ import annotations

import math

import numpy

from seqlib.core.creation import tensor
from seqlib.core.tensor import Tensor
from seqlib.nn import init
from seqlib.nn.layers import Embedding
from seqlib.nn.module import Module


class SinusoidalPositionalEncoding(Module):
    """``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(...)`` (Vaswani et al.),
    computed for any position: no maximum length, no parameters.

    Args:
        d_model: the feature size.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model

    def forward(self, positions, device=None) -> Tensor:
        """``positions``: ints ``(L,)`` -> float32 encodings ``(L, d_model)`` on ``device``
        (default the CPU)."""
        p = numpy.asarray(positions, dtype=numpy.float64)[:, None]
        rates = numpy.exp(-math.log(10000.0) * numpy.arange(0, self.d_model, 2) / self.d_model)
        table = numpy.zeros((p.shape[0], self.d_model))
        table[:, 0::2] = numpy.sin(p * rates)
        table[:, 1::2] = numpy.cos(p * rates)[:, : self.d_model // 2]
        return tensor(table, dtype="float32", device=device)


class LearnedPositionalEncoding(Module):
    """A trained embedding per position up to ``max_length``.

    Args:
        max_length: the number of positions.
        d_model: the feature size.
    """

    def __init__(self, max_length: int, d_model: int):
        super().__init__()
        self.max_length = max_length
        self.embedding = Embedding(max_length, d_model)
        init.normal_(self.embedding.weight, 0.0, 0.02)

    def forward(self, positions, device=None) -> Tensor:
        """``positions``: ints ``(L,)`` -> encodings ``(L, d_model)`` (on the weight's device;
        ``device`` is accepted for symmetry with the sinusoidal encoding)."""
        positions = numpy.asarray(positions)
        if positions.size and positions.max() >= self.max_length:
            raise ValueError(
                f"position {int(positions.max())} is beyond the learned positional encoding's "
                f"max_length {self.max_length}"
            )
        weight = self.embedding.weight
        return self.embedding(tensor(positions.astype(numpy.int64), device=weight.device))
