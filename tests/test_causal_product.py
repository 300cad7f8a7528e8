"""The chunked causal dot product against the naive O(L^2) reference, and its gradients."""

from __future__ import annotations

import numpy
import pytest
from helpers import fake_gpu
from hypothesis import given
from hypothesis import strategies as st

import seqlib as sl
from seqlib import kernels
from seqlib.causal_product import causal_dot_product


@pytest.fixture
def workers():
    """Puts the kernels' worker threads back to the default after a test that sets them."""
    yield
    kernels.set_num_threads(None)


def naive(q, k, v, state=None):
    """einsum with a tril mask: sum_{j<=i} (q_i . k_j) v_j (+ q_i S0)."""
    L = q.shape[2]
    scores = numpy.einsum("nhld,nhsd->nhls", q, k) * numpy.tril(numpy.ones((L, L)))
    out = numpy.einsum("nhls,nhsm->nhlm", scores, v)
    if state is not None:
        out = out + numpy.einsum("nhld,nhdm->nhlm", q, state)
    return out


def naive_final(k, v, state=None):
    final = numpy.einsum("nhld,nhlm->nhdm", k, v)
    return final if state is None else final + state


SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 40), st.integers(1, 9),
                   st.integers(1, 9))


@pytest.mark.parametrize("dtype, tolerance", [(numpy.float32, 1e-5), (numpy.float64, 1e-10)])
@given(shape=SHAPES, chunk=st.sampled_from([None, 1, 3, 8, 64]), with_state=st.booleans())
def test_forward_matches_naive(dtype, tolerance, shape, chunk, with_state):
    N, H, L, D, M = shape
    rng = numpy.random.default_rng(L * 31 + D)
    q, k = (rng.standard_normal((N, H, L, D)).astype(dtype) for _ in range(2))
    v = rng.standard_normal((N, H, L, M)).astype(dtype)
    state = rng.standard_normal((N, H, D, M)).astype(dtype) if with_state else None
    out, final, saved = kernels.causal_dot_product(q, k, v, state, chunk_size=chunk)
    assert saved is None
    assert out.dtype == dtype and out.shape == (N, H, L, M) and final.shape == (N, H, D, M)
    scale = 1 + L
    numpy.testing.assert_allclose(out, naive(q, k, v, state), rtol=tolerance,
                                  atol=tolerance * scale * D)
    numpy.testing.assert_allclose(final, naive_final(k, v, state), rtol=tolerance,
                                  atol=tolerance * scale)


@given(shape=SHAPES, chunk=st.sampled_from([None, 2, 5]), with_state=st.booleans())
def test_backward_matches_naive_gradients(shape, chunk, with_state):
    N, H, L, D, M = shape
    rng = numpy.random.default_rng(L * 7 + M)
    q, k = rng.standard_normal((N, H, L, D)), rng.standard_normal((N, H, L, D))
    v, grad = rng.standard_normal((N, H, L, M)), rng.standard_normal((N, H, L, M))
    state = rng.standard_normal((N, H, D, M)) if with_state else None
    grad_final = rng.standard_normal((N, H, D, M)) if with_state else None
    result = kernels.causal_dot_product_backward(q, k, v, grad, state, grad_final,
                                                 chunk_size=chunk)
    mask = numpy.tril(numpy.ones((L, L)))
    scores = numpy.einsum("nhld,nhsd->nhls", q, k) * mask
    d_scores = numpy.einsum("nhlm,nhsm->nhls", grad, v) * mask
    expected_q = numpy.einsum("nhls,nhsd->nhld", d_scores, k)
    expected_k = numpy.einsum("nhls,nhld->nhsd", d_scores, q)
    expected_v = numpy.einsum("nhls,nhlm->nhsm", scores, grad)
    if with_state:
        expected_q = expected_q + numpy.einsum("nhlm,nhdm->nhld", grad, state)
        expected_k = expected_k + numpy.einsum("nhlm,nhdm->nhld", v, grad_final)
        expected_v = expected_v + numpy.einsum("nhld,nhdm->nhlm", k, grad_final)
        expected_state = grad_final + numpy.einsum("nhld,nhlm->nhdm", q, grad)
        numpy.testing.assert_allclose(result[3], expected_state, rtol=1e-10, atol=1e-10)
    for got, want in zip(result[:3], (expected_q, expected_k, expected_v)):
        numpy.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)


