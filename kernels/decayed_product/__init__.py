"""Decayed causal dot product (retention, gated linear attention) on NumPy or CuPy arrays.

Per batch element and head, with a log decay ``a_t <= 0`` per position (the decay
``alpha_t = exp(a_t)``: a gate, or RetNet's fixed ``gamma`` of the head):

.. math::
    S_t = \\alpha_t S_{t-1} + K_t^T V_t, \\qquad O_t = Q_t S_t, \\qquad\\text{i.e.}\\qquad
    O_i = \\sum_{j \\le i} e^{b_i - b_j} (Q_i \\cdot K_j)\\, V_j + e^{b_i} Q_i S_{init},
    \\quad b_t = \\sum_{s \\le t} a_s

for ``Q, K (L, D)``, ``V (L, M)`` and an optional state ``S_init (D, M)`` carried in. With all
``a_t = 0`` it is ``causal_product``.

Both backends cut the positions into chunks of ``C`` (L padded with zero rows and zero log
decays). Nothing is ever measured from the start of the sequence: ``g`` is the log decay
accumulated from the start of its chunk (``g_c = sum_{s <= c} a_s`` within the chunk, so
``0 >= g_0 >= ... >= g_{C-1} = G``), and every exponent below is ``<= 0``, so no length or
decay overflows, and a contribution underflows only where it is below the dtype's range::

    W_n     = exp(g_i - g_j) for j <= i, 0 above      (C x C)  (-inf above before the exp)
    P_n     = (Q_n K_n^T) * W_n                       (C x C)
    U_n     = (K_n * exp(G_n - g))^T V_n              (D x M)  rows scaled to the chunk end
    S_0     = S_init;   S_{n+1} = exp(G_n) S_n + U_n           the state entering each chunk
    O_n     = exp(g) * (Q_n S_n) + P_n V_n            (C x M)  rows scaled from the start
    S_fin   = S_{last+1}

and backwards, given ``dO`` and ``dS_fin`` (zero if the final state is unused), with ``R_n`` the
gradient of the state after chunk ``n``::

    R_last  = dS_fin;   R_{n-1} = exp(G_n) R_n + (Q_n * exp(g))^T dO_n
    dP_n    = (dO_n V_n^T) * W_n
    dQ_n    = exp(g) * (dO_n S_n^T) + dP_n K_n
    dK_n    = exp(G_n - g) * (V_n R_n^T) + dP_n^T Q_n
    dV_n    = (K_n * exp(G_n - g)) R_n + P_n^T dO_n
    dS_init = R_{-1}
    da_t    = sum_{s >= t} (Q_s . dQ_s - K_s . dK_s) + <dS_fin, S_fin>

(every term of ``O_i`` carries ``exp(b_i)``, every term ``K_j`` enters ``exp(-b_j)``, and
``S_fin`` ``exp(b_last)``: that gives ``dL/db_t``; ``b_s`` sums ``a_t`` over ``t <= s``, hence
the reverse cumulative sum). The gradient of a per-head decay sums these over batch and
positions. Cost over ``causal_product``: the ``C x C`` exps of ``W`` (once per head for a
per-head decay), row scalings, and the chunk scan multiplies by a decay.

Each device has its own backend file; ``BACKENDS`` is the dispatch table. Both run the one
chunked algorithm of ``chunked.py`` (the GPU's through cuBLAS batched GEMMs).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._backend import check_same_device, device_kind, get_array_module
from . import cpu, cuda


class Backend(NamedTuple):
    """One row of the dispatch table: a device's forward and backward pass."""

    forward: Any  # (q, k, v, log_decay, initial_state, chunk, keep) -> (out, final, saved)
    backward: Any  # (q, k, v, log_decay, grad_out, state, grad_final, chunk, saved)
    #               -> (dq, dk, dv, d_log_decay (N, H, L), d_state)


BACKENDS = {
    "cpu": Backend(cpu.forward, cpu.backward),
    "cuda": Backend(cuda.forward, cuda.backward),
}


class DecayedProductResult(NamedTuple):
    """What ``decayed_dot_product`` returns."""

    out: Any  # (N, H, L, M)
    state: Any  # (N, H, D, M): the state after the last position, to continue from
    saved: Any  # for decayed_dot_product_backward(saved=...) if keep_for_backward, else None


class DecayedProductGrads(NamedTuple):
    """What ``decayed_dot_product_backward`` returns: the gradients of its inputs."""

    q: Any  # (N, H, L, D)
    k: Any  # (N, H, L, D)
    v: Any  # (N, H, L, M)
    log_decay: Any  # (N, H, L), or (H,) for a per-head decay
    state: Any  # (N, H, D, M): of the initial state (zeros' gradient when none was given)


