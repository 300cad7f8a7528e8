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

from ._backend import check_same_device, get_array_module

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


def _chunk_states(left, right, start, reverse: bool, xp):
    """The state entering each chunk, ``S_n = start + sum_{m < n} left_m @ right_m`` (over
    ``m > n`` when ``reverse``), for ``left (B, n, D, C)`` and ``right (B, n, C, M)``; returns
    ``(S (B, n, D, M), final (B, D, M))``, ``final`` being the state after the last chunk.

    ``S`` is a view of a chunk-major ``(n, B, D, M)`` array: each chunk's product is written
    straight into the slot of the chunk after it, then the running sum is one contiguous
    in-place add per chunk (NumPy's cumsum along a middle axis is several times slower)."""
    n = left.shape[1]
    states = xp.empty((n, left.shape[0], left.shape[2], right.shape[-1]), left.dtype)
    S = states.transpose(1, 0, 2, 3)
    if reverse:
        xp.matmul(left[:, 1:], right[:, 1:], out=S[:, :-1])
        first, last, order, step = n - 1, 0, range(n - 2, -1, -1), 1
    else:
        xp.matmul(left[:, :-1], right[:, :-1], out=S[:, 1:])
        first, last, order, step = 0, n - 1, range(1, n), -1
    states[first] = 0 if start is None else start
    for i in order:
        states[i] += states[i + step]
    return S, S[:, last] + left[:, last] @ right[:, last]


def _chunk_size(L: int, chunk_size: int | None) -> int:
    C = DEFAULT_CHUNK if chunk_size is None else int(chunk_size)
    if C < 1:
        raise ValueError(f"causal_dot_product: chunk_size must be >= 1, got {chunk_size}")
    return max(1, min(C, L))


def _states(q, k, v, C, initial_state, xp):
    """``((Q, K, V, S, P, mask), final_state)``: the chunked operands, the state entering each
    chunk, the masked intra-chunk scores and the mask (what the backward pass needs)."""
    Q, K, V = _chunks(q, C, xp), _chunks(k, C, xp), _chunks(v, C, xp)
    # NOTE: a transposed view as the right operand halves batched-GEMM speed; copy those
    Kt = xp.ascontiguousarray(K.swapaxes(-1, -2))  # (B, n, D, C)
    S, final = _chunk_states(Kt, V, initial_state, False, xp)
    mask = xp.tril(xp.ones((C, C), q.dtype))
    P = Q @ Kt  # (B, n, C, C)
    P *= mask
    return (Q, K, V, S, P, mask), final


def _sum_of_products(a, b, c, d, out, L: int, xp):
    """``a @ b + c @ d`` over ``(B, n, C, *)`` chunks, returned as ``(B, L, X)``. Computed
    straight into ``out`` (a ``(B, L, X)`` view of the caller's result, or None) when L fills
    the chunks, else into scratch, which ``_run_blocks`` copies because it is not ``out``."""
    B, n, C = a.shape[:3]
    shape = (B, n, C, b.shape[-1])
    in_place = out is not None and n * C == L
    target = out.reshape(shape) if in_place else xp.empty(shape, a.dtype)
    xp.matmul(a, b, out=target)
    target += c @ d
    return out if in_place else target.reshape(B, n * C, -1)[:, :L]


def _forward_block(q, k, v, initial_state, C, outs=(None, None), keep: bool = False):
    """The forward pass on ``(B, L, *)`` blocks; returns ``(out (B, L, M), final (B, D, M))``
    and, if ``keep``, what the backward pass needs. ``outs``: where to write ``out`` (see
    ``_sum_of_products``)."""
    xp = get_array_module(q)
    states, final = _states(q, k, v, C, initial_state, xp)
    Q, _, V, S, P, _ = states
    out = _sum_of_products(Q, S, P, V, outs[0], q.shape[1], xp)
    return (out, final, states) if keep else (out, final)


