"""``causal_dot_product(q, k, v)``: the kernels' causal product as one autograd Function
(``from seqlib.causal_product import causal_dot_product``, as in fast-transformers)."""

from __future__ import annotations

from seqlib import kernels
from seqlib.core.autograd.function import Function
from seqlib.core.tensor import Tensor


class CausalDotProduct(Function):
    """``out_i = sum_{j <= i} (q_i . k_j) v_j`` with an optional state carried in and out."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, q, k, v, initial_state, chunk_size):
        result = kernels.causal_dot_product(q, k, v, initial_state, chunk_size=chunk_size,
                                            keep_for_backward=True)
        ctx.save_for_backward(q, k, v, initial_state)
        ctx.chunk_size, ctx.kernel_saved = chunk_size, result.saved
        return result.out, result.state

    @staticmethod
    def backward(ctx, grad_out, grad_final):
        q, k, v, initial_state = ctx.saved_tensors
        grads = kernels.causal_dot_product_backward(q, k, v, grad_out, initial_state, grad_final,
                                                    chunk_size=ctx.chunk_size,
                                                    saved=ctx.kernel_saved)
        grad_state = grads.state if initial_state is not None else None
        return grads.q, grads.k, grads.v, grad_state, None


def causal_dot_product(queries: Tensor, keys: Tensor, values: Tensor,
                       initial_state: Tensor | None = None, return_final_state: bool = False,
                       chunk_size: int | None = None):
    """Unnormalised causal linear attention, ``out_i = sum_{j<=i} (q_i . k_j) v_j``.

    Args:
        queries, keys: ``(N, H, L, D)``.
        values: ``(N, H, L, M)``.
        initial_state: optional ``(N, H, D, M)`` state from earlier positions.
        return_final_state: also return the state after the last position, to continue from.
        chunk_size: positions per chunk of the CPU/chunked algorithm (default 64).
    Returns:
        ``(N, H, L, M)``, and the ``(N, H, D, M)`` final state if asked for.
    """
    for name, t in (("queries", queries), ("keys", keys), ("values", values)):
        if not isinstance(t, Tensor):
            raise TypeError(f"causal_dot_product: {name} must be a Tensor, got {type(t).__name__}")
    out, final = CausalDotProduct.apply(queries, keys, values, initial_state, chunk_size)
    return (out, final) if return_final_state else out
