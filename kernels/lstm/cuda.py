"""The LSTM recurrence on CuPy: cuBLAS for the GEMMs, one fused kernel per step for everything
elementwise (``kernels/cuda/lstm.cu``).

The step kernels compute sigmoid(x) = 0.5 tanh(0.5 x) + 0.5 themselves, so the input
projections arrive unscaled (``SIGMOID_SCALE = 1``). Gates are i, f, o, g (``layout.py``).
"""

from __future__ import annotations

import numpy

from .._backend import cupy
from ..cuda_sources import get_kernel, type_name
from .layout import LSTMCache

SIGMOID_SCALE = 1.0


class _Gemm:
    """Row-major GEMMs ``C = A B`` or ``C += A B`` on raw device pointers, straight through
    cuBLAS. The per-step GEMMs are small, so Python's cost per call is most of a step: this
    spares ``cupy.matmul``'s and the slicing of a view per operand, and the add is free
    (beta = 1)."""

    def __init__(self, dtype):
        from cupy.cuda import device  # (only importable with CuPy)

        try:
            from cupy_backends.cuda.libs import cublas
        except ImportError:  # pragma: no cover - older CuPy
            from cupy.cuda import cublas
        self.handle = device.get_cublas_handle()
        self.gemm = cublas.sgemm if numpy.dtype(dtype) == numpy.float32 else cublas.dgemm
        self.scalars = numpy.array([1, 0], dtype)  # kept alive: cuBLAS reads them by pointer
        self.one = self.scalars.ctypes.data
        self.zero = self.one + self.scalars.itemsize

    def __call__(self, m: int, n: int, k: int, a: int, b: int, c: int, accumulate: bool):
        """``C (m x n) (+)= A (m x k) B (k x n)``, all contiguous row-major, by pointer: that is
        column-major ``C^T = B^T A^T``."""
        self.gemm(self.handle, 0, 0, n, m, k, self.one, b, n, a, k,
                  self.one if accumulate else self.zero, c, n)


def _pointers(array) -> list:
    """Device pointers to ``array[0], array[1], ...`` of a C-contiguous CuPy array."""
    base, stride = array.data.ptr, array.strides[0]
    return [base + i * stride for i in range(array.shape[0])]


def _step_kernel(name: str, dtype, N: int, H: int):
    """``(kernel, grid, block, sizes)`` for ``name<T>`` over N*H threads."""
    kernel = get_kernel("lstm.cu", f"{name}<{type_name(dtype)}>")
    threads = 256
    return kernel, (-(-N * H // threads),), (threads,), (numpy.int32(N), numpy.int32(H))


def _active_rows(masks, L: int):
    """``(pointers, flag, rows)``: per step a pointer to one byte per row that is inside its
    sequence, and the kernels' flag saying whether to read them (without lengths every row is
    active and the pointers are null), plus the array that owns the bytes (kept alive by the
    caller)."""
    if masks is None:
        return [0] * L, numpy.int32(0), None
    rows = cupy.ascontiguousarray(masks[:, :, 0]).astype(cupy.uint8)
    return _pointers(rows), numpy.int32(1), rows


def forward(gates, w_hh, hs, cs, tanh_cs, masks) -> None:
    """The recurrence over all steps, in place (arguments as for the CPU's ``forward``). Per
    step: one cuBLAS GEMM adding ``h @ W_hh^T`` to the step's gate buffer (prefilled with
    ``x_proj``), then one fused kernel for the gate math and the state update. Everything a
    step passes is a precomputed pointer."""
    L, N, G = gates.shape
    H = G // 4
    w_t = cupy.ascontiguousarray(w_hh.T)  # (H, 4H)
    gemm = _Gemm(gates.dtype)
    kernel, grid, block, sizes = _step_kernel("lstm_step_forward", gates.dtype, N, H)
    active, masked, _rows = _active_rows(masks, L)
    g, h, c, t = (_pointers(a) for a in (gates, hs, cs, tanh_cs))
    w = w_t.data.ptr
    for k in range(L):
        gemm(N, G, H, h[k], w, g[k], True)
        kernel(grid, block, (g[k], h[k], c[k], h[k + 1], c[k + 1], t[k], active[k], masked,
                             *sizes))


def backward(cache: LSTMCache, grad_output, dh, dc, d_gates):
    """BPTT (arguments and result as for the CPU's ``backward``). Per step: one fused kernel
    for the gate gradients and the carried cell gradient, then one cuBLAS GEMM adding
    ``d_gates @ W_hh`` to the hidden gradient that bypassed the cell."""
    gates, cs, tanh_cs = cache.gates, cache.cs, cache.tanh_cs
    L, N, G = gates.shape
    H = G // 4
    grad_output = cupy.ascontiguousarray(grad_output)
    w_hh = cupy.ascontiguousarray(cache.w_hh)
    gemm = _Gemm(gates.dtype)
    kernel, grid, block, sizes = _step_kernel("lstm_step_backward", gates.dtype, N, H)
    active, masked, _rows = _active_rows(cache.masks, L)
    g, c, t, dy, dg = (_pointers(a) for a in (gates, cs, tanh_cs, grad_output, d_gates))
    dh, dc = cupy.ascontiguousarray(dh), cupy.ascontiguousarray(dc)
    dh_next, dc_prev = cupy.empty_like(dh), cupy.empty_like(dc)
    dh_ptr, dh_next_ptr, dc_ptr, dc_prev_ptr = (a.data.ptr for a in (dh, dh_next, dc, dc_prev))
    w = w_hh.data.ptr
    for k in range(L - 1, -1, -1):
        kernel(grid, block, (g[k], c[k], t[k], dh_ptr, dy[k], dc_ptr, dg[k], dc_prev_ptr,
                             dh_next_ptr, active[k], masked, *sizes))
        gemm(N, H, G, dg[k], w, dh_next_ptr, True)
        dh_ptr, dh_next_ptr = dh_next_ptr, dh_ptr
        dc_ptr, dc_prev_ptr = dc_prev_ptr, dc_ptr
    # after an even number of swaps the results sit in the arrays they started in
    if L % 2:
        dh, dc = dh_next, dc_prev
    return dh, dc