def _backward_block(q, k, v, grad_out, initial_state, grad_final_state, C,
                    outs=(None,) * 4, states=None):
    """The backward pass on ``(B, L, *)`` blocks; returns ``(dq, dk, dv, d_initial_state)``.
    ``states`` from ``_forward_block(keep=True)`` saves recomputing them; ``outs`` as for
    ``_forward_block``."""
    xp = get_array_module(q)
    L = q.shape[1]
    if states is None:
        states = _states(q, k, v, C, initial_state, xp)[0]
    Q, K, V, S, P, mask = states
    dO = _chunks(grad_out, C, xp)
    # the gradient of the state entering each chunk: the later chunks' Q^T dO, summed
    dS, d_initial = _chunk_states(Q.swapaxes(-1, -2), dO, grad_final_state, True, xp)
    Vt, St, dSt = (xp.ascontiguousarray(x.swapaxes(-1, -2)) for x in (V, S, dS))
    dP = dO @ Vt  # (B, n, C, C)
    dP *= mask
    dQ = _sum_of_products(dO, St, dP, K, outs[0], L, xp)
    dK = _sum_of_products(V, dSt, dP.swapaxes(-1, -2), Q, outs[1], L, xp)
    dV = _sum_of_products(K, dS, P.swapaxes(-1, -2), dO, outs[2], L, xp)
    return dQ, dK, dV, d_initial


# ---- CUDA: a register-state scan for short sequences, three chunked kernels otherwise -------
# The scan runs each (n, h) serially over L in one block: least work, least parallelism. It
# wins only while launching the chunked kernels costs more than the serial steps (measured on
# an H100: benchmarks/results/causal_dot_product_paths_cuda.json).
SCAN_MAX_LENGTH = 8
MAX_CUDA_CHUNKS = 65535  # chunks are a grid dimension: L <= 64 * 65535 on the GPU


def _scan_dimension(dtype, *dims):
    """The smallest compiled register-state size that holds ``dims``, or None."""
    from .cuda_sources import SCAN_DIMENSIONS, type_name

    for size in SCAN_DIMENSIONS[type_name(dtype)]:
        if max(dims) <= size:
            return size
    return None


def _use_scan(xp, dtype, L: int, *dims) -> bool:
    return xp.__name__ == "cupy" and L <= SCAN_MAX_LENGTH and _scan_dimension(dtype, *dims)


def _scan(q, k, v, state, reverse: bool, transposed_state: bool = False):
    """The CUDA scan on ``(B, L, D), (B, L, D), (B, L, M)`` with an optional ``(B, D, M)``
    initial state (``(B, M, D)`` if ``transposed_state``); returns ``(out (B, L, M),
    final_state (B, D, M))``."""
    import cupy
    import numpy

    from .cuda_sources import get_kernel, type_name

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


def _cuda_states(k, v, state, reverse: bool, transposed_state: bool = False):
    """The state entering each chunk of 64 positions, ``(B, n_chunks, D, M)``, and the final
    state ``(B, D, M)``, for keys ``(B, L, D)`` and values ``(B, L, M)`` scanned backwards in
    time if ``reverse``, starting from ``state`` (``(B, D, M)``, or ``(B, M, D)`` if
    ``transposed_state``; None: zeros). Two kernels: each chunk's ``K^T V``, then their
    exclusive prefix sum in place."""
    import cupy
    import numpy

    from .cuda_sources import CHUNK, CHUNK_SLAB, get_kernel, type_name

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


def _cuda_output(q, k, v, states, reverse: bool, transposed_states: bool = False):
    """``out (B, L, M)`` from the chunk states of ``_cuda_states`` (for the same ``reverse``;
    ``transposed_states``: they were computed for the roles of the two dimensions swapped):
    ``Q S + tril(Q K^T) V`` per chunk, in one kernel."""
    import cupy
    import numpy

    from .cuda_sources import CHUNK_SLAB, get_kernel, type_name

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


def _cuda_forward(q, k, v, state):
    """``(out, final_state, saved)`` on the GPU; ``saved`` is the chunk states when the
    chunked kernels ran (the backward pass reuses them), else None."""
    L, D, M = q.shape[1], q.shape[2], v.shape[2]
    if _use_scan(get_array_module(q), q.dtype, L, D, M):
        return (*_scan(q, k, v, state, reverse=False), None)
    states, final = _cuda_states(k, v, state, reverse=False)
    return _cuda_output(q, k, v, states, reverse=False), final, states


