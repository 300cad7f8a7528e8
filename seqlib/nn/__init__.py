"""Neural-network building blocks, named and initialised as in PyTorch.

``seqlib.nn.functional`` is the functional API (``import seqlib.nn.functional as F``).
"""

from seqlib.core.missing import module_getattr as _module_getattr
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

# a PyTorch name this module lacks gets an AttributeError that says so (seqlib.core.missing)
__getattr__ = _module_getattr(__name__, "torch.nn")
