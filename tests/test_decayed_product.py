"""The chunked decayed causal product against naive references (the recurrence and the
quadratic form), its gradients (log decays included) and its numerics on long sequences."""

from __future__ import annotations

import numpy
import pytest
from helpers import fake_gpu
from hypothesis import given, settings
from hypothesis import strategies as st

import seqlib as sl
from seqlib import kernels
from seqlib.decayed_product import decayed_dot_product, log_sigmoid, log_sigmoid_array


def per_position(a, N, L):
    """``(N, H, L)`` log decays from ``(N, H, L)`` or a per-head ``(H,)``."""
    return numpy.broadcast_to(a[None, :, None], (N, a.shape[0], L)) if a.ndim == 1 else a


def recurrence(q, k, v, a, state=None):
    """The definition, one position at a time in float64: ``S = exp(a_t) S + k_t^T v_t``,
    ``out_t = q_t S``. Stable at any length (nothing but decays <= 1 multiplies)."""
    q, k, v, a = (numpy.asarray(x, numpy.float64) for x in (q, k, v, a))
    N, H, L, D = q.shape
    a = per_position(a, N, L)
    S = numpy.zeros((N, H, D, v.shape[-1])) if state is None else state.astype(numpy.float64)
    out = numpy.empty((N, H, L, v.shape[-1]))
    for t in range(L):
        S = numpy.exp(a[:, :, t])[..., None, None] * S + numpy.einsum(
            "nhd,nhm->nhdm", k[:, :, t], v[:, :, t])
        out[:, :, t] = numpy.einsum("nhd,nhdm->nhm", q[:, :, t], S)
    return out, S


def quadratic(q, k, v, a, state, grad_out, grad_final):
    """Output, final state and every gradient from the quadratic form
    ``out_i = sum_{j<=i} exp(b_i - b_j) (q_i . k_j) v_j + exp(b_i) q_i S0`` (short L only),
    derived independently of the kernel's formulas: through ``dL/dW_ij`` of the weights."""
    N, H, L, D = q.shape
    b = numpy.cumsum(per_position(a, N, L), axis=-1)  # (N, H, L)
    W = numpy.exp(b[..., :, None] - b[..., None, :]) * numpy.tril(numpy.ones((L, L)))
    scores = numpy.einsum("nhid,nhjd->nhij", q, k)
    start, end = numpy.exp(b), numpy.exp(b[..., -1:] - b)  # from S0; to the end
    out = numpy.einsum("nhij,nhjm->nhim", scores * W, v)
    out += start[..., None] * numpy.einsum("nhid,nhdm->nhim", q, state)
    final = numpy.exp(b[..., -1])[..., None, None] * state + numpy.einsum(
        "nhj,nhjd,nhjm->nhdm", end, k, v)
    d_scores = numpy.einsum("nhim,nhjm->nhij", grad_out, v)
    dq = numpy.einsum("nhij,nhjd->nhid", d_scores * W, k)
    dq += start[..., None] * numpy.einsum("nhim,nhdm->nhid", grad_out, state)
    dk = numpy.einsum("nhij,nhid->nhjd", d_scores * W, q)
    dk += end[..., None] * numpy.einsum("nhjm,nhdm->nhjd", v, grad_final)
    dv = numpy.einsum("nhij,nhim->nhjm", scores * W, grad_out)
    dv += end[..., None] * numpy.einsum("nhjd,nhdm->nhjm", k, grad_final)
    d_state = numpy.exp(b[..., -1])[..., None, None] * grad_final + numpy.einsum(
        "nhi,nhid,nhim->nhdm", start, q, grad_out)
    dW = d_scores * scores * W  # dL/db through W_ij = exp(b_i - b_j)
    db = dW.sum(-1) - dW.sum(-2)
    db += start * numpy.einsum("nhid,nhdm,nhim->nhi", q, state, grad_out)
    db -= end * numpy.einsum("nhjd,nhdm,nhjm->nhj", k, grad_final, v)
    db[..., -1] += numpy.einsum("nhdm,nhdm->nh", grad_final, final)
    da = numpy.cumsum(db[..., ::-1], axis=-1)[..., ::-1]
    if a.ndim == 1:
        da = da.sum(axis=(0, 2))
    return out, final, (dq, dk, dv, da, d_state)


