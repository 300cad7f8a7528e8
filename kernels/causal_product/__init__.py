"""Causal dot product (unnormalised causal linear attention) on NumPy or CuPy arrays.

.. math::
    O_i = \\sum_{j \\le i} (Q_i \\cdot K_j)\\, V_j

per batch element and head, for ``Q, K (L, D)`` and ``V (L, M)``, optionally starting from a
state ``S_init (D, M)`` carried in from earlier positions (``O_i += Q_i S_init``).

Both backends cut the positions into chunks of ``C`` (L padded with zero rows, which add
nothing; ``T`` is the ``C x C`` lower-triangular ones mask, diagonal included)::

    U_n   = K_n^T V_n                  (D x M)  the state chunk n contributes
    S_n   = S_init + sum_{m<n} U_m              the state entering chunk n
    P_n   = (Q_n K_n^T) * T            (C x C)
    O_n   = Q_n S_n + P_n V_n          (C x M)
    S_fin = S_last + U_last                     the state after the sequence

and backwards, given ``dO`` and ``dS_fin`` (zero if the final state is unused)::

    G_n     = Q_n^T dO_n               (D x M)
    dS_n    = dS_fin + sum_{m>n} G_m            the gradient of the state entering chunk n
    dP_n    = (dO_n V_n^T) * T
    dQ_n    = dO_n S_n^T + dP_n K_n
    dK_n    = V_n dS_n^T + dP_n^T Q_n
    dV_n    = K_n dS_n  + P_n^T dO_n
    dS_init = dS_fin + sum_m G_m

``C = L`` is the quadratic formula, ``C = 1`` the recurrence. Cost per head is about
``2 L C (D + M)`` (within chunks, half of it masked) plus ``4 L D M`` (states and the
inter-chunk output); the states take ``(L / C) D M``. Chunking also behaves like blocked
summation, more accurate than a serial scan. With positive feature maps the states grow
linearly with L, so they are kept in the inputs' dtype, float32 or wider.

Each device has its own backend file; ``BACKENDS`` is the dispatch table.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._backend import check_same_device, device_kind, get_array_module
from . import cpu, cuda


class Backend(NamedTuple):
    """One row of the dispatch table: a device's forward and backward pass."""

    forward: Any  # (q, k, v, initial_state, chunk, keep) -> (out, final_state, saved)
    backward: Any  # (q, k, v, grad_out, state, grad_final, chunk, saved) -> (dq, dk, dv, ds)


BACKENDS = {
    "cpu": Backend(cpu.forward, cpu.backward),
    "cuda": Backend(cuda.forward, cuda.backward),
}


class CausalProductResult(NamedTuple):
    """What ``causal_dot_product`` returns."""

    out: Any  # (N, H, L, M)
    state: Any  # (N, H, D, M): the state after the last position, to continue from
    saved: Any  # for causal_dot_product_backward(saved=...) if keep_for_backward, else None


class CausalProductGrads(NamedTuple):
    """What ``causal_dot_product_backward`` returns: the gradients of its inputs."""

    q: Any  # (N, H, L, D)
    k: Any  # (N, H, L, D)
    v: Any  # (N, H, L, M)
    state: Any  # (N, H, D, M): of the initial state (zeros when none was given)


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


def _check_state(state, shape, dtype, name):
    if state is not None and (tuple(state.shape) != shape or state.dtype != dtype):
        raise ValueError(
            f"causal_dot_product: {name} must be {shape} of dtype {dtype}, got "
            f"{tuple(state.shape)} of dtype {state.dtype}"
        )


def _check_chunk_size(chunk_size, op: str):
    """The same error on every device (the GPU's chunks are fixed, but a bad value is a bug)."""
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"{op}: chunk_size must be >= 1, got {chunk_size}")


def causal_dot_product(q, k, v, initial_state=None, *, chunk_size: int | None = None,
                       keep_for_backward: bool = False) -> CausalProductResult:
    """The causal product of ``q, k, v``.

    Args:
        q, k: ``(N, H, L, D)``.
        v: ``(N, H, L, M)``.
        initial_state: optional ``(N, H, D, M)`` state carried in from earlier positions
            (``sum_j k_j^T v_j`` over them), to process a long sequence in pieces.
        chunk_size: positions per chunk on the CPU (default 64). The GPU uses the register
            scan for short sequences and chunks of 64 otherwise, whatever is asked.
        keep_for_backward: also keep what ``causal_dot_product_backward(..., saved=...)``
            would otherwise recompute (the chunk states), in ``saved``.
    Returns:
        ``CausalProductResult(out (N, H, L, M), state (N, H, D, M), saved)``.
    """
    check_same_device("causal_dot_product", q=q, k=k, v=v, initial_state=initial_state)
    _check(q, k, v, "causal_dot_product")
    N, H, L, D = q.shape
    M = v.shape[-1]
    _check_state(initial_state, (N, H, D, M), q.dtype, "initial_state")
    _check_chunk_size(chunk_size, "causal_dot_product")
    if L == 0:  # nothing to attend to: the state passes through unchanged
        xp = get_array_module(q)
        final = xp.zeros((N, H, D, M), q.dtype) if initial_state is None else initial_state.copy()
        return CausalProductResult(xp.zeros((N, H, 0, M), q.dtype), final, None)
    backend = BACKENDS[device_kind(q, k, v)]
    return CausalProductResult(*backend.forward(q, k, v, initial_state, chunk_size,
                                                keep_for_backward))


def causal_dot_product_backward(q, k, v, grad_out, initial_state=None, grad_final_state=None, *,
                                chunk_size: int | None = None,
                                saved=None) -> CausalProductGrads:
    """Gradients of ``causal_dot_product`` (recomputing what the forward pass built, unless
    ``saved`` holds it).

    Args:
        q, k, v, initial_state, chunk_size: as for the forward pass.
        grad_out: ``(N, H, L, M)``.
        grad_final_state: optional ``(N, H, D, M)`` gradient of the final state.
        saved: ``causal_dot_product(..., keep_for_backward=True).saved``, or None.
    Returns:
        ``CausalProductGrads(q, k, v, state)``, ``state`` being the gradient of the initial
        state (``(N, H, D, M)``, also when none was given).
    """
    check_same_device("causal_dot_product_backward", q=q, k=k, v=v, grad_out=grad_out,
                      initial_state=initial_state, grad_final_state=grad_final_state)
    _check(q, k, v, "causal_dot_product_backward")
    if grad_out.shape != v.shape:
        raise ValueError(
            f"causal_dot_product_backward: grad_out must have v's shape {v.shape}, got "
            f"{grad_out.shape}"
        )
    N, H, L, D = q.shape
    M = v.shape[-1]
    _check_state(initial_state, (N, H, D, M), q.dtype, "initial_state")
    _check_state(grad_final_state, (N, H, D, M), q.dtype, "grad_final_state")
    _check_chunk_size(chunk_size, "causal_dot_product_backward")
    if L == 0:
        xp = get_array_module(q)
        g = xp.zeros((N, H, D, M), q.dtype) if grad_final_state is None else grad_final_state
        return CausalProductGrads(xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v), g.copy())
    grad_out = grad_out.astype(q.dtype, copy=False)
    backend = BACKENDS[device_kind(q, k, v, grad_out)]
    return CausalProductGrads(*backend.backward(q, k, v, grad_out, initial_state,
                                                grad_final_state, chunk_size, saved))