def test_processing_in_pieces_equals_one_pass():
    rng = numpy.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 2, 30, 4)) for _ in range(3))
    whole = kernels.causal_dot_product(q, k, v).out
    first, state, _ = kernels.causal_dot_product(q[:, :, :11], k[:, :, :11], v[:, :, :11])
    second = kernels.causal_dot_product(q[:, :, 11:], k[:, :, 11:], v[:, :, 11:], state).out
    numpy.testing.assert_allclose(numpy.concatenate([first, second], 2), whole, rtol=1e-12)


def test_empty_sequence_and_chunk_larger_than_length():
    q = numpy.zeros((1, 1, 0, 3))
    out, state, _ = kernels.causal_dot_product(q, q, numpy.zeros((1, 1, 0, 2)))
    assert out.shape == (1, 1, 0, 2) and state.shape == (1, 1, 3, 2) and not state.any()
    rng = numpy.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, 1, 5, 3)) for _ in range(3))
    numpy.testing.assert_allclose(kernels.causal_dot_product(q, k, v, chunk_size=512).out,
                                  naive(q, k, v), rtol=1e-12)


def test_large_dimensions():
    rng = numpy.random.default_rng(2)
    q, k = (rng.standard_normal((1, 1, 70, 512)) * 0.1 for _ in range(2))
    v = rng.standard_normal((1, 1, 70, 512))
    numpy.testing.assert_allclose(kernels.causal_dot_product(q, k, v).out, naive(q, k, v),
                                  rtol=1e-9, atol=1e-9)


def test_kernel_errors_name_the_argument():
    q = numpy.zeros((1, 1, 4, 3), numpy.float32)
    with pytest.raises(ValueError, match="q must be \\(N, H, L, D\\)"):
        kernels.causal_dot_product(q[0], q, q)
    with pytest.raises(ValueError, match="q and k must have the same shape"):
        kernels.causal_dot_product(q, numpy.zeros((1, 1, 4, 2), numpy.float32), q)
    with pytest.raises(ValueError, match="v must be"):
        kernels.causal_dot_product(q, q, numpy.zeros((1, 1, 5, 3), numpy.float32))
    with pytest.raises(TypeError, match="share one float dtype"):
        kernels.causal_dot_product(q, q, q.astype(numpy.float64))
    with pytest.raises(ValueError, match="initial_state must be"):
        kernels.causal_dot_product(q, q, q, numpy.zeros((1, 1, 3, 2), numpy.float32))
    with pytest.raises(ValueError, match="grad_out must have v's shape"):
        kernels.causal_dot_product_backward(q, q, q, q[:, :, :2])
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        kernels.causal_dot_product(q, q, q, chunk_size=0)
    with pytest.raises(ValueError, match="backward: chunk_size must be >= 1"):
        kernels.causal_dot_product_backward(q, q, q, q, chunk_size=0)
    with pytest.raises(TypeError, match="k must be a NumPy or CuPy array, got list"):
        kernels.causal_dot_product(q, q.tolist(), q)


def test_kernel_refuses_mixed_devices(monkeypatch):
    on_gpu = fake_gpu(monkeypatch)
    q = numpy.zeros((1, 1, 4, 3), numpy.float32)
    with pytest.raises(TypeError, match="one device, got q on cpu, k on cpu, v on cuda:0"):
        kernels.causal_dot_product(q, q, on_gpu(q))
    with pytest.raises(TypeError, match="grad_out on cuda:0"):
        kernels.causal_dot_product_backward(q, q, q, on_gpu(q))
    state = numpy.zeros((1, 1, 3, 3), numpy.float32)
    with pytest.raises(TypeError, match="initial_state on cuda:0"):
        kernels.causal_dot_product(q, q, q, initial_state=on_gpu(state))


