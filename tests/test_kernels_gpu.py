"""CUDA kernels agree with the CPU path (skipped without a GPU: cupy.is_available() is false)."""

from __future__ import annotations

import numpy
import pytest
from seqlib.kernels.causal_product import cuda as causal_cuda

from seqlib import kernels

pytestmark = pytest.mark.gpu

# (N, H, L, D, M): L = 1, L below/above/not a multiple of the 64-row chunk, D != M, D and M in
# {16, 64, 128, 256}, M = 65 (values with the ones column of normalised attention), small N*H
SHAPES = [(1, 1, 1, 16, 16), (2, 3, 100, 64, 32), (1, 2, 257, 128, 64), (1, 1, 33, 16, 128),
          (2, 2, 3000, 64, 64), (1, 1, 70, 200, 80), (1, 2, 130, 256, 16), (2, 1, 64, 64, 256),
          (1, 1, 191, 128, 128), (3, 1, 129, 64, 65)]


def _arrays(shape, dtype, seed=0):
    N, H, L, D, M = shape
    rng = numpy.random.default_rng(seed)
    q, k = (rng.standard_normal((N, H, L, D)).astype(dtype) * 0.3 for _ in range(2))
    v, g = (rng.standard_normal((N, H, L, M)).astype(dtype) for _ in range(2))
    s, gs = (rng.standard_normal((N, H, D, M)).astype(dtype) for _ in range(2))
    return q, k, v, g, s, gs


@pytest.mark.parametrize("path", ["scan", "chunked"])
@pytest.mark.parametrize("dtype, tolerance", [(numpy.float32, 1e-4), (numpy.float64, 1e-10)])
@pytest.mark.parametrize("shape", SHAPES)
def test_causal_product_cuda_matches_cpu(shape, dtype, tolerance, path, monkeypatch):
    import cupy

    N, H, L, D, M = shape
    if path == "scan":
        if not causal_cuda._scan_dimension(numpy.dtype(dtype), D, M):
            pytest.skip("no compiled register-state size holds D and M")
        monkeypatch.setattr(causal_cuda, "SCAN_MAX_LENGTH", L)
    else:
        monkeypatch.setattr(causal_cuda, "SCAN_MAX_LENGTH", 0)
    q, k, v, g, s, gs = _arrays(shape, dtype)
    cpu = kernels.causal_dot_product(q, k, v, s)[:2]  # out, state
    cpu_grads = kernels.causal_dot_product_backward(q, k, v, g, s, gs)
    gpu_inputs = [cupy.asarray(a) for a in (q, k, v, g, s, gs)]
    gq, gk, gv, gg, gs_, ggs = gpu_inputs
    gpu = kernels.causal_dot_product(gq, gk, gv, gs_)[:2]
    gpu_grads = kernels.causal_dot_product_backward(gq, gk, gv, gg, gs_, ggs)
    scale = L ** 0.5
    for a, b in zip((*cpu, *cpu_grads), (*gpu, *gpu_grads)):
        numpy.testing.assert_allclose(cupy.asnumpy(b), a, rtol=tolerance * scale,
                                      atol=tolerance * scale)
    again = kernels.causal_dot_product_backward(gq, gk, gv, gg, gs_, ggs)
    for first, second in zip(gpu_grads, again):  # no atomics: bit-identical reruns
        assert bool((first == second).all())
    saved = kernels.causal_dot_product(gq, gk, gv, gs_, keep_for_backward=True).saved
    reused = kernels.causal_dot_product_backward(gq, gk, gv, gg, gs_, ggs, saved=saved)
    for first, second in zip(gpu_grads, reused):  # the forward's states, as if recomputed
        assert bool((first == second).all())
    # without states, and on the permuted views the attention layer passes
    plain = kernels.causal_dot_product(*(cupy.asarray(a.swapaxes(1, 2)).swapaxes(1, 2)
                                         for a in (q, k, v))).out
    numpy.testing.assert_allclose(cupy.asnumpy(plain), kernels.causal_dot_product(q, k, v).out,
                                  rtol=tolerance * scale, atol=tolerance * scale)