def _inputs(N, H, L, D, M, per_head, seed, dtype=numpy.float64, strength=1.0):
    rng = numpy.random.default_rng(seed)
    q, k = (rng.standard_normal((N, H, L, D)).astype(dtype) for _ in range(2))
    v = rng.standard_normal((N, H, L, M)).astype(dtype)
    a = -strength * rng.random(H if per_head else (N, H, L))
    return q, k, v, a.astype(dtype), rng.standard_normal((N, H, D, M)).astype(dtype)


SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 40), st.integers(1, 9),
                   st.integers(1, 9))


@pytest.mark.parametrize("dtype, tolerance", [(numpy.float32, 1e-5), (numpy.float64, 1e-10)])
@given(shape=SHAPES, chunk=st.sampled_from([None, 1, 3, 8, 64]), with_state=st.booleans(),
       per_head=st.booleans())
def test_forward_matches_the_recurrence(dtype, tolerance, shape, chunk, with_state, per_head):
    N, H, L, D, M = shape
    q, k, v, a, state = _inputs(N, H, L, D, M, per_head, L * 31 + D, dtype)
    state = state if with_state else None
    out, final, saved = kernels.decayed_dot_product(q, k, v, a, state, chunk_size=chunk)
    assert saved is None and out.dtype == dtype and final.dtype == dtype
    assert out.shape == (N, H, L, M) and final.shape == (N, H, D, M)
    expected_out, expected_final = recurrence(q, k, v, a, state)
    scale = numpy.sqrt(D) * (1 + numpy.abs(expected_out).max())  # sums of D-term products
    numpy.testing.assert_allclose(out, expected_out, rtol=tolerance, atol=tolerance * scale)
    numpy.testing.assert_allclose(final, expected_final, rtol=tolerance,
                                  atol=tolerance * (1 + numpy.abs(expected_final).max()))


@settings(deadline=None)
@given(shape=SHAPES, chunk=st.sampled_from([None, 1, 2, 5, 16]), per_head=st.booleans())
def test_backward_matches_the_quadratic_form(shape, chunk, per_head):
    N, H, L, D, M = shape
    q, k, v, a, state = _inputs(N, H, L, D, M, per_head, L * 7 + M)
    rng = numpy.random.default_rng(L)
    grad_out, grad_final = rng.standard_normal((N, H, L, M)), rng.standard_normal((N, H, D, M))
    out, final, expected = quadratic(q, k, v, a, state, grad_out, grad_final)
    got = kernels.decayed_dot_product(q, k, v, a, state, chunk_size=chunk)
    numpy.testing.assert_allclose(got.out, out, rtol=1e-10, atol=1e-10)
    numpy.testing.assert_allclose(got.state, final, rtol=1e-10, atol=1e-10)
    grads = kernels.decayed_dot_product_backward(q, k, v, a, grad_out, state, grad_final,
                                                 chunk_size=chunk)
    assert grads.log_decay.shape == a.shape
    for name, g, want in zip(grads._fields, grads, expected):
        numpy.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("per_head", [False, True])
def test_saved_states_give_the_recomputed_gradients(per_head):
    q, k, v, a, state = _inputs(2, 3, 50, 4, 5, per_head, 3)
    grad = numpy.random.default_rng(4).standard_normal(v.shape)
    saved = kernels.decayed_dot_product(q, k, v, a, state, chunk_size=8,
                                        keep_for_backward=True).saved
    reused = kernels.decayed_dot_product_backward(q, k, v, a, grad, state, chunk_size=8,
                                                  saved=saved)
    recomputed = kernels.decayed_dot_product_backward(q, k, v, a, grad, state, chunk_size=8)
    for x, y in zip(reused, recomputed):
        numpy.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("split", [1, 11, 29])
