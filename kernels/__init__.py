"""Array-level compute kernels (causal linear attention, LSTM) on NumPy and CuPy arrays.

Imports neither ``core`` nor ``seqlib``: kernels take and return plain arrays.
"""

from kernels.lstm import LSTMCache, lstm_backward, lstm_forward
