"""The causal dot product on CuPy: a register-state scan for short sequences, three chunked
kernels otherwise (``kernels/cuda/causal_product.cu``).

The scan runs each (n, h) serially over L in one block: least work, least parallelism. It wins
only while launching the chunked kernels costs more than the serial steps (measured on an H100:
``benchmarks/results/causal_dot_product_paths_cuda.json``). The chunked kernels cut L into
chunks of 64 positions, as the CPU algorithm does (see this package's ``__init__``).
"""

from __future__ import annotations

import numpy

from .._backend import cupy
from ..cuda_sources import CHUNK, CHUNK_SLAB, SCAN_DIMENSIONS, get_kernel, type_name

SCAN_MAX_LENGTH = 8
MAX_CUDA_CHUNKS = 65535  # chunks are a grid dimension: L <= 64 * 65535 on the GPU


def _scan_dimension(dtype, *dims):
    """The smallest compiled register-state size that holds ``dims``, or None."""
    for size in SCAN_DIMENSIONS[type_name(dtype)]:
        if max(dims) <= size:
            return size
    return None


def _use_scan(dtype, L: int, *dims) -> bool:
    return L <= SCAN_MAX_LENGTH and _scan_dimension(dtype, *dims) is not None


def _scan(q, k, v, state, reverse: bool, transposed_state: bool = False):
    """The CUDA scan on ``(B, L, D), (B, L, D), (B, L, M)`` with an optional ``(B, D, M)``
    initial state (``(B, M, D)`` if ``transposed_state``); returns ``(out (B, L, M),
    final_state (B, D, M))``."""
    B, L, D = q.shape
    M = v.shape[-1]
    name = f"causal_scan<{type_name(q.dtype)}, {_scan_dimension(q.dtype, D)}>"
    kernel = get_kernel("causal_product.cu", name)
    out = cupy.empty((B, L, M), q.dtype)
    final = cupy.empty((B, D, M), q.dtype)
    if state is None:
        state = cupy.zeros((B, D, M), q.dtype)
    elif transposed_state:
        state = cupy.ascontiguousarray(state.swapaxes(-1, -2))
    else:
        state = cupy.ascontiguousarray(state)
    threads = min(128, 32 * -(-M // 32))
    arrays = [cupy.ascontiguousarray(a) for a in (q, k, v)]
    kernel((B, -(-M // threads)), (threads,),
           (*arrays, state, out, final, numpy.int32(L), numpy.int32(D), numpy.int32(M),
            numpy.int32(1 if reverse else 0)))
    return out, final


def _chunk_states(k, v, state, reverse: bool, transposed_state: bool = False):
    """The state entering each chunk of 64 positions, ``(B, n_chunks, D, M)``, and the final
    state ``(B, D, M)``, for keys ``(B, L, D)`` and values ``(B, L, M)`` scanned backwards in
    time if ``reverse``, starting from ``state`` (``(B, D, M)``, or ``(B, M, D)`` if
    ``transposed_state``; None: zeros). Two kernels: each chunk's ``K^T V``, then their
    exclusive prefix sum in place."""
    B, L, D = k.shape
    M = v.shape[-1]
    n = -(-L // CHUNK)
    if n > MAX_CUDA_CHUNKS:
        raise ValueError(f"causal_dot_product: L must be at most {CHUNK * MAX_CUDA_CHUNKS} on "
                         f"the GPU, got {L}")
    c_type = type_name(k.dtype)
    k, v = cupy.ascontiguousarray(k), cupy.ascontiguousarray(v)
    states = cupy.empty((B, n, D, M), k.dtype)
    final = cupy.empty((B, D, M), k.dtype)
    get_kernel("causal_product.cu", f"chunk_states<{c_type}, {CHUNK_SLAB[c_type]}>")(
        (B, n, -(-D // 64) * -(-M // 64)), (256,),
        (k, v, states, numpy.int32(L), numpy.int32(D), numpy.int32(M), numpy.int32(reverse)))
    mode = 0 if state is None else 2 if transposed_state else 1
    state = final if state is None else cupy.ascontiguousarray(state)  # (unread if None)
    get_kernel("causal_product.cu", f"chunk_prefix<{c_type}>")(
        (B, -(-D * M // 256)), (256,),
        (states, state, final, numpy.int32(n), numpy.int32(D), numpy.int32(M),
         numpy.int32(mode)))
    return states, final


def _chunk_output(q, k, v, states, reverse: bool, transposed_states: bool = False):
    """``out (B, L, M)`` from the chunk states of ``_chunk_states`` (for the same ``reverse``;
    ``transposed_states``: they were computed for the roles of the two dimensions swapped):
    ``Q S + tril(Q K^T) V`` per chunk, in one kernel."""
    B, L, D = q.shape
    M = v.shape[-1]
    c_type = type_name(q.dtype)
    q, k, v = (cupy.ascontiguousarray(a) for a in (q, k, v))
    out = cupy.empty((B, L, M), q.dtype)
    get_kernel("causal_product.cu", f"chunk_output<{c_type}, {CHUNK_SLAB[c_type]}>")(
        (B, states.shape[1], -(-M // 64)), (256,),
        (q, k, v, states, out, numpy.int32(L), numpy.int32(D), numpy.int32(M),
         numpy.int32(reverse), numpy.int32(transposed_states)))
    return out


def _rows(array):
    """``(N, H, *rest)`` -> ``(N * H, *rest)`` (a copy for a permuted view), or None."""
    return None if array is None else array.reshape(-1, *array.shape[2:])


def forward(q, k, v, initial_state, chunk: int | None, keep: bool):
    """``(out (N, H, L, M), final_state (N, H, D, M), saved)``; ``saved`` is the chunk states
    when ``keep`` and the chunked kernels ran (the backward pass reuses them), else None.
    ``chunk`` is ignored: the kernels' chunks are 64 positions."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    q, k, v, state = (_rows(a) for a in (q, k, v, initial_state))
    if _use_scan(q.dtype, L, D, M):
        (out, final), saved = _scan(q, k, v, state, reverse=False), None
    else:
        saved, final = _chunk_states(k, v, state, reverse=False)
        out = _chunk_output(q, k, v, saved, reverse=False)
    return out.reshape(N, H, L, M), final.reshape(N, H, D, M), saved if keep else None


def backward(q, k, v, grad_out, initial_state, grad_final_state, chunk: int | None, saved):
    """``(dq, dk, dv, d_initial_state)``, shaped as ``q, k, v, initial_state``.

    Short sequences: three register scans. The gradient of the forward scan is the same scan
    on other operands: ``dq`` is the forward scan of ``(dO, V, K)``, ``dk`` and ``dv`` are
    the scan run backwards in time on ``(V, dO, Q)`` and ``(K, Q, dO)``. Otherwise one new
    prefix, ``dS``, the gradient of the state entering each chunk (from the chunks' ``Q^T dO``,
    backwards in time), then three chunk-output kernels: ``dq`` from the forward states
    (transposed), ``dk`` from ``dS`` transposed and ``dv`` from ``dS``."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    shapes = (q.shape, k.shape, v.shape, (N, H, D, M))
    q, k, v, grad_out, state, grad_final = (
        _rows(a) for a in (q, k, v, grad_out, initial_state, grad_final_state))
    if _use_scan(q.dtype, L, D, M):
        dq, _ = _scan(grad_out, v, k, state, reverse=False, transposed_state=True)
        dk, _ = _scan(v, grad_out, q, grad_final, reverse=True, transposed_state=True)
        dv, d_state = _scan(k, q, grad_out, grad_final, reverse=True)
    else:
        states = saved if saved is not None else _chunk_states(k, v, state, reverse=False)[0]
        d_states, d_state = _chunk_states(q, grad_out, grad_final, reverse=True)
        dq = _chunk_output(grad_out, v, k, states, reverse=False, transposed_states=True)
        dk = _chunk_output(v, grad_out, q, d_states, reverse=True, transposed_states=True)
        dv = _chunk_output(k, q, grad_out, d_states, reverse=True)
    return tuple(g.reshape(shape) for g, shape in zip((dq, dk, dv, d_state), shapes))
