"""The LSTM recurrence on NumPy: one GEMM into a hot scratch buffer and in-place gate math per
step, and BPTT that computes the local derivatives for blocks of steps at once.

The recurrence takes sigmoid(x) as 0.5 tanh(x / 2) + 0.5, so one tanh call serves all four
gates: it wants the i, f, o input projections already multiplied by ``SIGMOID_SCALE`` (the
layer folds that into the small input weight instead of a pass over ``(L, N, 4H)``). Gates are
i, f, o, g (``layout.py``).
"""

from __future__ import annotations

import numpy

from .layout import LSTMCache

SIGMOID_SCALE = 0.5


def forward(gates, w_hh, hs, cs, tanh_cs, masks) -> None:
    """The recurrence over all steps, in place: ``gates (L, N, 4H)`` holds the scaled input
    projections and receives the activated gates; ``hs, cs (L + 1, N, H)`` hold the initial
    states in row 0 and receive the states after each step, ``tanh_cs (L, N, H)`` their cells'
    tanh. ``w_hh (4H, H)``; ``masks (L, N, 1)`` or None (see ``layout.step_masks``)."""
    L, N, G = gates.shape
    H = G // 4
    # sigmoid(x) = 0.5 * tanh(0.5 x) + 0.5: the gate buffer holds x_proj with the inner 0.5
    # applied; fold it into W_hh once too, then each step adds h @ W_hh^T
    w_t = w_hh.T.copy()  # (H, 4H); a copy even when the transpose is contiguous (H = 1)
    w_t[:, : 3 * H] *= SIGMOID_SCALE
    product = numpy.empty((N, G), gates.dtype)
    scratch = numpy.empty((N, H), gates.dtype)
    for k in range(L):
        a = gates[k]
        numpy.matmul(hs[k], w_t, out=product)
        a += product
        numpy.tanh(a, out=a)
        sig = a[:, : 3 * H]
        sig *= 0.5
        sig += 0.5
        i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        c_new, h_new = cs[k + 1], hs[k + 1]
        numpy.multiply(f, cs[k], out=c_new)
        numpy.multiply(i, g, out=scratch)
        c_new += scratch
        numpy.tanh(c_new, out=tanh_cs[k])
        numpy.multiply(o, tanh_cs[k], out=h_new)
        if masks is not None:  # padded steps keep the previous state
            keep = ~masks[k]
            numpy.copyto(c_new, cs[k], where=keep)
            numpy.copyto(h_new, hs[k], where=keep)


# Steps per block of local derivatives: a block's factors (CHUNK * N * 4H floats) should stay
# in cache between being computed and being used, while a dozen calls per block stay cheap.
_CHUNK_BYTES = 1 << 19


def _local_derivatives(cache: LSTMCache, start: int = 0, stop: int | None = None,
                       out=None, through_cell=None):
    """Steps ``start:stop``'s local derivative factors, ``(k, N, 4, H)`` in gate slots i, f, o,
    g: what multiplies the cell gradient (i, f, g slots) or the hidden gradient (o slot) to give
    the gate's pre-activation gradient, plus ``o * (1 - tanh(c)^2)`` for the cell path. A dozen
    calls over a block of steps instead of a dozen per step, in blocks small enough to stay in
    cache (one pass over a whole 128 x 32 x 1024 sequence is memory-bound: ~10% slower)."""
    L, N, G = cache.gates.shape
    H = G // 4
    stop = L if stop is None else stop
    gates = cache.gates[start:stop].reshape(-1, N, 4, H)
    sig, g = gates[:, :, :3], gates[:, :, 3]
    tc = cache.tanh_cs[start:stop]
    factors = numpy.empty_like(gates) if out is None else out[: stop - start]
    numpy.subtract(1, sig, out=factors[:, :, :3])
    factors[:, :, :3] *= sig  # sigmoid' = s(1-s) for i, f, o
    factors[:, :, 0] *= g  # d i_pre = dc * g * i(1-i)
    factors[:, :, 1] *= cache.cs[start:stop]  # d f_pre = dc * c_prev * f(1-f)
    factors[:, :, 2] *= tc  # d o_pre = dh * tanh(c) * o(1-o)
    numpy.multiply(g, g, out=factors[:, :, 3])
    numpy.subtract(1, factors[:, :, 3], out=factors[:, :, 3])
    factors[:, :, 3] *= gates[:, :, 0]  # d g_pre = dc * i * (1-g^2)
    through = numpy.empty_like(tc) if through_cell is None else through_cell[: stop - start]
    numpy.multiply(tc, tc, out=through)  # dc += dh * o * (1 - tanh(c)^2)
    numpy.subtract(1, through, out=through)
    through *= gates[:, :, 2]
    return factors, through


def backward(cache: LSTMCache, grad_output, dh, dc, d_gates):
    """BPTT: fills ``d_gates (L, N, 4H)`` (processing order) step by step from
    ``grad_output`` (processing order) and the final states' gradients ``dh, dc``; returns the
    gradients of the initial states."""
    L, N, G = cache.gates.shape
    H = G // 4
    chunk = max(1, min(L, _CHUNK_BYTES // (N * G * cache.gates.itemsize)))
    factor_block = numpy.empty((chunk, N, 4, H), cache.gates.dtype)
    through_block = numpy.empty((chunk, N, H), cache.gates.dtype)
    forget = cache.gates.reshape(L, N, 4, H)[:, :, 1]
    masks = cache.masks
    dh_step = numpy.empty_like(dh)
    dc_total = numpy.empty_like(dc)
    carried_h = numpy.empty_like(dh)
    start = L
    for k in range(L - 1, -1, -1):
        if k < start:  # the next block of local derivatives, from its last step down
            start = max(0, k + 1 - chunk)
            factors, through_cell = _local_derivatives(cache, start, k + 1, factor_block,
                                                       through_block)
        j = k - start
        numpy.add(dh, grad_output[k], out=dh_step)
        if masks is not None:  # padded steps: no gradient into the cell
            dh_step *= masks[k]
        numpy.multiply(dh_step, through_cell[j], out=dc_total)
        dc_total += dc if masks is None else dc * masks[k]
        d = d_gates[k].reshape(N, 4, H)
        numpy.multiply(dc_total[:, None, :], factors[j], out=d)
        numpy.multiply(dh_step, factors[j, :, 2], out=d[:, 2])
        numpy.matmul(d_gates[k], cache.w_hh, out=carried_h)
        if masks is None:
            dc = dc_total * forget[k]
            dh, carried_h = carried_h, dh
        else:  # state gradients of padded rows pass straight through
            skip = ~masks[k]
            dc = dc_total * forget[k] + dc * skip
            dh = carried_h + dh * skip
            carried_h = numpy.empty_like(dh)
    return dh, dc