@pytest.mark.parametrize("with_state", [False, True])
def test_autograd_function_gradcheck(with_state):
    q, k = (sl.randn(1, 2, 7, 3, dtype=sl.float64, requires_grad=True) for _ in range(2))
    v = sl.randn(1, 2, 7, 2, dtype=sl.float64, requires_grad=True)
    inputs = [q, k, v]
    if with_state:
        inputs.append(sl.randn(1, 2, 3, 2, dtype=sl.float64, requires_grad=True))

    def fn(q, k, v, state=None):
        return causal_dot_product(q, k, v, state, return_final_state=True, chunk_size=3)

    sl.gradcheck(fn, inputs)
    out = causal_dot_product(q, k, v)
    numpy.testing.assert_allclose(out.detach().numpy(), naive(*(t.detach().numpy() for t in
                                                                (q, k, v))), rtol=1e-12)
    with pytest.raises(TypeError, match="queries must be a Tensor"):
        causal_dot_product(q.detach().numpy(), k, v)


def test_backward_from_saved_states_equals_recomputing():
    rng = numpy.random.default_rng(5)
    q, k = (rng.standard_normal((2, 3, 50, 4)) for _ in range(2))
    v, g = (rng.standard_normal((2, 3, 50, 5)) for _ in range(2))
    state = rng.standard_normal((2, 3, 4, 5))
    out, final, saved = kernels.causal_dot_product(q, k, v, state, chunk_size=8,
                                                   keep_for_backward=True)
    numpy.testing.assert_array_equal(out,
                                     kernels.causal_dot_product(q, k, v, state, chunk_size=8).out)
    reused = kernels.causal_dot_product_backward(q, k, v, g, state, chunk_size=8, saved=saved)
    recomputed = kernels.causal_dot_product_backward(q, k, v, g, state, chunk_size=8)
    for a, b in zip(reused, recomputed):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("N, H", [(1, 3), (3, 1), (2, 2), (1, 1)])
def test_permuted_inputs_and_every_thread_split_match_naive(workers, N, H):
    """The attention layer hands the kernel (N, L, H, D) arrays seen as (N, H, L, D); the
    workers copy their own slices and write into shared outputs."""
    kernels.set_num_threads(3)
    rng = numpy.random.default_rng(N * 10 + H)
    L, D, M = 37, 4, 5  # L not a multiple of the chunk
    q, k = (rng.standard_normal((N, L, H, D)).transpose(0, 2, 1, 3) for _ in range(2))
    v, g = (rng.standard_normal((N, L, H, M)).transpose(0, 2, 1, 3) for _ in range(2))
    state = rng.standard_normal((N, H, D, M))
    out, final, saved = kernels.causal_dot_product(q, k, v, state, chunk_size=8,
                                                   keep_for_backward=True)
    numpy.testing.assert_allclose(out, naive(q, k, v, state), rtol=1e-10, atol=1e-10)
    numpy.testing.assert_allclose(final, naive_final(k, v, state), rtol=1e-10, atol=1e-10)
    grads = kernels.causal_dot_product_backward(q, k, v, g, state, chunk_size=8, saved=saved)
    contiguous = [numpy.ascontiguousarray(a) for a in (q, k, v, g)]
    kernels.set_num_threads(1)
    expected = kernels.causal_dot_product_backward(*contiguous, state, chunk_size=8)
    for a, b in zip(grads, expected):
        assert a.shape == b.shape and a.flags.c_contiguous
        numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def naive_linear_attention(q, k, v, eps, mask=None, feature=True, gamma=None):
    """Causal linear attention on (N, L, H, *) arrays by the quadratic formula, with an
    optional decay ``gamma (H,)`` of both sums (``gamma^(i - j)``)."""
    if feature:
        q, k = (numpy.where(x > 0, x + 1, numpy.exp(numpy.minimum(x, 0))) for x in (q, k))
    if mask is not None:
        k = k * mask[:, :, None, None]
    L = q.shape[1]
    scores = numpy.einsum("nlhd,nshd->nhls", q, k) * numpy.tril(numpy.ones((L, L)))
    if gamma is not None:
        lags = numpy.maximum(numpy.arange(L)[:, None] - numpy.arange(L)[None], 0)
        scores = scores * gamma[:, None, None] ** lags
    numerators = numpy.einsum("nhls,nshm->nlhm", scores, v)
    return numerators / (scores.sum(-1).transpose(0, 2, 1)[..., None] + eps)


