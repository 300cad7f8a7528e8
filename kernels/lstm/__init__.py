"""One LSTM layer in one direction over a whole sequence, forward and backward, on raw arrays.

Every argument and result is in PyTorch's layout (``torch.nn.LSTM``'s weights, gates
i, f, g, o); how the kernels store gates, scale them or mask padded steps is theirs alone
(``layout.py``, and each backend's file).

.. math::
    G_x = X W_{ih}^T + b_{ih} + b_{hh}  \\quad \\text{(one GEMM for all L steps)}

    a_t = G_x[t] + h_{t-1} W_{hh}^T, \\quad i, f, o = \\sigma(a_i, a_f, a_o), \\quad
    g = \\tanh(a_g)

    c_t = f c_{t-1} + i g, \\quad h_t = o \\tanh(c_t)

BPTT runs the steps backwards (``dc += dh o (1 - tanh(c)^2)``; ``di = dc g i (1 - i)``,
``df = dc c_{t-1} f (1 - f)``, ``dg = dc i (1 - g^2)``, ``do = dh tanh(c) o (1 - o)``;
``dc <- dc f``, ``dh <- da W_hh``), and the weight gradients are one GEMM each over all
steps. Steps at or past a sequence's length leave ``h, c`` unchanged, output zeros and take no
gradient; the reverse direction starts at each sequence's own end.

* ``lstm_layer`` / ``lstm_layer_backward``: the whole layer from ``x`` and the weights (what
  ``nn.LSTM`` runs).
* ``lstm_forward`` / ``lstm_backward``: the recurrence alone, from precomputed input
  projections ``x_proj = x W_ih^T + b_ih + b_hh``.

Each device has its own backend file; ``BACKENDS`` is the dispatch table.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._backend import check_same_device, device_kind, get_array_module
from . import cpu, cuda
from .layout import LSTMCache, run_recurrence, run_recurrence_backward, step_masks, swap_g_o


class Backend(NamedTuple):
    """One row of the dispatch table: a device's recurrence and its backward pass."""

    forward: Any  # (gates, w_hh, hs, cs, tanh_cs, masks) -> None, in place
    backward: Any  # (cache, grad_output, dh, dc, d_gates) -> (dh0, dc0)
    sigmoid_scale: float  # what the recurrence wants the i, f, o projections multiplied by


BACKENDS = {
    "cpu": Backend(cpu.forward, cpu.backward, cpu.SIGMOID_SCALE),
    "cuda": Backend(cuda.forward, cuda.backward, cuda.SIGMOID_SCALE),
}


class LSTMLayerResult(NamedTuple):
    """What ``lstm_layer`` returns."""

    output: Any  # (L, N, H), zero at padded steps
    h_n: Any  # (N, H)
    c_n: Any  # (N, H)
    saved: Any  # for lstm_layer_backward


class LSTMLayerGrads(NamedTuple):
    """What ``lstm_layer_backward`` returns: the gradients of ``lstm_layer``'s inputs (None
    for those not asked for or not given)."""

    x: Any
    w_ih: Any
    w_hh: Any
    b_ih: Any
    b_hh: Any
    h0: Any
    c0: Any


class LSTMResult(NamedTuple):
    """What ``lstm_forward`` returns."""

    output: Any  # (L, N, H), zero at padded steps
    h_n: Any  # (N, H)
    c_n: Any  # (N, H)
    cache: LSTMCache  # for lstm_backward


class LSTMGrads(NamedTuple):
    """What ``lstm_backward`` returns: the gradients of ``lstm_forward``'s inputs."""

    x_proj: Any  # (L, N, 4H)
    w_hh: Any  # (4H, H)
    h0: Any  # (N, H)
    c0: Any  # (N, H)


class _LayerSaved(NamedTuple):
    recurrence: LSTMCache
    inputs: Any  # (L*N, F), with a column of ones appended when there is a bias
    w_ih: Any  # (4H, F), gates i, f, o, g, unscaled
    x_shape: tuple
    has_bias: tuple  # (b_ih given, b_hh given)