def _cuda_backward(q, k, v, grad_out, state, grad_final, saved):
    """``(dq, dk, dv, d_initial_state)`` on the GPU, all ``(B, ...)``.

    Short sequences: three register scans (KERNELS.md). Otherwise one new prefix, ``dS``, the
    gradient of the state entering each chunk (from the chunks' ``Q^T dO``, backwards in time),
    then three chunk-output kernels: ``dq`` from the forward states (transposed), ``dk`` from
    ``dS`` transposed and ``dv`` from ``dS``."""
    L, D, M = q.shape[1], q.shape[2], v.shape[2]
    if _use_scan(get_array_module(q), q.dtype, L, D, M):
        dq, _ = _scan(grad_out, v, k, state, reverse=False, transposed_state=True)
        dk, _ = _scan(v, grad_out, q, grad_final, reverse=True, transposed_state=True)
        dv, d_state = _scan(k, q, grad_out, grad_final, reverse=True)
        return dq, dk, dv, d_state
    states = saved if saved is not None else _cuda_states(k, v, state, reverse=False)[0]
    d_states, d_state = _cuda_states(q, grad_out, grad_final, reverse=True)
    dq = _cuda_output(grad_out, v, k, states, reverse=False, transposed_states=True)
    dk = _cuda_output(v, grad_out, q, d_states, reverse=True, transposed_states=True)
    dv = _cuda_output(k, q, grad_out, d_states, reverse=True)
    return dq, dk, dv, d_state


_pool = None


def _threads() -> int:
    return min(os.cpu_count() or 1, 8)


