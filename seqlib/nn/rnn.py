"""LSTM and LSTMCell with PyTorch's arguments, shapes, parameter names and initialisation.

Each layer and direction runs as one autograd Function over the whole sequence, which hands
the weights in PyTorch's layout to ``kernels.lstm_layer`` / ``kernels.lstm_layer_backward``:
the input projection of every step as one GEMM, the recurrence and its backward pass.
"""

from __future__ import annotations

import math
import warnings

from seqlib import kernels
from seqlib.core.autograd.function import Function
from seqlib.core.creation import as_tensor, empty, zeros
from seqlib.core.functional import dropout
from seqlib.core.ops.shape import cat, stack
from seqlib.core.tensor import Tensor
from seqlib.nn import init
from seqlib.nn.module import Module
from seqlib.nn.parameter import Parameter


class LSTMLayer(Function):
    """One layer, one direction: ``(x, W_ih, W_hh, b_ih, b_hh, h0, c0) -> (y, h_n, c_n)``, all
    in PyTorch's layout; ``kernels.lstm_layer`` does the rest."""

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse):
        result = kernels.lstm_layer(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse)
        ctx.save_for_backward(x)  # checked for in-place changes even where unused
        ctx.kernel_saved = result.saved
        return result.output, result.h_n, result.c_n

    @staticmethod
    def backward(ctx, grad_output, grad_h_n, grad_c_n):
        (x,) = ctx.saved_tensors  # raises if x was modified in place since the forward pass
        need = ctx.needs_input_grad
        grads = kernels.lstm_layer_backward(grad_output, grad_h_n, grad_c_n, ctx.kernel_saved,
                                            input_grad=need[0],
                                            weight_grad=need[1] or need[3] or need[4])
        return (*grads, None, None)


def _lengths_array(lengths, device):
    """``lengths`` (a LengthMask, tensor, array or list) as an array on ``device``: a tensor
    already there stays there (the kernel checks the values where they are)."""
    if lengths is None:
        return None
    if hasattr(lengths, "lengths") and not isinstance(lengths, Tensor):  # a LengthMask
        lengths = lengths.lengths
    return as_tensor(lengths, device=device)._array