# ---- the layer ------------------------------------------------------------------------------
def lstm_layer(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths=None,
               reverse: bool = False) -> LSTMLayerResult:
    """One LSTM layer in one direction, as ``torch.nn.LSTM`` computes it.

    Args:
        x: ``(L, N, F)`` inputs.
        w_ih: ``(4H, F)``; w_hh: ``(4H, H)``; b_ih, b_hh: ``(4H,)`` or None (gates i, f, g, o).
        h0, c0: ``(N, H)`` initial states.
        lengths: optional ``(N,)`` integer array on the inputs' device; steps
            ``t >= lengths[n]`` do not touch sequence n.
        reverse: run from the last step to the first (the backward direction of a BiLSTM).
    Returns:
        ``LSTMLayerResult(output (L, N, H), h_n (N, H), c_n (N, H), saved)``.
    """
    _check_layer(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths)
    backend = BACKENDS[device_kind(x, w_ih, w_hh)]
    xp = get_array_module(x)
    L, N, F = x.shape
    H = w_hh.shape[1]
    masks = step_masks(lengths, L, N, reverse, "lstm_layer")
    # NOTE: gate order and scale are folded into the small weight, and a column of ones puts
    # the bias inside the GEMM: each spares a pass over the (L, N, 4H) projections
    w_ih = swap_g_o(w_ih)
    inputs = x.reshape(L * N, F)
    bias = b_hh if b_ih is None else b_ih if b_hh is None else b_ih + b_hh
    if bias is not None:
        inputs = xp.concatenate([inputs, xp.ones((L * N, 1), x.dtype)], axis=1)
        weight = xp.concatenate([w_ih, swap_g_o(bias)[:, None]], axis=1)
    else:
        weight = w_ih.copy()
    if backend.sigmoid_scale != 1:
        weight[: 3 * H] *= backend.sigmoid_scale
    gates = (inputs @ weight.T).reshape(L, N, 4 * H)  # one GEMM for every step
    if reverse:
        gates = xp.ascontiguousarray(gates[::-1])
    output, h_n, c_n, cache = run_recurrence(backend, gates, swap_g_o(w_hh), h0, c0, masks,
                                             reverse)
    saved = _LayerSaved(cache, inputs, w_ih, x.shape, (b_ih is not None, b_hh is not None))
    return LSTMLayerResult(output, h_n, c_n, saved)


def lstm_layer_backward(grad_output, grad_h_n, grad_c_n, saved, *, input_grad: bool = True,
                        weight_grad: bool = True) -> LSTMLayerGrads:
    """Backpropagate through ``lstm_layer``.

    Args:
        grad_output: ``(L, N, H)`` gradient of the output.
        grad_h_n, grad_c_n: ``(N, H)`` gradients of the final states, or None.
        saved: ``lstm_layer(...).saved``.
        input_grad: compute the gradient of ``x`` (one GEMM).
        weight_grad: compute the gradients of ``w_ih`` and the biases (one GEMM).
    Returns:
        ``LSTMLayerGrads(x, w_ih, w_hh, b_ih, b_hh, h0, c0)`` in PyTorch's layout; None for a
        gradient not asked for or an input that was None.
    """
    cache = saved.recurrence
    _check_grads("lstm_layer_backward", cache, grad_output, grad_h_n, grad_c_n)
    d_gates, grad_w_hh, grad_h0, grad_c0 = run_recurrence_backward(cache, grad_output,
                                                                   grad_h_n, grad_c_n)
    L, N, F = saved.x_shape
    flat = d_gates.reshape(L * N, -1)  # (L*N, 4H)
    grad_x = (flat @ saved.w_ih).reshape(L, N, F) if input_grad else None
    grad_w_ih = grad_bias = None
    if weight_grad:  # the bias gradient is the column of ones'
        grad_weight = flat.T @ saved.inputs
        grad_w_ih = swap_g_o(grad_weight[:, :F])
        if any(saved.has_bias):
            grad_bias = swap_g_o(grad_weight[:, F])
    b_ih, b_hh = (grad_bias if given else None for given in saved.has_bias)
    return LSTMLayerGrads(grad_x, grad_w_ih, swap_g_o(grad_w_hh), b_ih, b_hh, grad_h0, grad_c0)


# ---- the recurrence alone ------------------------------------------------------------------
def lstm_forward(x_proj, w_hh, h0, c0, lengths=None, reverse: bool = False) -> LSTMResult:
    """Run the recurrence over all steps.

    Args:
        x_proj: ``(L, N, 4H)`` the input projections ``x @ W_ih^T + b_ih + b_hh`` of every
            step (gates i, f, g, o).
        w_hh: ``(4H, H)`` the recurrent weight.
        h0, c0: ``(N, H)`` initial states.
        lengths, reverse: as for ``lstm_layer``.
    Returns:
        ``LSTMResult(output (L, N, H), h_n (N, H), c_n (N, H), cache)``.
    """
    _check_recurrence(x_proj, w_hh, h0, c0, lengths)
    backend = BACKENDS[device_kind(x_proj, w_hh)]
    xp = get_array_module(x_proj)
    L, N, G = x_proj.shape
    H = G // 4
    masks = step_masks(lengths, L, N, reverse, "lstm_forward")
    source = x_proj[::-1] if reverse else x_proj
    gates = xp.empty((L, N, G), x_proj.dtype)  # in processing order, gates i, f, o, g, scaled
    scale = x_proj.dtype.type(backend.sigmoid_scale)
    for slot, block, factor in ((0, 0, scale), (1, 1, scale), (2, 3, scale), (3, 2, 1)):
        xp.multiply(source[:, :, block * H:(block + 1) * H], factor,
                    out=gates[:, :, slot * H:(slot + 1) * H])
    return LSTMResult(*run_recurrence(backend, gates, swap_g_o(w_hh), h0, c0, masks, reverse))