def _slices(xp, N: int, H: int) -> list:
    """How the work is split across the thread pool: ``(batch slice, head slice)`` pairs,
    deterministic in ``(N, H)``. Heads when there are enough, else batch rows."""
    everything = [(slice(None), slice(None))]
    workers = _threads() if xp.__name__ == "numpy" else 1
    if workers < 2 or N * H < 2:
        return everything
    axis, size = (1, H) if H >= min(workers, N) else (0, N)
    bounds = [size * i // min(workers, size) for i in range(min(workers, size) + 1)]
    parts = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    return [(p, slice(None)) if axis == 0 else (slice(None), p) for p in parts]


def _rows(array):
    """``(n, h, *rest)`` -> ``(n * h, *rest)``: a copy when ``array`` is a permuted view (the
    attention layer's (N, L, H, D) seen as (N, H, L, D)), made by the worker that uses it."""
    return None if array is None else array.reshape(-1, *array.shape[2:])


def _row_view(array):
    """``array (n, h, L, X)`` as ``(n * h, L, X)`` with contiguous rows, without copying, or
    None where that takes a copy (a head slice of a batch of several)."""
    n, h, L, X = array.shape
    rows, item = array.strides[-2:]
    if array.strides[0] != h * array.strides[1] or rows != X * item or item != array.itemsize:
        return None
    return array.reshape(n * h, L, X)


def _run_blocks(function, arrays: list, optional: list, slices: list, outputs: list,
                extras=None) -> list:
    """Run ``function`` on ``(n*h, ...)`` row blocks of the ``(N, H, ...)`` ``arrays`` (and
    ``optional`` ones, which may be None) in a thread pool: NumPy releases the GIL inside
    matmul and copies, so the cores share the many small GEMMs and the layout copies.

    ``function`` gets ``outs=``, per output a ``(n*h, ...)`` view of the block's part of it
    (None where the part has no such view) to write its result into; the first
    ``len(outputs)`` results of each block that are not those views are copied into the
    ``(N, H, ...)`` ``outputs`` in the worker; the remaining results come back, one tuple per
    slice. ``extras`` gives one more argument per slice."""
    global _pool
    extras = [None] * len(slices) if extras is None else extras

    def call(where, extra):
        args = [_rows(a[where]) for a in arrays] + [
            None if o is None else _rows(o[where]) for o in optional]
        parts = [target[where] for target in outputs]
        views = [_row_view(part) for part in parts]
        if extra is not None:
            args.append(extra)
        results = function(*args, outs=views)
        for part, view, result in zip(parts, views, results):
            if result is not view:
                part[...] = result.reshape(part.shape)
        return results[len(outputs):]

    if len(slices) == 1:
        return [call(slices[0], extras[0])]
    if _pool is None:
        _pool = ThreadPoolExecutor(_threads(), thread_name_prefix="causal-product")
    return [f.result() for f in [_pool.submit(call, s, e) for s, e in zip(slices, extras)]]


def causal_dot_product(q, k, v, initial_state=None, return_final_state: bool = False,
                       chunk_size: int | None = None, keep_for_backward: bool = False):
    """The causal product of ``q, k, v``.

    Args:
        q, k: ``(N, H, L, D)``.
        v: ``(N, H, L, M)``.
        initial_state: optional ``(N, H, D, M)`` state carried in from earlier positions
            (``sum_j k_j^T v_j`` over them), to process a long sequence in pieces.
        return_final_state: also return the state after the last position.
        chunk_size: positions per chunk on the CPU (default 64). The GPU uses the register
            scan for short sequences and chunks of 64 otherwise, whatever is asked.
        keep_for_backward: also return an opaque ``saved`` object; passing it to
            ``causal_dot_product_backward(..., saved=saved)`` spares recomputing the states.
    Returns:
        ``out (N, H, L, M)``, then ``final_state (N, H, D, M)`` if asked for, then ``saved`` if
        asked for.
    """
    check_same_device("causal_dot_product", q=q, k=k, v=v, initial_state=initial_state)
    _check(q, k, v, "causal_dot_product")
    xp = get_array_module(q, k, v)
    N, H, L, D = q.shape
    M = v.shape[-1]
    _check_state(initial_state, (N, H, D, M), q.dtype, "initial_state")
    saved = None
    if L == 0:  # nothing to attend to: the state passes through unchanged
        out = xp.zeros((N, H, 0, M), q.dtype)
        final = xp.zeros((N, H, D, M), q.dtype) if initial_state is None else initial_state.copy()
    elif xp.__name__ == "cupy":
        out, final, saved = _cuda_forward(*(_rows(a) for a in (q, k, v)), _rows(initial_state))
        out, final = out.reshape(N, H, L, M), final.reshape(N, H, D, M)
        saved = saved if keep_for_backward else None
    else:
        C = _chunk_size(L, chunk_size)
        slices = _slices(xp, N, H)
        out, final = xp.empty((N, H, L, M), q.dtype), xp.empty((N, H, D, M), q.dtype)
        parts = _run_blocks(
            lambda q, k, v, s, outs: _forward_block(q, k, v, s, C, outs, keep_for_backward),
            [q, k, v], [initial_state], slices, [out, final])
        if keep_for_backward:
            saved = (C, slices, [p[0] for p in parts])
    results = (out,)
    if return_final_state:
        results += (final,)
    if keep_for_backward:
        results += (saved,)
    return results if len(results) > 1 else out


def _check_state(state, shape, dtype, name):
    if state is not None and (tuple(state.shape) != shape or state.dtype != dtype):
        raise ValueError(
            f"causal_dot_product: {name} must be {shape} of dtype {dtype}, got "
            f"{tuple(state.shape)} of dtype {state.dtype}"
        )


def causal_dot_product_backward(q, k, v, grad_out, initial_state=None, grad_final_state=None,
                                chunk_size: int | None = None, saved=None):
    """Gradients of ``causal_dot_product`` (recomputing what the forward pass built).

    Args:
        q, k, v, initial_state, chunk_size: as for the forward pass.
        grad_out: ``(N, H, L, M)``.
        grad_final_state: optional ``(N, H, D, M)`` gradient of the final state.
        saved: what ``causal_dot_product(..., keep_for_backward=True)`` returned, if any.
    Returns:
        ``(grad_q, grad_k, grad_v)``, plus ``grad_initial_state`` when ``initial_state`` or
        ``grad_final_state`` is given.
    """
    check_same_device("causal_dot_product_backward", q=q, k=k, v=v, grad_out=grad_out,
                      initial_state=initial_state, grad_final_state=grad_final_state)
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
    grad_out = grad_out.astype(q.dtype, copy=False)
    if xp.__name__ == "cupy":
        dq, dk, dv, d_state = _cuda_backward(*(_rows(a) for a in (
            q, k, v, grad_out, initial_state, grad_final_state)), saved)
        dq, dk, dv = (g.reshape(a.shape) for g, a in ((dq, q), (dk, k), (dv, v)))
        d_state = d_state.reshape(N, H, D, M)
    else:
        if saved is not None:
            C, slices, states = saved
        else:
            C, slices, states = _chunk_size(L, chunk_size), _slices(xp, N, H), None
        dq, dk, dv = (xp.empty(a.shape, q.dtype) for a in (q, k, v))
        d_state = xp.empty((N, H, D, M), q.dtype)
        _run_blocks(
            lambda q, k, v, g, s, gs, *st, outs: _backward_block(q, k, v, g, s, gs, C, outs, *st),
            [q, k, v, grad_out], [initial_state, grad_final_state], slices,
            [dq, dk, dv, d_state], states)
    return (dq, dk, dv, d_state) if with_state else (dq, dk, dv)