ATTEND_SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 20), st.integers(1, 3),
                          st.integers(1, 5), st.integers(1, 5))


@given(shape=ATTEND_SHAPES, mapped=st.booleans(), masked=st.booleans(),
       chunk=st.sampled_from([None, 1, 4]), decayed=st.booleans())
def test_causal_linear_attend_matches_naive_and_gradchecks(shape, mapped, masked, chunk,
                                                           decayed):
    from seqlib.causal_product import causal_linear_attend
    from seqlib.feature_maps import elu_feature_map

    N, L, H, E, M = shape
    rng = numpy.random.default_rng(L * 31 + E)
    q, k = (rng.standard_normal((N, L, H, E)) for _ in range(2))
    if not mapped:  # features already: positive
        q, k = numpy.exp(q), numpy.exp(k)
    v = rng.standard_normal((N, L, H, M))
    mask = (numpy.arange(L)[None] < rng.integers(1, L + 1, (N, 1))).astype(float) if masked \
        else None
    pair = elu_feature_map(E).array_pair() if mapped else None
    tensors = [sl.tensor(a, requires_grad=True) for a in (q, k, v)]
    key_mask = None if mask is None else sl.tensor(mask)
    gamma = rng.uniform(0.5, 1.0, H) if decayed else None
    log_decay = None if gamma is None else sl.tensor(numpy.log(gamma))

    def fn(q, k, v):
        return causal_linear_attend(q, k, v, 1e-6, pair, key_mask, chunk, log_decay)

    numpy.testing.assert_allclose(fn(*tensors).detach().numpy(),
                                  naive_linear_attention(q, k, v, 1e-6, mask, mapped, gamma),
                                  rtol=1e-10, atol=1e-12)
    sl.gradcheck(fn, tensors)


def test_causal_linear_attention_layer_equals_the_unfused_composition():
    """The fused path of CausalLinearAttention (feature map inside the Function) gives the
    forward and gradients of the plain composition of feature map, causal product and
    division, in float32."""
    from seqlib.attention import CausalLinearAttention
    from seqlib.causal_product import causal_dot_product
    from seqlib.masking import LengthMask, TriangularCausalMask

    rng = numpy.random.default_rng(0)
    N, L, H, E, M = 2, 70, 3, 8, 5
    arrays = [rng.standard_normal((N, L, H, D)).astype(numpy.float32) for D in (E, E, M)]
    lengths = LengthMask(sl.tensor([L, 50]), L)
    attention = CausalLinearAttention(E)

    def plain(q, k, v):
        Q = attention.feature_map(q).permute(0, 2, 1, 3)
        K = attention.feature_map(k) * lengths.float_matrix[:, :, None, None]
        numerators = causal_dot_product(Q, K.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3))
        normaliser = (Q * K.permute(0, 2, 1, 3).cumsum(2)).sum(-1, keepdim=True)
        return (numerators / (normaliser + attention.eps)).permute(0, 2, 1, 3)

    results = []
    for fn in (plain, lambda q, k, v: attention(q, k, v, TriangularCausalMask(L), None, lengths)):
        tensors = [sl.tensor(a, requires_grad=True) for a in arrays]
        out = fn(*tensors)
        (out * sl.tensor(arrays[2][..., :1])).sum().backward()
        results.append([out.detach().numpy()] + [t.grad.numpy() for t in tensors])
    for fused, reference in zip(*results):
        numpy.testing.assert_allclose(fused, reference, rtol=2e-4, atol=2e-6)
