"""Array-level compute kernels (causal linear attention, plain and decayed; LSTM) on NumPy and
CuPy arrays.

Each kernel is a package whose ``__init__`` holds its dispatch table (``BACKENDS``: one row per
device, each backend in its own file, ``cpu.py`` and ``cuda.py``) and its public entry points,
which check their inputs and return named tuples. ``threads`` sets how many worker threads the
CPU kernels use. Imports neither ``core`` nor ``seqlib``: kernels take and return plain arrays.
"""

from .causal_product import (
    CausalProductGrads,
    CausalProductResult,
    causal_dot_product,
    causal_dot_product_backward,
)
from .decayed_product import (
    DecayedProductGrads,
    DecayedProductResult,
    decayed_dot_product,
    decayed_dot_product_backward,
)
from .lstm import (
    LSTMCache,
    LSTMGrads,
    LSTMLayerGrads,
    LSTMLayerResult,
    LSTMResult,
    lstm_backward,
    lstm_forward,
    lstm_layer,
    lstm_layer_backward,
)
from .threads import get_num_threads, set_num_threads
