"""``causal_dot_product(q, k, v)``: the kernels' causal product as one autograd Function
(``from seqlib.causal_product import causal_dot_product``, as in fast-transformers)."""

from __future__ import annotations

from seqlib import kernels
from seqlib.core.autograd.function import Function
from seqlib.core.backend import get_array_module
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


class CausalLinearAttend(Function):
    """Causal linear attention of ``(N, L, H, *)`` queries, keys and values in one Function:
    the feature map, the move to the kernel's ``(N, H, L, *)`` layout, a column of ones
    appended to V (so the product's last column is the normaliser ``phi(q_i) . sum_{j<=i}
    phi(k_j)``), the causal product and the division, each written straight into its
    destination's layout. Backward mirrors it. Forward and backward are the kernels' (the
    decayed product's with a fixed per-head ``log_decay``, retention); the feature map is the
    array pair of ``ActivationFunctionFeatureMap.array_pair``, or None when queries and keys
    are features already."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, q, k, v, key_mask, log_decay, eps, feature_map, chunk_size):
        xp = get_array_module(q)
        N, L, H, E = q.shape
        M = v.shape[-1]
        Q, K = xp.empty((N, H, L, E), q.dtype), xp.empty((N, H, L, E), q.dtype)
        for source, features in ((q, Q), (k, K)):
            if feature_map is None:
                features[...] = source.transpose(0, 2, 1, 3)
            else:
                feature_map[0](source.transpose(0, 2, 1, 3), features)
        if key_mask is not None:  # (N, L): the features of padded keys are zero
            K *= key_mask[:, None, :, None]
        V = xp.empty((N, H, L, M + 1), v.dtype)
        V[..., :M] = v.transpose(0, 2, 1, 3)
        V[..., M] = 1
        keep = any(ctx.needs_input_grad)
        if log_decay is None:
            result = kernels.causal_dot_product(Q, K, V, chunk_size=chunk_size,
                                                keep_for_backward=keep)
        else:
            result = kernels.decayed_dot_product(Q, K, V, log_decay, chunk_size=chunk_size,
                                                 keep_for_backward=keep)
        product = result.out  # (N, H, L, M + 1): numerators, then the normaliser
        product[..., M:] += eps
        out = xp.empty((N, L, H, M), q.dtype)
        xp.divide(product[..., :M], product[..., M:], out=out.transpose(0, 2, 1, 3))
        if keep:
            ctx.save_for_backward(Q, K, V, product, key_mask, log_decay)
            ctx.feature_map, ctx.chunk_size, ctx.kernel_saved = (feature_map, chunk_size,
                                                                 result.saved)
        return out

    @staticmethod
    def backward(ctx, g):
        Q, K, V, product, key_mask, log_decay = ctx.saved_tensors
        xp = get_array_module(g)
        N, H, L, E = Q.shape
        M = V.shape[-1] - 1
        numerators, normaliser = product[..., :M], product[..., M:]
        g = g.transpose(0, 2, 1, 3)  # (N, H, L, M), a view
        grad_product = xp.empty_like(product)
        # out = numerators / normaliser: d numerators = g / normaliser, d normaliser =
        # -sum_m g_m numerators_m / normaliser^2
        xp.divide(g, normaliser, out=grad_product[..., :M])
        last = grad_product[..., M]
        xp.einsum("nhlm,nhlm->nhl", grad_product[..., :M], numerators, out=last)
        last /= normaliser[..., 0]
        xp.negative(last, out=last)
        if log_decay is None:
            grads = kernels.causal_dot_product_backward(Q, K, V, grad_product,
                                                        chunk_size=ctx.chunk_size,
                                                        saved=ctx.kernel_saved)
        else:
            grads = kernels.decayed_dot_product_backward(Q, K, V, log_decay, grad_product,
                                                         chunk_size=ctx.chunk_size,
                                                         saved=ctx.kernel_saved)
        grad_k = grads.k
        if key_mask is not None:
            grad_k *= key_mask[:, None, :, None]
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        dq, dk = (_to_input_layout(xp, ctx.feature_map, features, grad) if need else None
                  for need, features, grad in ((need_q, Q, grads.q), (need_k, K, grad_k)))
        dv = grads.v[..., :M].transpose(0, 2, 1, 3).copy() if need_v else None
        return dq, dk, dv, None, None, None, None, None


def _to_input_layout(xp, feature_map, features, grad):
    """A feature gradient ``(N, H, L, E)`` as the input's ``(N, L, H, E)`` gradient, through
    the feature map's slope when there is one."""
    if feature_map is not None:
        feature_map[1](features, grad, grad)  # in place in the kernel's own array
    N, H, L, E = features.shape
    out = xp.empty((N, L, H, E), grad.dtype)
    out[...] = grad.transpose(0, 2, 1, 3)
    return out


def causal_linear_attend(queries: Tensor, keys: Tensor, values: Tensor, eps: float,
                         feature_map=None, key_mask=None, chunk_size: int | None = None,
                         log_decay: Tensor | None = None):
    """Normalised causal linear attention, ``V'_i = phi(q_i) sum_{j<=i} phi(k_j)^T v_j /
    (phi(q_i) . sum_{j<=i} phi(k_j) + eps)``, as one Function.

    Args:
        queries, keys: ``(N, L, H, E)``; raw when ``feature_map`` is given, else features.
        values: ``(N, L, H, M)``.
        eps: added to the normaliser.
        feature_map: ``(phi, slope)`` on arrays (``ActivationFunctionFeatureMap.array_pair``)
            or None.
        key_mask: None, or an ``(N, L)`` tensor of 0/1 that zeroes the features of padded keys.
        chunk_size: as for ``causal_dot_product``.
        log_decay: None, or a fixed ``(H,)`` log decay per head of numerator and normaliser
            alike (retention: ``S_t = gamma S_{t-1} + phi(k_t)^T v_t``); not differentiated.
    Returns:
        ``(N, L, H, M)``.
    """
    return CausalLinearAttend.apply(queries, keys, values, key_mask, log_decay, eps,
                                    feature_map, chunk_size)
