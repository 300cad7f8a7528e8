"""The decayed causal product, chunked, on ``(B, L, *)`` rows of NumPy or CuPy arrays.

One body serves both backends (``xp`` is the rows' array module): every line of the algorithm
in this package's ``__init__`` is one batched matmul, a row scaling or an ``exp`` over all the
rows and chunks at once. ``cpu.py`` runs it on blocks of rows on the worker threads,
``cuda.py`` on all rows at once (cuBLAS's batched GEMMs).
"""

from __future__ import annotations

import numpy

from .._backend import get_array_module

DEFAULT_CHUNK = 64


def chunk_size(L: int, requested: int | None) -> int:
    """The chunk size used for length ``L``: ``requested`` (default 64), at most ``L`` (so the
    first chunk is always full)."""
    return max(1, min(DEFAULT_CHUNK if requested is None else int(requested), L))


def chunks(xp, array, C: int):
    """``(B, L, *rest)`` -> ``(B, n, C, *rest)``, zero-padding L up to a multiple of C (padded
    keys and values add nothing; a padded log decay of 0 decays nothing)."""
    B, L = array.shape[:2]
    pad = (-L) % C
    if pad:
        padding = xp.zeros((B, pad, *array.shape[2:]), array.dtype)
        array = xp.concatenate([array, padding], axis=1)
    return xp.ascontiguousarray(array).reshape(B, (L + pad) // C, C, *array.shape[2:])


def _transposed(array, column_scale=None):
    """The last two axes swapped, contiguous (a transposed view as a GEMM operand is slow),
    each column (an original row) times ``column_scale (..., C)`` if given: one pass."""
    xp = get_array_module(array)
    if column_scale is None:
        return xp.ascontiguousarray(array.swapaxes(-1, -2))
    *batch, rows, columns = array.shape
    out = xp.empty((*batch, columns, rows), array.dtype)
    return xp.multiply(array.swapaxes(-1, -2), column_scale[..., None, :], out=out)


def intra_weights(g):
    """``W[..., i, j] = exp(g_i - g_j)`` for ``j <= i`` and 0 above the diagonal, for
    ``g (..., C)`` -> ``(..., C, C)``.

    NOTE: the upper triangle is set to -inf *before* the exp: there ``g_i - g_j >= 0`` and can
    overflow, and ``inf * 0`` would be NaN. Below it every exponent is ``<= 0``."""
    xp = get_array_module(g)
    C = g.shape[-1]
    diff = g[..., :, None] - g[..., None, :]
    diff += xp.where(xp.tri(C, C, 0, dtype=bool), 0.0, -numpy.inf).astype(g.dtype)
    return xp.exp(diff, out=diff)


def chunk_states(left, right, decay, start, reverse: bool):
    """The state each chunk sees and the state after all of them, for ``left (B, n, X, C)``,
    ``right (B, n, C, M)`` and the chunks' decays ``decay (B, n)``.

    Passing chunk ``i`` (in order, or backwards when ``reverse``) maps a state ``R`` to
    ``decay_i R + left_i @ right_i``; the first chunk passed sees ``start`` (None: zeros).
    Returns ``(states (B, n, X, M), final (B, X, M))``, ``states[:, i]`` being what chunk ``i``
    sees (forward: the state before it; reverse: the gradient of the state after it)."""
    xp = get_array_module(left)
    B, n, X = left.shape[:3]
    M = right.shape[-1]
    products = xp.matmul(left, right)  # (B, n, X, M)
    states = xp.empty((n, B, X, M), left.dtype)  # chunk-major: each step writes one block
    order = list(range(n - 1, -1, -1) if reverse else range(n))
    states[order[0]] = 0 if start is None else start
    for before, i in zip(order, order[1:]):
        xp.multiply(states[before], decay[:, before, None, None], out=states[i])
        states[i] += products[:, before]
    last = order[-1]
    final = states[last] * decay[:, last, None, None]
    final += products[:, last]
    return states.transpose(1, 0, 2, 3), final


def _states(q, k, v, log_decay, initial_state, C: int, per_head: bool) -> tuple:
    """What the output and the backward pass are made of: ``(Q, K, V, g, W, S, P, final)``.

    ``g (B, n, C)``: the log decay accumulated from each chunk's start (``<= 0``); ``W``: the
    intra-chunk weights, computed once per row for a decay fixed per head (``per_head``: every
    chunk has the first one's), else per chunk; ``S``: the state entering each chunk; ``P``:
    the weighted intra-chunk scores; ``final``: the state after the sequence."""
    xp = get_array_module(q)
    Q, K, V = chunks(xp, q, C), chunks(xp, k, C), chunks(xp, v, C)
    g = xp.cumsum(chunks(xp, log_decay[..., None], C)[..., 0], axis=-1)  # (B, n, C)
    W = intra_weights(g[:, :1] if per_head else g)  # (B, 1 or n, C, C)
    to_end = xp.exp(g[..., -1:] - g)  # (B, n, C): the decay from each position to its chunk end
    S, final = chunk_states(_transposed(K, to_end), V, xp.exp(g[..., -1]), initial_state,
                            reverse=False)
    P = Q @ _transposed(K)  # (B, n, C, C)
    P *= W
    return Q, K, V, g, W, S, P, final


def _rows(chunked, L: int):
    """``(B, n, C, X)`` -> ``(B, L, X)``, dropping the padded positions."""
    B, n, C, X = chunked.shape
    return chunked.reshape(B, n * C, X)[:, :L]


def forward_block(q, k, v, log_decay, initial_state, C: int, per_head: bool, keep: bool,
                  out=None):
    """The forward pass on rows ``q, k (B, L, D)``, ``v (B, L, M)``, ``log_decay (B, L)``;
    returns ``(out (B, L, M), final (B, D, M), saved)``, ``saved`` being what
    ``backward_block`` needs if ``keep``, else None. ``out``: a ``(B, L, M)`` array to write
    the output into where L fills the chunks (then it is the one returned), or None."""
    xp = get_array_module(q)
    saved = _states(q, k, v, log_decay, initial_state, C, per_head)
    Q, _, V, g, _, S, P, final = saved
    B, n = Q.shape[:2]
    if out is None or n * C != q.shape[1]:
        out = None
        target = xp.empty((B, n, C, V.shape[-1]), q.dtype)
    else:
        target = out.reshape(B, n, C, -1)
    xp.matmul(Q, S, out=target)
    target *= xp.exp(g)[..., None]  # the state entering a chunk decays up to each position
    target += P @ V
    return (_rows(target, q.shape[1]) if out is None else out), final, saved if keep else None


def backward_block(q, k, v, log_decay, grad_out, initial_state, grad_final_state, C: int,
                   per_head: bool, saved):
    """The backward pass on rows; returns ``(dq, dk, dv, d_log_decay (B, L), d_initial
    (B, D, M))``. ``saved`` from ``forward_block(keep=True)`` (None: recomputed)."""
    xp = get_array_module(q)
    L = q.shape[1]
    if saved is None:
        saved = _states(q, k, v, log_decay, initial_state, C, per_head)
    Q, K, V, g, W, S, P, final = saved
    dO = chunks(xp, grad_out, C)
    from_start, to_end = xp.exp(g)[..., None], xp.exp(g[..., -1:] - g)[..., None]
    # R[:, n]: the gradient of the state after chunk n, from the later chunks' outputs
    R, d_initial = chunk_states(_transposed(Q, from_start[..., 0]), dO, xp.exp(g[..., -1]),
                                grad_final_state, reverse=True)
    dP = dO @ _transposed(V)  # (B, n, C, C)
    dP *= W
    dQ = dO @ _transposed(S)
    dQ *= from_start
    dQ += dP @ K
    dK = V @ _transposed(R)
    dK *= to_end
    dK += dP.swapaxes(-1, -2) @ Q
    dV = (K * to_end) @ R
    dV += P.swapaxes(-1, -2) @ dO
    d_log_decay = _log_decay_gradient(Q, K, dQ, dK, final, grad_final_state, L)
    return _rows(dQ, L), _rows(dK, L), _rows(dV, L), d_log_decay, d_initial


def _log_decay_gradient(Q, K, dQ, dK, final, grad_final_state, L: int):
    """``d a_t = sum_{s >= t} (q_s . dq_s - k_s . dk_s)``, plus ``<dS_fin, S_fin>`` for every t
    (the final state carries every decay); ``(B, L)``.

    Every term of ``out_i`` carries ``exp(b_i)`` and every term that ``k_j`` enters carries
    ``exp(-b_j)`` (``b`` the accumulated log decay), so ``dL/db_t = q_t . dq_t - k_t . dk_t``;
    ``b_s`` sums ``a_t`` over ``t <= s``, hence the reverse cumulative sum, taken in float64
    (the terms cancel over long sequences)."""
    xp = get_array_module(Q)
    db = xp.einsum("bncd,bncd->bnc", Q, dQ)
    db -= xp.einsum("bncd,bncd->bnc", K, dK)
    db = db.reshape(db.shape[0], -1)[:, :L].astype(numpy.float64)
    d_log_decay = xp.cumsum(db[:, ::-1], axis=1)[:, ::-1]
    if grad_final_state is not None:
        d_log_decay += xp.einsum("bdm,bdm->b", grad_final_state, final)[:, None]
    return d_log_decay.astype(Q.dtype)
