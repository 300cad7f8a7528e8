"""Neural-network building blocks, named and initialised as in PyTorch.

``seqlib.nn.functional`` is the functional API (``import seqlib.nn.functional as F``).
"""

from seqlib.nn import functional, init, utils
from seqlib.nn.activation import (
    ELU,
    GELU,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from seqlib.nn.containers import ModuleDict, ModuleList, Sequential
from seqlib.nn.layers import Dropout, Embedding, Identity, LayerNorm, Linear
from seqlib.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from seqlib.nn.module import Module
from seqlib.nn.parameter import Parameter
from seqlib.nn.rnn import LSTM, LSTMCell
