"""The decayed causal product on CuPy: ``chunked``'s algorithm on all (n, h) rows at once, so
each of its matmuls is one strided-batched cuBLAS GEMM over every head and chunk.

No custom kernel yet: one in the style of ``causal_product.cu`` (a register scan for short
sequences, fused chunk kernels) waits for a GPU to test it on. The Python loop over chunks
launches a few small kernels per chunk, so the cost grows with ``L / C``.
"""

from __future__ import annotations

from .._backend import cupy
from . import chunked


def _rows(array):
    """``(N, H, *rest)`` -> ``(N * H, *rest)`` (a copy for a permuted view), or None."""
    return None if array is None else array.reshape(-1, *array.shape[2:])


def _per_position(log_decay, N: int, L: int):
    """``(N * H, L)`` log decays from ``(N, H, L)`` or a per-head ``(H,)``."""
    if log_decay.ndim == 1:
        log_decay = cupy.broadcast_to(log_decay[None, :, None], (N, log_decay.shape[0], L))
    return _rows(log_decay)


def forward(q, k, v, log_decay, initial_state, chunk: int | None, keep: bool):
    """``(out (N, H, L, M), final_state (N, H, D, M), saved)``; ``saved`` is None unless
    ``keep``."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    out, final, saved = chunked.forward_block(
        *(_rows(a) for a in (q, k, v)), _per_position(log_decay, N, L), _rows(initial_state),
        chunked.chunk_size(L, chunk), log_decay.ndim == 1, keep)
    return out.reshape(N, H, L, M), final.reshape(N, H, D, M), saved


def backward(q, k, v, log_decay, grad_out, initial_state, grad_final_state, chunk: int | None,
             saved):
    """``(dq, dk, dv, d_log_decay (N, H, L), d_initial_state)``; ``saved`` from
    ``forward(keep=True)`` or None."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    dq, dk, dv, da, ds = chunked.backward_block(
        *(_rows(a) for a in (q, k, v)), _per_position(log_decay, N, L),
        *(_rows(a) for a in (grad_out, initial_state, grad_final_state)),
        chunked.chunk_size(L, chunk), log_decay.ndim == 1, saved)
    return (dq.reshape(N, H, L, D), dk.reshape(N, H, L, D), dv.reshape(N, H, L, M),
            da.reshape(N, H, L), ds.reshape(N, H, D, M))
