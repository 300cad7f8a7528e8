"""Array-level compute kernels (causal linear attention, LSTM) on NumPy and CuPy arrays.

Imports neither ``core`` nor ``seqlib``: kernels take and return plain arrays.
"""

from .causal_product import causal_dot_product, causal_dot_product_backward
from .lstm import LSTMCache, lstm_backward, lstm_forward