def test_processing_in_pieces_equals_one_pass(per_head, split):
    q, k, v, a, _ = _inputs(2, 2, 30, 4, 3, per_head, 0)

    def piece(x, where):
        return x if x.ndim == 1 else x[:, :, where]

    whole = kernels.decayed_dot_product(q, k, v, a, chunk_size=8)
    first, state, _ = kernels.decayed_dot_product(
        *(piece(x, slice(None, split)) for x in (q, k, v, a)), chunk_size=8)
    second, final, _ = kernels.decayed_dot_product(
        *(piece(x, slice(split, None)) for x in (q, k, v, a)), state, chunk_size=8)
    numpy.testing.assert_allclose(numpy.concatenate([first, second], 2), whole.out, rtol=1e-12,
                                  atol=1e-12)
    numpy.testing.assert_allclose(final, whole.state, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_head", [False, True])
def test_no_decay_is_the_causal_product(per_head):
    q, k, v, _, state = _inputs(2, 3, 21, 4, 5, per_head, 8)
    a = numpy.zeros(3 if per_head else (2, 3, 21))
    plain = kernels.causal_dot_product(q, k, v, state, chunk_size=4)
    decayed = kernels.decayed_dot_product(q, k, v, a, state, chunk_size=4)
    numpy.testing.assert_allclose(decayed.out, plain.out, rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(decayed.state, plain.state, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tolerance", [(numpy.float32, 1e-5), (numpy.float64, 1e-10)])
@pytest.mark.parametrize("case", ["gamma 0.5 per head", "gates near 0", "gates near 1"])
def test_long_sequences_with_strong_decay_stay_finite_and_exact(dtype, tolerance, case):
    """L = 4096: accumulated log decays reach -2,800 (gamma 0.5) and -160,000 (gates near 0),
    whose exp from the start of the sequence would underflow to 0 and from the end overflow;
    the per-chunk relative decays never leave [-C * |a|, 0]."""
    N, H, L, D, M = 1, 2, 4096, 8, 8
    rng = numpy.random.default_rng(5)
    q, k = (rng.standard_normal((N, H, L, D)).astype(dtype) * 0.5 for _ in range(2))
    v = rng.standard_normal((N, H, L, M)).astype(dtype)
    if case == "gamma 0.5 per head":
        a = numpy.full(H, numpy.log(0.5))
    else:
        logits = rng.uniform(-45, -35, (N, H, L)) if case == "gates near 0" else \
            rng.uniform(8, 12, (N, H, L))
        a = log_sigmoid_array(logits)
    a = a.astype(dtype)
    out, final, _ = kernels.decayed_dot_product(q, k, v, a)
    assert numpy.isfinite(out).all() and numpy.isfinite(final).all()
    expected_out, expected_final = recurrence(q, k, v, a)
    scale = 1 + numpy.abs(expected_out).max()
    numpy.testing.assert_allclose(out, expected_out, rtol=tolerance, atol=tolerance * scale)
    numpy.testing.assert_allclose(final, expected_final, rtol=tolerance,
                                  atol=tolerance * (1 + numpy.abs(expected_final).max()))
    grads = kernels.decayed_dot_product_backward(q, k, v, a, numpy.ones_like(v))
    assert all(numpy.isfinite(g).all() for g in grads)


def test_empty_sequence_and_chunk_larger_than_length():
    q = numpy.zeros((1, 2, 0, 3))
    state = numpy.ones((1, 2, 3, 2))
    out, final, _ = kernels.decayed_dot_product(q, q, numpy.zeros((1, 2, 0, 2)),
                                                numpy.zeros((1, 2, 0)), state)
    assert out.shape == (1, 2, 0, 2)
    numpy.testing.assert_array_equal(final, state)
    grads = kernels.decayed_dot_product_backward(q, q, numpy.zeros((1, 2, 0, 2)),
                                                 numpy.zeros(2), numpy.zeros((1, 2, 0, 2)))
    assert grads.log_decay.shape == (2,) and grads.state.shape == (1, 2, 3, 2)
    q, k, v, a, _ = _inputs(1, 1, 5, 3, 2, False, 1)
    numpy.testing.assert_allclose(kernels.decayed_dot_product(q, k, v, a, chunk_size=512).out,
                                  recurrence(q, k, v, a)[0], rtol=1e-12, atol=1e-12)


def test_kernel_errors_name_the_argument():
    q = numpy.zeros((1, 2, 4, 3), numpy.float32)
    a = numpy.zeros((1, 2, 4), numpy.float32)
    with pytest.raises(ValueError, match=r"log_decay must be \(N, H, L\) = \(1, 2, 4\) .* or "
                                         r"\(H,\) = \(2,\) \(per head\), got \(1, 2, 3\)"):
        kernels.decayed_dot_product(q, q, q, a[:, :, :3])
    with pytest.raises(TypeError, match="share one float dtype, got float32, float32, float32, "
                                        "float64"):
        kernels.decayed_dot_product(q, q, q, a.astype(numpy.float64))
    with pytest.raises(ValueError, match="q must be \\(N, H, L, D\\)"):
        kernels.decayed_dot_product(q[0], q, q, a)
    with pytest.raises(ValueError, match="initial_state must be"):
        kernels.decayed_dot_product(q, q, q, a, numpy.zeros((1, 2, 3, 2), numpy.float32))
    with pytest.raises(ValueError, match="grad_final_state must be"):
        kernels.decayed_dot_product_backward(q, q, q, a, q, None, q)
    with pytest.raises(ValueError, match="grad_out must have v's shape"):
        kernels.decayed_dot_product_backward(q, q, q, a, q[:, :, :2])
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        kernels.decayed_dot_product(q, q, q, a, chunk_size=0)
    with pytest.raises(TypeError, match="log_decay must be a NumPy or CuPy array, got list"):
        kernels.decayed_dot_product(q, q, q, a.tolist())


def test_kernel_refuses_mixed_devices(monkeypatch):
    on_gpu = fake_gpu(monkeypatch)
    q = numpy.zeros((1, 1, 4, 3), numpy.float32)
    with pytest.raises(TypeError, match="one device, got q on cpu, k on cpu, v on cpu, "
                                        "log_decay on cuda:0"):
        kernels.decayed_dot_product(q, q, q, on_gpu(numpy.zeros(1, numpy.float32)))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_worker_threads_give_identical_results(threads):
    q, k, v, a, state = _inputs(2, 3, 40, 4, 5, False, 6)
    grad = numpy.random.default_rng(7).standard_normal(v.shape)
    try:
        kernels.set_num_threads(1)
        one = (*kernels.decayed_dot_product(q, k, v, a, state)[:2],
               *kernels.decayed_dot_product_backward(q, k, v, a, grad, state))
        kernels.set_num_threads(threads)
        many = (*kernels.decayed_dot_product(q, k, v, a, state)[:2],
                *kernels.decayed_dot_product_backward(q, k, v, a, grad, state))
    finally:
        kernels.set_num_threads(None)
    for x, y in zip(one, many):
        numpy.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------- the Function


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 64])
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_gradcheck_with_gate_logits(chunk, per_head, with_state):
    """float64 gradcheck of queries, keys, values, gate logits and state, L = 9 (not a multiple
    of any chunk but 1)."""
    generator = sl.Generator().manual_seed(chunk)

    def leaf(*shape):
        return sl.randn(*shape, dtype=sl.float64, generator=generator, requires_grad=True)

    q, k, v = leaf(2, 2, 9, 3), leaf(2, 2, 9, 3), leaf(2, 2, 9, 2)
    logits = leaf(2) if per_head else leaf(2, 2, 9)
    inputs = [q, k, v, logits] + ([leaf(2, 2, 3, 2)] if with_state else [])

    def fn(q, k, v, logits, state=None):
        return decayed_dot_product(q, k, v, log_sigmoid(logits), state, True, chunk)

    assert sl.gradcheck(fn, inputs)


def test_float32_gradients_match_float64():
    q, k, v, a, state = _inputs(1, 2, 70, 8, 8, False, 9)
    grad = numpy.random.default_rng(1).standard_normal(v.shape)
    exact = kernels.decayed_dot_product_backward(q, k, v, a, grad, state)
    single = kernels.decayed_dot_product_backward(
        *(x.astype(numpy.float32) for x in (q, k, v, a, grad, state)))
    for name, x, y in zip(exact._fields, exact, single):
        numpy.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-4 * (1 + numpy.abs(x).max()),
                                      err_msg=name)