class LSTM(Module):
    """A multi-layer (optionally bidirectional) LSTM, as ``torch.nn.LSTM``.

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        num_layers: stacked layers.
        bias: use ``b_ih`` and ``b_hh``.
        batch_first: inputs and outputs are ``(N, L, *)`` instead of ``(L, N, *)``.
        dropout: dropout on the outputs of every layer but the last (training only).
        bidirectional: run a reverse direction too and concatenate.
        proj_size: must be 0 (projections are not supported).
        device, dtype: where and how to create the parameters.
    Shape:
        input ``(L, N, input_size)`` (or ``(N, L, ...)``, or unbatched ``(L, input_size)``);
        ``hx = (h_0, c_0)`` each ``(D * num_layers, N, hidden_size)``;
        output ``(L, N, D * hidden_size)``; ``h_n, c_n`` like ``h_0``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        if proj_size:
            raise NotImplementedError("LSTM: proj_size > 0 is not supported")
        if not 0 <= dropout <= 1:
            raise ValueError(f"dropout should be a number in range [0, 1], got {dropout}")
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(
                f"LSTM: hidden_size and num_layers must be positive, got {hidden_size} and "
                f"{num_layers}"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}", UserWarning, stacklevel=2)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.proj_size = bidirectional, proj_size
        directions = 2 if bidirectional else 1
        gates = 4 * hidden_size
        for layer in range(num_layers):
            features = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                names = _names(layer, suffix)
                setattr(self, names[0], Parameter(empty(gates, features, device=device,
                                                        dtype=dtype)))
                setattr(self, names[1], Parameter(empty(gates, hidden_size, device=device,
                                                        dtype=dtype)))
                if bias:
                    setattr(self, names[2], Parameter(empty(gates, device=device, dtype=dtype)))
                    setattr(self, names[3], Parameter(empty(gates, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``."""
        bound = 1 / math.sqrt(self.hidden_size)
        for param in self.parameters():
            init.uniform_(param, -bound, bound)

    def forward(self, input: Tensor, hx=None, lengths=None):
        """Run the LSTM.

        Args:
            input: ``(L, N, input_size)``, ``(N, L, input_size)`` if batch_first, or
                ``(L, input_size)`` unbatched.
            hx: optional ``(h_0, c_0)``.
            lengths: optional per-sequence lengths (tensor, list or LengthMask) for padded
                batches: steps past a sequence's end do not update its state, output zeros,
                and the reverse direction starts at each sequence's own end.
        Returns:
            ``output, (h_n, c_n)``.
        """
        unbatched = input.ndim == 2
        if input.ndim not in (2, 3):
            raise ValueError(f"LSTM: expected input with 2 or 3 dims, got shape {input.shape}")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.shape[-1]}"
            )
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first
                                                   else input)
        x = x.contiguous()
        steps, batch = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError(f"LSTM: input of shape {tuple(input.shape)} has no time steps; "
                             "expected a sequence length of at least 1 (as PyTorch)")
        directions = 2 if self.bidirectional else 1
        h0, c0 = self._initial_state(hx, batch, directions, unbatched, x)
        lengths = _lengths_array(lengths, x.device)
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(("", "_reverse")[:directions]):
                index = layer * directions + direction
                w_ih, w_hh, b_ih, b_hh = (getattr(self, n, None) for n in _names(layer, suffix))
                y, h_n, c_n = LSTMLayer.apply(x, w_ih, w_hh, b_ih, b_hh, h0[index], c0[index],
                                              lengths, direction == 1)
                outputs.append(y)
                finals_h.append(h_n)
                finals_c.append(c_n)
            x = cat(outputs, dim=2) if directions == 2 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = dropout(x, self.dropout, True)
        h_n, c_n = stack(finals_h), stack(finals_c)
        if unbatched:
            return x.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        return (x.transpose(0, 1) if self.batch_first else x), (h_n, c_n)

    def _initial_state(self, hx, batch, directions, unbatched, like):
        expected = (self.num_layers * directions, batch, self.hidden_size)
        if hx is None:
            zero = zeros(expected, dtype=like.dtype, device=like.device)
            return zero, zero
        h0, c0 = hx
        if unbatched:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        for name, state in (("hidden[0]", h0), ("hidden[1]", c0)):
            if tuple(state.shape) != expected:
                raise RuntimeError(
                    f"Expected {name} size {expected}, got {tuple(state.shape)[:]}"
                )
        return h0, c0

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text


def _names(layer: int, suffix: str) -> tuple:
    return tuple(f"{kind}_l{layer}{suffix}" for kind in ("weight_ih", "weight_hh", "bias_ih",
                                                          "bias_hh"))


class LSTMCell(Module):
    """One LSTM step, as ``torch.nn.LSTMCell``.

    Args:
        input_size: features of the input.
        hidden_size: features of the state.
        bias: use ``bias_ih`` and ``bias_hh``.
        device, dtype: where and how to create the parameters.
    Shape:
        input ``(N, input_size)`` or ``(input_size,)``; ``hx = (h, c)`` each
        ``(N, hidden_size)``; returns ``(h', c')``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gates = 4 * hidden_size
        self.weight_ih = Parameter(empty(gates, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(empty(gates, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty(gates, device=device, dtype=dtype))
            self.bias_hh = Parameter(empty(gates, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        bound = 1 / math.sqrt(hidden_size)
        for param in self.parameters():
            init.uniform_(param, -bound, bound)

    def forward(self, input: Tensor, hx=None):
        unbatched = input.ndim == 1
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"LSTMCell: expected input of shape (N, {self.input_size}) or "
                f"({self.input_size},), got {tuple(input.shape)}"
            )
        x = input.unsqueeze(0) if unbatched else input
        if hx is None:
            h = c = zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        else:
            h, c = (s.unsqueeze(0) for s in hx) if unbatched else hx
        for name, state in (("hx", h), ("cx", c)):
            if tuple(state.shape) != (x.shape[0], self.hidden_size):
                raise RuntimeError(
                    f"LSTMCell: expected {name} of shape {(x.shape[0], self.hidden_size)}, got "
                    f"{tuple(state.shape)}"
                )
        _, h_new, c_new = LSTMLayer.apply(x.unsqueeze(0), self.weight_ih, self.weight_hh,
                                          self.bias_ih, self.bias_hh, h, c, None, False)
        return (h_new.squeeze(0), c_new.squeeze(0)) if unbatched else (h_new, c_new)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