def lstm_backward(grad_output, grad_h_n, grad_c_n, cache: LSTMCache) -> LSTMGrads:
    """Backpropagate through ``lstm_forward``.

    Args:
        grad_output: ``(L, N, H)`` gradient of the outputs.
        grad_h_n, grad_c_n: ``(N, H)`` gradients of the final states, or None.
        cache: ``lstm_forward(...).cache``.
    Returns:
        ``LSTMGrads(x_proj (L, N, 4H), w_hh (4H, H), h0 (N, H), c0 (N, H))``, gates i, f, g, o.
    """
    _check_grads("lstm_backward", cache, grad_output, grad_h_n, grad_c_n)
    d_gates, grad_w_hh, grad_h0, grad_c0 = run_recurrence_backward(cache, grad_output,
                                                                   grad_h_n, grad_c_n)
    return LSTMGrads(swap_g_o(d_gates, axis=2), swap_g_o(grad_w_hh), grad_h0, grad_c0)


# ---- clear errors for inputs the recurrence would otherwise trip over deep inside NumPy ----
def _check_shapes(op: str, dtype, given: str, **named) -> None:
    """``named``: ``name=(array, expected shape)``, None arrays skipped; one float dtype.
    ``given``: what the expected shapes follow from, for the message."""
    for name, (array, shape) in named.items():
        if array is not None and tuple(array.shape) != shape:
            raise ValueError(f"{op}: {name} must be {shape} for {given}, got "
                             f"{tuple(array.shape)}")
    dtypes = [array.dtype for array, _ in named.values() if array is not None]
    if any(d != dtype for d in dtypes) or dtype.kind != "f":
        names = ", ".join(name for name, (a, _) in named.items() if a is not None)
        raise TypeError(f"{op}: {names} must share one float dtype, got "
                        + ", ".join(str(d) for d in dtypes))


def _check_layer(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths) -> None:
    check_same_device("lstm_layer", x=x, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, h0=h0,
                      c0=c0, lengths=lengths)
    if x.ndim != 3:
        raise ValueError(f"lstm_layer: x must be (L, N, F), got shape {x.shape}")
    if w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] != 4 * w_hh.shape[1]:
        raise ValueError(f"lstm_layer: w_hh must be (4H, H) with H >= 1, got shape "
                         f"{tuple(w_hh.shape)}")
    L, N, F = x.shape
    G, H = w_hh.shape
    given = f"x of shape {x.shape} and w_hh of shape {w_hh.shape}"
    _check_shapes("lstm_layer", x.dtype, given, x=(x, (L, N, F)), w_ih=(w_ih, (G, F)),
                  w_hh=(w_hh, (G, H)), b_ih=(b_ih, (G,)), b_hh=(b_hh, (G,)), h0=(h0, (N, H)),
                  c0=(c0, (N, H)))


def _check_recurrence(x_proj, w_hh, h0, c0, lengths) -> None:
    check_same_device("lstm_forward", x_proj=x_proj, w_hh=w_hh, h0=h0, c0=c0, lengths=lengths)
    if x_proj.ndim != 3 or x_proj.shape[2] == 0 or x_proj.shape[2] % 4:
        raise ValueError(f"lstm_forward: x_proj must be (L, N, 4H) with H >= 1, got shape "
                         f"{x_proj.shape}")
    L, N, G = x_proj.shape
    H = G // 4
    _check_shapes("lstm_forward", x_proj.dtype, f"x_proj of shape {x_proj.shape}",
                  x_proj=(x_proj, (L, N, G)), w_hh=(w_hh, (G, H)), h0=(h0, (N, H)),
                  c0=(c0, (N, H)))


def _check_grads(op: str, cache: LSTMCache, grad_output, grad_h_n, grad_c_n) -> None:
    check_same_device(op, grad_output=grad_output, grad_h_n=grad_h_n, grad_c_n=grad_c_n,
                      cache=cache.gates)
    L, N, G = cache.gates.shape
    H = G // 4
    for name, array, shape in (("grad_output", grad_output, (L, N, H)),
                               ("grad_h_n", grad_h_n, (N, H)), ("grad_c_n", grad_c_n, (N, H))):
        if array is not None and tuple(array.shape) != shape:
            raise ValueError(f"{op}: {name} must be {shape}, got {tuple(array.shape)}")
