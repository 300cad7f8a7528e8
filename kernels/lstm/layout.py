"""The LSTM kernels' own layout, which only this package knows: gates as i, f, o, g, lengths
as per-step masks, and the recurrence's state arrays, shared by both backends.

PyTorch orders the gates i, f, g, o; the kernels keep i, f, o, g so that the three sigmoid gates
are one contiguous slice. Steps are stored in processing order (reversed for the backward
direction of a BiLSTM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._backend import get_array_module


def swap_g_o(array, axis: int = 0):
    """Swap the g and o gate blocks along ``axis``: PyTorch's i, f, g, o becomes the kernels'
    i, f, o, g, and back (the swap is its own inverse). Always a new array."""
    xp = get_array_module(array)
    i, f, g, o = xp.split(array, 4, axis=axis)
    return xp.concatenate([i, f, o, g], axis=axis)


def step_masks(lengths, L: int, N: int, reverse: bool, op: str):
    """``(L, N, 1)`` bool masks in processing order, True where a step is inside its sequence,
    or None if every sequence has all L steps. Checks ``lengths`` (one integer per sequence,
    ``0 <= length <= L``) on its own device, with a single two-number transfer to the host."""
    if lengths is None:
        return None
    if tuple(lengths.shape) != (N,) or lengths.dtype.kind not in "iu":
        raise ValueError(f"{op}: lengths must hold one integer per sequence, shape ({N},), got "
                         f"shape {tuple(lengths.shape)} and dtype {lengths.dtype}")
    if N == 0:
        return None
    xp = get_array_module(lengths)
    shortest, longest = xp.stack([lengths.min(), lengths.max()]).tolist()
    if shortest < 0 or longest > L:
        raise ValueError(f"{op}: lengths must be between 0 and the sequence length {L}, got "
                         f"{shortest}..{longest}")
    if shortest >= L:
        return None
    times = xp.arange(L)[::-1] if reverse else xp.arange(L)
    return (times[:, None] < lengths[None, :])[:, :, None]


@dataclass
class LSTMCache:
    """What the backward pass needs from the forward pass (all in processing order)."""

    backend: Any  # the dispatch table's row that ran the forward pass
    gates: Any  # (L, N, 4H) activated gates, i, f, o, g
    hs: Any  # (L + 1, N, H) hidden state before each step, and after the last
    cs: Any  # (L + 1, N, H) cell state likewise
    tanh_cs: Any  # (L, N, H) tanh of the new cell state of each step
    w_hh: Any  # (4H, H) recurrent weight, gates i, f, o, g
    masks: Any  # (L, N, 1) True where a step is inside its sequence, or None
    reverse: bool


def run_recurrence(backend, gates, w_hh, h0, c0, masks, reverse: bool):
    """Run ``backend``'s recurrence in ``gates`` (``(L, N, 4H)``: the input projections in
    processing order, gates i, f, o, g, pre-scaled by ``backend.sigmoid_scale``; overwritten
    with the activated gates) with ``w_hh`` ``(4H, H)`` in the same order.

    Returns:
        ``(output (L, N, H) in time order, zero at padded steps, h_n, c_n, cache)``.
    """
    xp = get_array_module(gates)
    L, N, G = gates.shape
    H = G // 4
    hs = xp.empty((L + 1, N, H), gates.dtype)
    cs = xp.empty((L + 1, N, H), gates.dtype)
    tanh_cs = xp.empty((L, N, H), gates.dtype)
    hs[0], cs[0] = h0, c0
    backend.forward(gates, w_hh, hs, cs, tanh_cs, masks)
    outputs = hs[1:] if masks is None else hs[1:] * masks
    if reverse:
        outputs = outputs[::-1]
    cache = LSTMCache(backend, gates, hs, cs, tanh_cs, w_hh, masks, reverse)
    return xp.ascontiguousarray(outputs), hs[L].copy(), cs[L].copy(), cache


def run_recurrence_backward(cache: LSTMCache, grad_output, grad_h_n, grad_c_n):
    """Backpropagate through ``run_recurrence``.

    Returns:
        ``(grad_gates (L, N, 4H) in time order, grad_w_hh (4H, H), grad_h0, grad_c0)``, gates
        i, f, o, g: the gradients of the unscaled input projections and of ``w_hh``.
    """
    xp = get_array_module(cache.gates)
    L, N, G = cache.gates.shape
    H = G // 4
    dtype = cache.gates.dtype
    grad_output = grad_output[::-1] if cache.reverse else grad_output
    dh = xp.zeros((N, H), dtype) if grad_h_n is None else grad_h_n.astype(dtype, copy=True)
    dc = xp.zeros((N, H), dtype) if grad_c_n is None else grad_c_n.astype(dtype, copy=True)
    d_gates = xp.empty((L, N, G), dtype)
    dh, dc = cache.backend.backward(cache, grad_output, dh, dc, d_gates)
    grad_w_hh = d_gates.reshape(L * N, G).T @ cache.hs[:L].reshape(L * N, H)
    if cache.reverse:
        d_gates = xp.ascontiguousarray(d_gates[::-1])
    return d_gates, grad_w_hh, dh, dc
