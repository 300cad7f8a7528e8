"""Functional ops (``import seqlib.nn.functional as F``): fused Functions for the hot paths."""

from .activation import (
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
from .dropout import dropout
from .embedding import embedding, one_hot
from .linear import linear
from .normalization import layer_norm
from .pad import pad

__all__ = [
    "dropout", "elu", "embedding", "gelu", "layer_norm", "leaky_relu", "linear", "log_softmax",
    "one_hot", "pad", "relu", "sigmoid", "silu", "softmax", "tanh",
]