def test_log_sigmoid_is_stable_and_gradchecks():
    x = numpy.array([-800.0, -40.0, -1.0, 0.0, 2.0, 40.0, 800.0])
    expected = numpy.array([-800.0, -40.0, -1.3132616875182228, -numpy.log(2),
                            -0.12692801104297263, -4.248354255291589e-18, 0.0])
    numpy.testing.assert_allclose(log_sigmoid_array(x), expected, rtol=1e-14, atol=0)
    assert sl.gradcheck(log_sigmoid, [sl.tensor([-30.0, -1.5, 0.3, 4.0], dtype=sl.float64,
                                                requires_grad=True)])


def test_float16_runs_in_float32():
    q, k, v, a, state = _inputs(1, 2, 20, 4, 3, False, 13, numpy.float16, strength=0.3)
    out, final = decayed_dot_product(*(sl.tensor(x) for x in (q, k, v, a, state)),
                                     return_final_state=True)
    assert out.dtype == sl.float16 and final.dtype == sl.float16
    single = kernels.decayed_dot_product(*(x.astype(numpy.float32) for x in (q, k, v, a, state)))
    numpy.testing.assert_array_equal(out.numpy(), single.out.astype(numpy.float16))
    numpy.testing.assert_array_equal(final.numpy(), single.state.astype(numpy.float16))