def _check(op: str, q, k, v, log_decay, states: dict):
    for name, array in (("q", q), ("k", k), ("v", v)):
        if array.ndim != 4:
            raise ValueError(f"{op}: {name} must be (N, H, L, D), got shape {array.shape}")
    if q.shape != k.shape:
        raise ValueError(f"{op}: q and k must have the same shape, got {q.shape} and {k.shape}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"{op}: v must be (N, H, L, M) with the N, H, L of q {q.shape[:3]}, got {v.shape}")
    dtypes = [a.dtype for a in (q, k, v, log_decay)]
    if len(set(dtypes)) != 1 or q.dtype.kind != "f":
        raise TypeError(f"{op}: q, k, v, log_decay must share one float dtype, got "
                        f"{', '.join(map(str, dtypes))}")
    N, H, L, D = q.shape
    if tuple(log_decay.shape) not in ((N, H, L), (H,)):
        raise ValueError(f"{op}: log_decay must be (N, H, L) = {(N, H, L)} (per position) or "
                         f"(H,) = {(H,)} (per head), got {tuple(log_decay.shape)}")
    shape = (N, H, D, v.shape[-1])
    for name, state in states.items():
        if state is not None and (tuple(state.shape) != shape or state.dtype != q.dtype):
            raise ValueError(f"{op}: {name} must be {shape} of dtype {q.dtype}, got "
                             f"{tuple(state.shape)} of dtype {state.dtype}")


def _check_chunk_size(chunk_size, op: str):
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"{op}: chunk_size must be >= 1, got {chunk_size}")


def decayed_dot_product(q, k, v, log_decay, initial_state=None, *,
                        chunk_size: int | None = None,
                        keep_for_backward: bool = False) -> DecayedProductResult:
    """The decayed causal product of ``q, k, v``: ``S_t = exp(a_t) S_{t-1} + k_t^T v_t``,
    ``out_t = q_t S_t``.

    Args:
        q, k: ``(N, H, L, D)``.
        v: ``(N, H, L, M)``.
        log_decay: ``a``, the log of the decay, ``(N, H, L)`` per position (a gate) or
            ``(H,)`` one per head (RetNet's ``log gamma``); finite, and ``<= 0`` for the
            no-overflow guarantee (positive values work while ``exp(C a)`` stays finite).
        initial_state: optional ``(N, H, D, M)`` state carried in from earlier positions.
        chunk_size: positions per chunk (default 64; on every device).
        keep_for_backward: also keep what ``decayed_dot_product_backward(..., saved=...)``
            would otherwise recompute, in ``saved``.
    Returns:
        ``DecayedProductResult(out (N, H, L, M), state (N, H, D, M), saved)``.
    """
    op = "decayed_dot_product"
    check_same_device(op, q=q, k=k, v=v, log_decay=log_decay, initial_state=initial_state)
    _check(op, q, k, v, log_decay, {"initial_state": initial_state})
    _check_chunk_size(chunk_size, op)
    N, H, L, D = q.shape
    M = v.shape[-1]
    if L == 0:  # nothing to attend to, nothing decays: the state passes through unchanged
        xp = get_array_module(q)
        final = xp.zeros((N, H, D, M), q.dtype) if initial_state is None else initial_state.copy()
        return DecayedProductResult(xp.zeros((N, H, 0, M), q.dtype), final, None)
    backend = BACKENDS[device_kind(q, k, v)]
    return DecayedProductResult(*backend.forward(q, k, v, log_decay, initial_state, chunk_size,
                                                 keep_for_backward))


def decayed_dot_product_backward(q, k, v, log_decay, grad_out, initial_state=None,
                                 grad_final_state=None, *, chunk_size: int | None = None,
                                 saved=None) -> DecayedProductGrads:
    """Gradients of ``decayed_dot_product`` (recomputing what the forward pass built, unless
    ``saved`` holds it).

    Args:
        q, k, v, log_decay, initial_state, chunk_size: as for the forward pass.
        grad_out: ``(N, H, L, M)``.
        grad_final_state: optional ``(N, H, D, M)`` gradient of the final state.
        saved: ``decayed_dot_product(..., keep_for_backward=True).saved``, or None.
    Returns:
        ``DecayedProductGrads(q, k, v, log_decay, state)``, ``log_decay`` shaped as given and
        ``state`` the gradient of the initial state (``(N, H, D, M)``, also when none was
        given).
    """
    op = "decayed_dot_product_backward"
    check_same_device(op, q=q, k=k, v=v, log_decay=log_decay, grad_out=grad_out,
                      initial_state=initial_state, grad_final_state=grad_final_state)
    _check(op, q, k, v, log_decay,
           {"initial_state": initial_state, "grad_final_state": grad_final_state})
    if grad_out.shape != v.shape:
        raise ValueError(f"{op}: grad_out must have v's shape {v.shape}, got {grad_out.shape}")
    _check_chunk_size(chunk_size, op)
    N, H, L, D = q.shape
    xp = get_array_module(q)
    if L == 0:
        g = xp.zeros((N, H, D, v.shape[-1]), q.dtype) if grad_final_state is None \
            else grad_final_state.copy()
        return DecayedProductGrads(xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v),
                                   xp.zeros_like(log_decay), g)
    grad_out = grad_out.astype(q.dtype, copy=False)
    backend = BACKENDS[device_kind(q, k, v, grad_out)]
    dq, dk, dv, d_log_decay, d_state = backend.backward(
        q, k, v, log_decay, grad_out, initial_state, grad_final_state, chunk_size, saved)
    if log_decay.ndim == 1:  # one decay per head: every position and batch row used it
        d_log_decay = d_log_decay.sum(axis=(0, 2))
    return DecayedProductGrads(dq, dk, dv, d_log_decay, d_state)
