"""Causal dot product (unnormalised causal linear attention), chunked, on NumPy or CuPy.

.. math::
    O_i = \\sum_{j \\le i} (Q_i \\cdot K_j)\\, V_j

per batch element and head. Positions are cut into chunks of ``C``: inside a chunk a masked
``C x C`` product, across chunks a running ``D x M`` state from an exclusive prefix sum of
``K_n^T V_n`` (see ``shared/KERNELS.md``). Every line is one batched matmul over all heads and
chunks, so memory is O(L*C + (L/C)*D*M) per head and never O(L*D*M).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from kernels._backend import get_array_module

DEFAULT_CHUNK = 64


def _check(q, k, v, op: str):
    for name, array in (("q", q), ("k", k), ("v", v)):
        if array.ndim != 4:
            raise ValueError(f"{op}: {name} must be (N, H, L, D), got shape {array.shape}")
    if q.shape != k.shape:
        raise ValueError(f"{op}: q and k must have the same shape, got {q.shape} and {k.shape}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"{op}: v must be (N, H, L, M) with the N, H, L of q {q.shape[:3]}, got {v.shape}"
        )
    if not (q.dtype == k.dtype == v.dtype) or q.dtype.kind != "f":
        raise TypeError(
            f"{op}: q, k, v must share one float dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )


def _chunks(array, C: int, xp):
    """``(B, L, X)`` -> ``(B, n_chunks, C, X)``, zero-padding L up to a multiple of C."""
    B, L, X = array.shape
    pad = (-L) % C
    if pad:
        array = xp.concatenate([array, xp.zeros((B, pad, X), array.dtype)], axis=1)
    return xp.ascontiguousarray(array).reshape(B, (L + pad) // C, C, X)


def _prefix(u, xp, start=None, reverse: bool = False):
    """Exclusive prefix sums along the chunk axis: ``S_n = start + sum_{m < n} U_m`` (or over
    ``m > n`` when reversed). A loop of in-place adds: NumPy's cumsum along a middle axis is
    strided and several times slower."""
    n = u.shape[1]
    s = xp.empty_like(u)
    order = range(n - 1, -1, -1) if reverse else range(n)
    previous = None
    for i in order:
        if previous is None:
            if start is None:
                s[:, i] = 0
            else:
                s[:, i] = start
        else:
            xp.add(s[:, previous], u[:, previous], out=s[:, i])
        previous = i
    return s


def _chunk_size(L: int, chunk_size: int | None) -> int:
    C = DEFAULT_CHUNK if chunk_size is None else int(chunk_size)
    if C < 1:
        raise ValueError(f"causal_dot_product: chunk_size must be >= 1, got {chunk_size}")
    return max(1, min(C, L))


def _states(q, k, v, C, initial_state, xp):
    """Chunked operands, per-chunk states ``U``, the state ``S`` entering each chunk, the
    masked intra-chunk scores ``P`` and the mask."""
    Q, K, V = _chunks(q, C, xp), _chunks(k, C, xp), _chunks(v, C, xp)
    Kt = xp.ascontiguousarray(K.swapaxes(-1, -2))  # (B, n, D, C); GEMMs on views are slower
    U = Kt @ V  # (B, n, D, M): what each chunk adds to the state
    S = _prefix(U, xp, initial_state)
    mask = xp.tril(xp.ones((C, C), q.dtype))
    P = Q @ Kt  # (B, n, C, C)
    P *= mask
    return Q, K, V, U, S, P, mask


def _forward_block(q, k, v, initial_state, C):
    """The forward pass on ``(B, L, *)`` blocks; returns ``(out (B, L, M), final (B, D, M))``."""
    xp = get_array_module(q)
    L = q.shape[1]
    Q, K, V, U, S, P, _ = _states(q, k, v, C, initial_state, xp)
    O = Q @ S
    O += P @ V
    return O.reshape(O.shape[0], -1, O.shape[-1])[:, :L], S[:, -1] + U[:, -1]


def _backward_block(q, k, v, grad_out, initial_state, grad_final_state, C):
    """The backward pass on ``(B, L, *)`` blocks; returns ``(dq, dk, dv, d_initial_state)``."""
    xp = get_array_module(q)
    L = q.shape[1]
    Q, K, V, U, S, P, mask = _states(q, k, v, C, initial_state, xp)
    dO = _chunks(grad_out, C, xp)
    G = Q.swapaxes(-1, -2) @ dO  # (B, n, D, M)
    dS = _prefix(G, xp, grad_final_state, reverse=True)
    dP = dO @ V.swapaxes(-1, -2)  # (B, n, C, C)
    dP *= mask
    dQ = dO @ S.swapaxes(-1, -2)
    dQ += dP @ K
    dK = V @ dS.swapaxes(-1, -2)
    dK += dP.swapaxes(-1, -2) @ Q
    dV = K @ dS
    dV += P.swapaxes(-1, -2) @ dO
    grads = tuple(g.reshape(g.shape[0], -1, g.shape[-1])[:, :L] for g in (dQ, dK, dV))
    return (*grads, dS[:, 0] + G[:, 0])


# ---- CUDA: the register-state scan for moderate lengths and dimensions ------------------
SCAN_MAX_LENGTH = 2048  # longer sequences use the chunked algorithm on cuBLAS (tune on a GPU)


def _scan_dimension(dtype, *dims):
    """The smallest compiled register-state size that holds ``dims``, or None."""
    from kernels.cuda_sources import SCAN_DIMENSIONS, type_name

    for size in SCAN_DIMENSIONS[type_name(dtype)]:
        if max(dims) <= size:
            return size
    return None


def _use_scan(xp, dtype, L: int, *dims) -> bool:
    return xp.__name__ == "cupy" and L <= SCAN_MAX_LENGTH and _scan_dimension(dtype, *dims)


def _scan(q, k, v, state, reverse: bool):
    """The CUDA scan on ``(B, L, D), (B, L, D), (B, L, M)`` with an optional ``(B, D, M)``
    initial state; returns ``(out (B, L, M), final_state (B, D, M))``."""
    import cupy
    import numpy

    from kernels.cuda_sources import get_kernel, type_name

    B, L, D = q.shape
    M = v.shape[-1]
    name = f"causal_scan<{type_name(q.dtype)}, {_scan_dimension(q.dtype, D)}>"
    kernel = get_kernel("causal_product.cu", name)
    out = cupy.empty((B, L, M), q.dtype)
    final = cupy.empty((B, D, M), q.dtype)
    state = cupy.zeros((B, D, M), q.dtype) if state is None else cupy.ascontiguousarray(state)
    threads = min(128, 32 * -(-M // 32))
    arrays = [cupy.ascontiguousarray(a) for a in (q, k, v)]
    kernel((B, -(-M // threads)), (threads,),
           (*arrays, state, out, final, numpy.int32(L), numpy.int32(D), numpy.int32(M),
            numpy.int32(1 if reverse else 0)))
    return out, final


def _transposed(state):
    return None if state is None else state.swapaxes(-1, -2)


_pool = None


def _threads() -> int:
    return min(os.cpu_count() or 1, 8)


def _run_blocks(function, arrays: list, optional: list, B: int):
    """Run ``function`` on slices of the batch*heads axis in a thread pool (NumPy releases
    the GIL inside matmul, so the cores share the many small GEMMs), and join the results."""
    global _pool
    xp = get_array_module(*arrays)
    workers = _threads() if xp.__name__ == "numpy" else 1
    if workers < 2 or B < 2:
        return function(*arrays, *optional)
    if _pool is None:
        _pool = ThreadPoolExecutor(_threads(), thread_name_prefix="causal-product")
    bounds = [B * i // workers for i in range(workers + 1)]
    slices = [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    futures = [_pool.submit(function, *(a[s] for a in arrays),
                            *(None if o is None else o[s] for o in optional)) for s in slices]
    parts = [f.result() for f in futures]
    return tuple(xp.concatenate(pieces, axis=0) for pieces in zip(*parts))


def causal_dot_product(q, k, v, initial_state=None, return_final_state: bool = False,
                       chunk_size: int | None = None):
    """The causal product of ``q, k, v``.

    Args:
        q, k: ``(N, H, L, D)``.
        v: ``(N, H, L, M)``.
        initial_state: optional ``(N, H, D, M)`` state carried in from earlier positions
            (``sum_j k_j^T v_j`` over them), to process a long sequence in pieces.
        return_final_state: also return the state after the last position.
        chunk_size: positions per chunk (default 64).
    Returns:
        ``out (N, H, L, M)``, and ``final_state (N, H, D, M)`` if asked for.
    """
    _check(q, k, v, "causal_dot_product")
    xp = get_array_module(q, k, v)
    N, H, L, D = q.shape
    M = v.shape[-1]
    _check_state(initial_state, (N, H, D, M), q.dtype, "initial_state")
    if L == 0:
        out = xp.zeros((N, H, 0, M), q.dtype)
        state = xp.zeros((N, H, D, M), q.dtype) if initial_state is None else initial_state
        return (out, state.copy()) if return_final_state else out
    B = N * H
    flat = [a.reshape(B, L, -1) for a in (q, k, v)]
    start = None if initial_state is None else initial_state.reshape(B, D, M)
    if _use_scan(xp, q.dtype, L, D):
        out, final = _scan(*flat, start, reverse=False)
    else:
        C = _chunk_size(L, chunk_size)
        out, final = _run_blocks(lambda q, k, v, s: _forward_block(q, k, v, s, C), flat,
                                 [start], B)
    out = xp.ascontiguousarray(out).reshape(N, H, L, M)
    return (out, final.reshape(N, H, D, M)) if return_final_state else out


def _check_state(state, shape, dtype, name):
    if state is not None and (tuple(state.shape) != shape or state.dtype != dtype):
        raise ValueError(
            f"causal_dot_product: {name} must be {shape} of dtype {dtype}, got "
            f"{tuple(state.shape)} of dtype {state.dtype}"
        )


def causal_dot_product_backward(q, k, v, grad_out, initial_state=None, grad_final_state=None,
                                chunk_size: int | None = None):
    """Gradients of ``causal_dot_product`` (recomputing what the forward pass built).

    Args:
        q, k, v, initial_state, chunk_size: as for the forward pass.
        grad_out: ``(N, H, L, M)``.
        grad_final_state: optional ``(N, H, D, M)`` gradient of the final state.
    Returns:
        ``(grad_q, grad_k, grad_v)``, plus ``grad_initial_state`` when ``initial_state`` or
        ``grad_final_state`` is given.
    """
    _check(q, k, v, "causal_dot_product_backward")
    if grad_out.shape != v.shape:
        raise ValueError(
            f"causal_dot_product_backward: grad_out must have v's shape {v.shape}, got "
            f"{grad_out.shape}"
        )
    xp = get_array_module(q, k, v, grad_out)
    N, H, L, D = q.shape
    M = v.shape[-1]
    _check_state(initial_state, (N, H, D, M), q.dtype, "initial_state")
    _check_state(grad_final_state, (N, H, D, M), q.dtype, "grad_final_state")
    with_state = initial_state is not None or grad_final_state is not None
    if L == 0:
        zeros = (xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v))
        if not with_state:
            return zeros
        g = xp.zeros((N, H, D, M), q.dtype) if grad_final_state is None else grad_final_state
        return (*zeros, g.copy())
    B = N * H
    flat = [a.reshape(B, L, -1) for a in (q, k, v, grad_out.astype(q.dtype, copy=False))]
    optional = [None if s is None else s.reshape(B, D, M) for s in (initial_state,
                                                                   grad_final_state)]
    if _use_scan(xp, q.dtype, L, D, M):
        # one kernel, three scans: grad_q forward in time, grad_k and grad_v backward
        fq, fk, fv, fg = flat
        start, grad_final = optional
        dq, _ = _scan(fg, fv, fk, _transposed(start), reverse=False)
        dk, _ = _scan(fv, fg, fq, _transposed(grad_final), reverse=True)
        dv, d_state = _scan(fk, fq, fg, grad_final, reverse=True)
    else:
        C = _chunk_size(L, chunk_size)
        dq, dk, dv, d_state = _run_blocks(
            lambda q, k, v, g, s, gs: _backward_block(q, k, v, g, s, gs, C), flat, optional, B)
    grads = tuple(xp.ascontiguousarray(g).reshape(shape)
                  for g, shape in ((dq, q.shape), (dk, k.shape), (dv, v.shape)))
    return (*grads, d_state.reshape(N, H, D, M)) if with_state else grads