def test_both_cuda_paths_are_exercised():
    cupy = pytest.importorskip("cupy")
    short = causal_cuda.SCAN_MAX_LENGTH
    assert causal_cuda._use_scan(numpy.dtype("float32"), short, 64)
    assert not causal_cuda._use_scan(numpy.dtype("float32"), short + 1, 64)
    assert not causal_cuda._use_scan(numpy.dtype("float64"), short, 128)
    q = cupy.zeros((1, 1, 3000, 64), cupy.float32)  # the chunked path keeps its states
    assert kernels.causal_dot_product(q, q, q, keep_for_backward=True).saved is not None


@pytest.mark.parametrize("dtype, tolerance", [(numpy.float32, 1e-5), (numpy.float64, 1e-12)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("L", [16, 17])  # the carried gradients swap buffers every step
def test_lstm_cuda_matches_cpu(dtype, tolerance, reverse, with_lengths, L):
    import cupy

    rng = numpy.random.default_rng(1)
    N, H = 5, 32
    x_proj = rng.standard_normal((L, N, 4 * H)).astype(dtype)
    w_hh = (rng.standard_normal((4 * H, H)) * 0.2).astype(dtype)
    h0, c0 = (rng.standard_normal((N, H)).astype(dtype) for _ in range(2))
    lengths = numpy.array([L, 1, 9, 0, L - 1]) if with_lengths else None
    grads = [rng.standard_normal(s).astype(dtype) for s in ((L, N, H), (N, H), (N, H))]
    cpu = kernels.lstm_forward(x_proj, w_hh, h0, c0, lengths, reverse)
    cpu_back = kernels.lstm_backward(*grads, cpu[3])
    to_gpu = cupy.asarray
    gpu = kernels.lstm_forward(to_gpu(x_proj), to_gpu(w_hh), to_gpu(h0), to_gpu(c0),
                               None if lengths is None else to_gpu(lengths), reverse)
    gpu_back = kernels.lstm_backward(*(to_gpu(g) for g in grads), gpu[3])
    for a, b in zip((*cpu[:3], *cpu_back), (*gpu[:3], *gpu_back)):
        numpy.testing.assert_allclose(cupy.asnumpy(b), a, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype, tolerance", [(numpy.float32, 1e-4), (numpy.float64, 1e-11)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_lstm_layer_cuda_matches_cpu(dtype, tolerance, reverse, bias):
    """The whole layer, with lengths that stay on the GPU (a CuPy array)."""
    import cupy

    rng = numpy.random.default_rng(2)
    L, N, F, H = 17, 5, 24, 32
    x = rng.standard_normal((L, N, F)).astype(dtype)
    w_ih, w_hh = ((rng.standard_normal((4 * H, n)) * 0.2).astype(dtype) for n in (F, H))
    b_ih, b_hh = ((rng.standard_normal(4 * H).astype(dtype) if bias else None)
                  for _ in range(2))
    h0, c0 = (rng.standard_normal((N, H)).astype(dtype) for _ in range(2))
    lengths = numpy.array([L, 1, 9, 0, L - 1])
    grads = [rng.standard_normal(s).astype(dtype) for s in ((L, N, H), (N, H), (N, H))]
    inputs = (x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths)
    cpu = kernels.lstm_layer(*inputs, reverse)
    cpu_back = kernels.lstm_layer_backward(*grads, cpu.saved)
    gpu = kernels.lstm_layer(*(None if a is None else cupy.asarray(a) for a in inputs), reverse)
    gpu_back = kernels.lstm_layer_backward(*(cupy.asarray(g) for g in grads), gpu.saved)
    for a, b in zip((*cpu[:3], *cpu_back), (*gpu[:3], *gpu_back)):
        if a is None:
            assert b is None
            continue
        assert isinstance(b, cupy.ndarray)
        numpy.testing.assert_allclose(cupy.asnumpy(b), a, rtol=tolerance, atol=tolerance)
