"""The causal dot product on NumPy: the chunked algorithm as batched matmuls, over worker threads.

Every line of the algorithm (see this package's ``__init__``) is one batched matmul over all
the heads and chunks of a block, so memory is O(L*C + (L/C)*D*M) per head and never O(L*D*M).
The ``(N, H)`` pairs are cut into blocks that run on the kernels' worker threads
(``kernels.threads``).
"""

from __future__ import annotations

import numpy

from .. import threads

DEFAULT_CHUNK = 64


def _chunks(array, C: int):
    """``(B, L, X)`` -> ``(B, n_chunks, C, X)``, zero-padding L up to a multiple of C."""
    B, L, X = array.shape
    pad = (-L) % C
    if pad:
        array = numpy.concatenate([array, numpy.zeros((B, pad, X), array.dtype)], axis=1)
    return numpy.ascontiguousarray(array).reshape(B, (L + pad) // C, C, X)


def _chunk_states(left, right, start, reverse: bool):
    """The state entering each chunk, ``S_n = start + sum_{m < n} left_m @ right_m`` (over
    ``m > n`` when ``reverse``), for ``left (B, n, D, C)`` and ``right (B, n, C, M)``; returns
    ``(S (B, n, D, M), final (B, D, M))``, ``final`` being the state after the last chunk.

    ``S`` is a view of a chunk-major ``(n, B, D, M)`` array: each chunk's product is written
    straight into the slot of the chunk after it, then the running sum is one contiguous
    in-place add per chunk (NumPy's cumsum along a middle axis is several times slower)."""
    n = left.shape[1]
    states = numpy.empty((n, left.shape[0], left.shape[2], right.shape[-1]), left.dtype)
    S = states.transpose(1, 0, 2, 3)
    if reverse:
        numpy.matmul(left[:, 1:], right[:, 1:], out=S[:, :-1])
        first, last, order, step = n - 1, 0, range(n - 2, -1, -1), 1
    else:
        numpy.matmul(left[:, :-1], right[:, :-1], out=S[:, 1:])
        first, last, order, step = 0, n - 1, range(1, n), -1
    states[first] = 0 if start is None else start
    for i in order:
        states[i] += states[i + step]
    return S, S[:, last] + left[:, last] @ right[:, last]


def chunk_size(L: int, requested: int | None) -> int:
    """The chunk size used for length ``L``: ``requested`` (default 64), at most ``L``."""
    return max(1, min(DEFAULT_CHUNK if requested is None else int(requested), L))


def _states(q, k, v, C, initial_state):
    """``(Q, K, V, S, P, mask), final_state``: the chunked operands, the state entering each
    chunk, the masked intra-chunk scores and the mask (what the backward pass needs)."""
    Q, K, V = _chunks(q, C), _chunks(k, C), _chunks(v, C)
    # NOTE: a transposed view as the right operand halves batched-GEMM speed; copy those
    Kt = numpy.ascontiguousarray(K.swapaxes(-1, -2))  # (B, n, D, C)
    S, final = _chunk_states(Kt, V, initial_state, False)
    mask = numpy.tril(numpy.ones((C, C), q.dtype))
    P = Q @ Kt  # (B, n, C, C)
    P *= mask
    return (Q, K, V, S, P, mask), final


def _sum_of_products(a, b, c, d, out, L: int):
    """``a @ b + c @ d`` over ``(B, n, C, *)`` chunks, returned as ``(B, L, X)``. Computed
    straight into ``out`` (a ``(B, L, X)`` view of the caller's result, or None) when L fills
    the chunks, else into scratch, which ``_run_blocks`` copies because it is not ``out``."""
    B, n, C = a.shape[:3]
    shape = (B, n, C, b.shape[-1])
    in_place = out is not None and n * C == L
    target = out.reshape(shape) if in_place else numpy.empty(shape, a.dtype)
    numpy.matmul(a, b, out=target)
    target += c @ d
    return out if in_place else target.reshape(B, n * C, -1)[:, :L]


def _forward_block(q, k, v, initial_state, C, keep: bool, outs):
    """The forward pass on ``(B, L, *)`` blocks; returns ``(out (B, L, M), final (B, D, M),
    states)``, ``states`` being what the backward pass needs if ``keep``, else None. ``outs``:
    where to write ``out`` (see ``_sum_of_products``)."""
    states, final = _states(q, k, v, C, initial_state)
    Q, _, V, S, P, _ = states
    out = _sum_of_products(Q, S, P, V, outs[0], q.shape[1])
    return out, final, states if keep else None


def _backward_block(q, k, v, grad_out, initial_state, grad_final_state, C, states, outs):
    """The backward pass on ``(B, L, *)`` blocks; returns ``(dq, dk, dv, d_initial_state)``.
    ``states`` from ``_forward_block(keep=True)`` saves recomputing them (None: recompute);
    ``outs`` as for ``_forward_block``."""
    L = q.shape[1]
    if states is None:
        states = _states(q, k, v, C, initial_state)[0]
    Q, K, V, S, P, mask = states
    dO = _chunks(grad_out, C)
    # the gradient of the state entering each chunk: the later chunks' Q^T dO, summed
    dS, d_initial = _chunk_states(Q.swapaxes(-1, -2), dO, grad_final_state, True)
    Vt, St, dSt = (numpy.ascontiguousarray(x.swapaxes(-1, -2)) for x in (V, S, dS))
    dP = dO @ Vt  # (B, n, C, C)
    dP *= mask
    dQ = _sum_of_products(dO, St, dP, K, outs[0], L)
    dK = _sum_of_products(V, dSt, dP.swapaxes(-1, -2), Q, outs[1], L)
    dV = _sum_of_products(K, dS, P.swapaxes(-1, -2), dO, outs[2], L)
    return dQ, dK, dV, d_initial


# ---- blocks of (n, h) rows on the worker threads -------------------------------------------
def _slices(N: int, H: int) -> list:
    """How the work is split across the worker threads: ``(batch slice, head slice)`` pairs,
    deterministic in ``(N, H)`` and the number of threads. Heads when there are enough, else
    batch rows."""
    everything = [(slice(None), slice(None))]
    workers = threads.get_num_threads()
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


def _run_blocks(function, arrays: list, slices: list, outputs: list, extras: list) -> list:
    """Run ``function`` on ``(n*h, ...)`` row blocks of the ``(N, H, ...)`` ``arrays`` (None
    stays None) on the worker threads.

    ``function`` gets the block's arrays, its entry of ``extras``, and ``outs``: per output a
    ``(n*h, ...)`` view of the block's part of it (None where the part has no such view) to
    write its result into; the first ``len(outputs)`` results of each block that are not those
    views are copied into the ``(N, H, ...)`` ``outputs`` in the worker; the remaining results
    come back, one tuple per slice."""

    def call(where, extra):
        args = [None if a is None else _rows(a[where]) for a in arrays]
        parts = [target[where] for target in outputs]
        views = [_row_view(part) for part in parts]
        results = function(*args, extra, outs=views)
        for part, view, result in zip(parts, views, results):
            if result is not view:
                part[...] = result.reshape(part.shape)
        return results[len(outputs):]

    return threads.run_all(call, list(zip(slices, extras)))


class Saved:
    """What the forward pass keeps for the backward pass: the chunk size, the blocks' slices
    and each block's states (computed for that split, so the backward pass reuses it)."""

    def __init__(self, C: int, slices: list, states: list):
        self.C, self.slices, self.states = C, slices, states


def forward(q, k, v, initial_state, chunk: int | None, keep: bool):
    """``(out (N, H, L, M), final_state (N, H, D, M), saved)``; ``saved`` is None unless
    ``keep``. Inputs as for ``causal_dot_product``, ``L >= 1``."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    C = chunk_size(L, chunk)
    slices = _slices(N, H)
    out, final = numpy.empty((N, H, L, M), q.dtype), numpy.empty((N, H, D, M), q.dtype)
    parts = _run_blocks(
        lambda q, k, v, s, _, outs: _forward_block(q, k, v, s, C, keep, outs),
        [q, k, v, initial_state], slices, [out, final], [None] * len(slices))
    return out, final, Saved(C, slices, [p[0] for p in parts]) if keep else None


def backward(q, k, v, grad_out, initial_state, grad_final_state, chunk: int | None, saved):
    """``(dq, dk, dv, d_initial_state)``, shaped as ``q, k, v, initial_state``; ``saved`` from
    ``forward(keep=True)`` or None."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    if saved is None:
        C, slices = chunk_size(L, chunk), _slices(N, H)
        states = [None] * len(slices)
    else:
        C, slices, states = saved.C, saved.slices, saved.states
    dq, dk, dv = (numpy.empty(a.shape, q.dtype) for a in (q, k, v))
    d_state = numpy.empty((N, H, D, M), q.dtype)
    _run_blocks(
        lambda q, k, v, g, s, gs, st, outs: _backward_block(q, k, v, g, s, gs, C, st, outs),
        [q, k, v, grad_out, initial_state, grad_final_state], slices, [dq, dk, dv, d_state],
        states)
    return dq, dk, dv, d_state