def test_function_rejects_arrays():
    q = sl.zeros(1, 1, 2, 2)
    with pytest.raises(TypeError, match="log_decay must be a Tensor, got ndarray"):
        decayed_dot_product(q, q, q, numpy.zeros((1, 1, 2), numpy.float32))


# ---------------------------------------------------------------------------- the CUDA backend


def test_dispatch_table_lists_one_backend_per_device():
    from seqlib.kernels.decayed_product import BACKENDS, cpu, cuda

    assert BACKENDS == {"cpu": (cpu.forward, cpu.backward), "cuda": (cuda.forward, cuda.backward)}


@pytest.mark.parametrize("per_head", [False, True])
def test_cuda_backend_glue_on_numpy(monkeypatch, per_head):
    """``cuda.py`` runs ``chunked.py`` on all rows at once; with NumPy standing in for CuPy its
    reshaping and broadcasting are checked here, without a GPU."""
    from seqlib.kernels.decayed_product import cpu, cuda

    monkeypatch.setattr(cuda, "cupy", numpy)
    q, k, v, a, state = _inputs(2, 3, 37, 4, 5, per_head, 11)
    rng = numpy.random.default_rng(12)
    grad, grad_final = rng.standard_normal(v.shape), rng.standard_normal(state.shape)
    for chunk in (None, 8):
        on_gpu = cuda.forward(q, k, v, a, state, chunk, True)
        on_cpu = cpu.forward(q, k, v, a, state, chunk, False)
        for x, y in zip(on_gpu[:2], on_cpu[:2]):
            numpy.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
        for saved in (None, on_gpu[2]):
            back_gpu = cuda.backward(q, k, v, a, grad, state, grad_final, chunk, saved)
            back_cpu = cpu.backward(q, k, v, a, grad, state, grad_final, chunk, None)
            for x, y in zip(back_gpu, back_cpu):
                numpy.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tolerance", [(numpy.float32, 1e-4), (numpy.float64, 1e-10)])
@pytest.mark.parametrize("shape", [(1, 1, 1, 16, 16), (2, 3, 100, 64, 32), (1, 2, 257, 64, 65),
                                   (2, 8, 1024, 64, 64)])
@pytest.mark.parametrize("per_head", [False, True])
def test_cuda_matches_cpu(dtype, tolerance, shape, per_head):
    import cupy

    N, H, L, D, M = shape
    q, k, v, a, state = _inputs(N, H, L, D, M, per_head, L, dtype, strength=0.3)
    rng = numpy.random.default_rng(L)
    grad = rng.standard_normal(v.shape).astype(dtype)
    grad_final = rng.standard_normal(state.shape).astype(dtype)
    inputs = (q, k, v, a, state)
    cpu = kernels.decayed_dot_product(*inputs)[:2]
    cpu_grads = kernels.decayed_dot_product_backward(q, k, v, a, grad, state, grad_final)
    gpu_inputs = [cupy.asarray(x) for x in inputs]
    gpu = kernels.decayed_dot_product(*gpu_inputs)[:2]
    gpu_grads = kernels.decayed_dot_product_backward(
        *gpu_inputs[:4], cupy.asarray(grad), gpu_inputs[4], cupy.asarray(grad_final))
    for x, y in zip((*cpu, *cpu_grads), (*gpu, *gpu_grads)):
        assert isinstance(y, cupy.ndarray) and y.dtype == dtype
        scale = tolerance * (1 + numpy.abs(x).max())
        numpy.testing.assert_allclose(cupy.asnumpy(y), x, rtol=tolerance, atol=scale)
