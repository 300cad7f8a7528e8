"""The decayed causal product on NumPy: ``chunked``'s algorithm on blocks of (n, h) rows, run
on the kernels' worker threads (``kernels.threads``) as the plain causal product's are."""

from __future__ import annotations

import numpy

from ..causal_product.cpu import Saved, _run_blocks, _slices
from . import chunked


def _per_position(log_decay, N: int, L: int):
    """``(N, H, L)`` log decays: a per-head ``(H,)`` one broadcast (a view), others as given."""
    if log_decay.ndim == 1:
        return numpy.broadcast_to(log_decay[None, :, None], (N, log_decay.shape[0], L))
    return log_decay


def forward(q, k, v, log_decay, initial_state, chunk: int | None, keep: bool):
    """``(out (N, H, L, M), final_state (N, H, D, M), saved)``; ``saved`` is None unless
    ``keep``. Inputs as for ``decayed_dot_product``, ``L >= 1``."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    C, per_head = chunked.chunk_size(L, chunk), log_decay.ndim == 1
    slices = _slices(N, H)
    out, final = numpy.empty((N, H, L, M), q.dtype), numpy.empty((N, H, D, M), q.dtype)
    parts = _run_blocks(
        lambda q, k, v, a, s, _, outs: chunked.forward_block(q, k, v, a, s, C, per_head, keep,
                                                             outs[0]),
        [q, k, v, _per_position(log_decay, N, L), initial_state], slices, [out, final],
        [None] * len(slices))
    return out, final, Saved(C, slices, [p[0] for p in parts]) if keep else None


def backward(q, k, v, log_decay, grad_out, initial_state, grad_final_state, chunk: int | None,
             saved):
    """``(dq, dk, dv, d_log_decay (N, H, L), d_initial_state)``; ``saved`` from
    ``forward(keep=True)`` or None."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    per_head = log_decay.ndim == 1
    if saved is None:
        C, slices = chunked.chunk_size(L, chunk), _slices(N, H)
        states = [None] * len(slices)
    else:
        C, slices, states = saved.C, saved.slices, saved.states
    dq, dk, dv = (numpy.empty(a.shape, q.dtype) for a in (q, k, v))
    d_log_decay = numpy.empty((N, H, L, 1), q.dtype)  # 4-D, as the blocks' outputs must be
    d_state = numpy.empty((N, H, D, M), q.dtype)
    _run_blocks(
        lambda q, k, v, a, g, s, gs, st, outs: chunked.backward_block(
            q, k, v, a, g, s, gs, C, per_head, st),
        [q, k, v, _per_position(log_decay, N, L), grad_out, initial_state, grad_final_state],
        slices, [dq, dk, dv, d_log_decay, d_state], states)
    return dq, dk, dv, d_log_decay[..., 0], d_state
