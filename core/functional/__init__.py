"""Functional ops (``import seqlib.nn.functional as F``): fused Functions for the hot paths."""

from core.functional.activation import (
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    silu,
    softmax,
    tanh,
)
from core.functional.dropout import dropout
from core.functional.embedding import embedding, one_hot
from core.functional.linear import linear
from core.functional.normalization import layer_norm
from core.functional.pad import pad

__all__ = [
    "dropout", "elu", "embedding", "gelu", "layer_norm", "leaky_relu", "linear", "log_softmax",
    "one_hot", "pad", "relu", "sigmoid", "silu", "softmax", "tanh",
]
