"""One LSTM layer in one direction over a whole sequence: forward and BPTT on raw arrays.

Gate order is PyTorch's ``i, f, g, o`` at the interface. Inside, gates are kept as
``i, f, o, g`` so the three sigmoids are one contiguous slice: per step the forward pass is
one ``h @ W_hh^T`` GEMM into a preallocated buffer plus a handful of in-place elementwise
calls, and the backward pass collects every step's gate gradients so that ``dW_hh`` is one
GEMM after the loop. Steps past a sequence's length leave ``h, c`` unchanged, output zeros
and take no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from ._backend import check_same_device, get_array_module


def _to_internal(array, axis: int):
    """Reorder the gate blocks along ``axis`` from (i, f, g, o) to (i, f, o, g)."""
    xp = get_array_module(array)
    i, f, g, o = xp.split(array, 4, axis=axis)
    return xp.concatenate([i, f, o, g], axis=axis)


def _to_pytorch(array, axis: int):
    """Reorder the gate blocks along ``axis`` from (i, f, o, g) back to (i, f, g, o)."""
    xp = get_array_module(array)
    i, f, o, g = xp.split(array, 4, axis=axis)
    return xp.concatenate([i, f, g, o], axis=axis)


@dataclass
class LSTMCache:
    """What ``lstm_backward`` needs from ``lstm_forward`` (all in processing order)."""

    gates: object  # (L, N, 4H) activated gates, internal order i, f, o, g
    hs: object  # (L + 1, N, H) hidden state before each step, and after the last
    cs: object  # (L + 1, N, H) cell state likewise
    tanh_cs: object  # (L, N, H) tanh of the new cell state of each step
    w_hh: object  # (4H, H) recurrent weight, internal order
    masks: object  # (L, N, 1) True where a step is inside its sequence, or None
    reverse: bool
    gate_order: str = "ifgo"  # the order the caller uses


def _step_masks(xp, lengths, L: int, N: int, reverse: bool):
    """(L, N, 1) bool masks in processing order, or None if every sequence is full length."""
    if lengths is None:
        return None
    lengths = xp.asarray(lengths).reshape(N)
    if int(lengths.min()) >= L:
        return None
    times = xp.arange(L)[::-1] if reverse else xp.arange(L)
    return (times[:, None] < lengths[None, :])[:, :, None]


def lstm_forward(x_proj, w_hh, h0, c0, lengths=None, reverse: bool = False,
                 gate_order: str = "ifgo", *, scratch: bool = False):
    """Run the recurrence over all steps.

    Args:
        x_proj: ``(L, N, 4H)`` the input projections ``x @ W_ih^T + b_ih + b_hh`` of every step.
        w_hh: ``(4H, H)`` the recurrent weight (PyTorch layout, gates i, f, g, o).
        h0, c0: ``(N, H)`` initial states.
        lengths: optional ``(N,)`` ints; steps ``t >= lengths[n]`` do not touch sequence n.
        reverse: run from the last step to the first (the backward direction of a BiLSTM);
            each sequence then starts at its own end.
        gate_order: "ifgo" (PyTorch's, for ``x_proj`` and ``w_hh``) or "ifog" (the kernel's own,
            which saves reordering the big ``x_proj``; ``lstm_backward`` then returns
            ``grad_x_proj`` and ``grad_w_hh`` in that order too).
        scratch: ``x_proj`` (in "ifog" order) is the caller's own buffer, already multiplied
            by ``gate_scale``: the recurrence then runs in it (overwriting it) instead of in a
            scaled copy. ``nn.LSTM`` folds the scale into its weights, sparing a pass over
            ``(L, N, 4H)``. Gradients are those of the unscaled ``x_proj``, as without it.
    Returns:
        ``(output (L, N, H), h_n (N, H), c_n (N, H), cache)``; output is zero at padded steps.
    """
    _check_forward(x_proj, w_hh, h0, c0, lengths)
    xp = get_array_module(x_proj, w_hh)
    L, N, G = x_proj.shape
    H = G // 4
    dtype = x_proj.dtype
    if gate_order not in ("ifgo", "ifog"):
        raise ValueError(f"lstm_forward: gate_order must be 'ifgo' or 'ifog', got {gate_order!r}")
    masks = _step_masks(xp, lengths, L, N, reverse)
    if scratch and gate_order != "ifog":
        raise ValueError("lstm_forward: scratch=True needs x_proj in gate_order 'ifog'")
    if gate_order == "ifgo":
        x_proj, w_hh = _to_internal(x_proj, 2), _to_internal(w_hh, 0)
    if reverse:
        x_proj = x_proj[::-1]
    w_t = w_hh.T.copy()  # (H, 4H); a copy even when the transpose is contiguous (H = 1)
    if not scratch:
        gates = xp.empty((L, N, G), dtype)
        xp.multiply(x_proj, gate_scale(xp, G, dtype), out=gates)
    else:  # reversed, it is copied once into processing order
        gates = xp.ascontiguousarray(x_proj)
    hs = xp.empty((L + 1, N, H), dtype)
    cs = xp.empty((L + 1, N, H), dtype)
    tanh_cs = xp.empty((L, N, H), dtype)
    hs[0], cs[0] = h0, c0
    if xp.__name__ == "cupy":
        _cuda_forward_loop(w_t, gates, hs, cs, tanh_cs, masks)
    else:
        _forward_loop(w_t, gates, hs, cs, tanh_cs, masks)
    outputs = hs[1:] if masks is None else hs[1:] * masks
    if reverse:
        outputs = outputs[::-1]
    cache = LSTMCache(gates, hs, cs, tanh_cs, w_hh, masks, reverse, gate_order)
    return xp.ascontiguousarray(outputs), hs[L].copy(), cs[L].copy(), cache


def gate_scale(xp, G: int, dtype):
    """``(4H,)``: what the kernel multiplies ``x_proj`` (in "ifog" order) by before the
    recurrence on this array module: on the CPU 0.5 on the i, f, o blocks (it takes sigmoid(x)
    as 0.5 tanh(x / 2) + 0.5, one tanh call for all four gates), on CUDA ones."""
    scale = xp.ones(G, dtype)
    if xp.__name__ != "cupy":
        scale[: 3 * (G // 4)] = 0.5
    return scale


def _check_forward(x_proj, w_hh, h0, c0, lengths):
    """Clear errors for inputs the recurrence would otherwise trip over deep inside NumPy."""
    check_same_device("lstm_forward", x_proj=x_proj, w_hh=w_hh, h0=h0, c0=c0)
    if x_proj.ndim != 3 or x_proj.shape[2] == 0 or x_proj.shape[2] % 4:
        raise ValueError(f"lstm_forward: x_proj must be (L, N, 4H) with H >= 1, got shape "
                         f"{x_proj.shape}")
    L, N, G = x_proj.shape
    H = G // 4
    for name, array, shape in (("w_hh", w_hh, (G, H)), ("h0", h0, (N, H)), ("c0", c0, (N, H))):
        if tuple(array.shape) != shape:
            raise ValueError(f"lstm_forward: {name} must be {shape} for x_proj of shape "
                             f"{x_proj.shape}, got {tuple(array.shape)}")
    dtypes = [a.dtype for a in (x_proj, w_hh, h0, c0)]
    if len(set(dtypes)) > 1 or x_proj.dtype.kind != "f":
        raise TypeError("lstm_forward: x_proj, w_hh, h0 and c0 must share one float dtype, got "
                        + ", ".join(str(d) for d in dtypes))
    if lengths is not None and numpy.size(lengths) != N:
        raise ValueError(f"lstm_forward: lengths must hold one length per sequence ({N}), got "
                         f"{numpy.size(lengths)}")


def _forward_loop(w_t, gates, hs, cs, tanh_cs, masks):
    """The CPU recurrence: one GEMM into a hot scratch buffer and in-place gate math a step."""
    xp = get_array_module(gates)
    L, N, G = gates.shape
    H = G // 4
    # sigmoid(x) = 0.5 * tanh(0.5 x) + 0.5: the gate buffer holds x_proj with the inner 0.5
    # applied (gate_scale); fold it into W_hh once too, then each step adds h @ W_hh^T
    w_t[:, : 3 * H] *= 0.5
    product = xp.empty((N, G), gates.dtype)
    scratch = xp.empty((N, H), gates.dtype)
    for k in range(L):
        a = gates[k]
        xp.matmul(hs[k], w_t, out=product)
        a += product
        xp.tanh(a, out=a)
        sig = a[:, : 3 * H]
        sig *= 0.5
        sig += 0.5
        i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        c_new, h_new = cs[k + 1], hs[k + 1]
        xp.multiply(f, cs[k], out=c_new)
        xp.multiply(i, g, out=scratch)
        c_new += scratch
        xp.tanh(c_new, out=tanh_cs[k])
        xp.multiply(o, tanh_cs[k], out=h_new)
        if masks is not None:  # padded steps keep the previous state
            keep = ~masks[k]
            xp.copyto(c_new, cs[k], where=keep)
            xp.copyto(h_new, hs[k], where=keep)


def lstm_backward(grad_output, grad_h_n, grad_c_n, cache: LSTMCache):
    """Backpropagate through ``lstm_forward``.

    Args:
        grad_output: ``(L, N, H)`` gradient of the outputs.
        grad_h_n, grad_c_n: ``(N, H)`` gradients of the final states, or None.
        cache: from ``lstm_forward``.
    Returns:
        ``(grad_x_proj (L, N, 4H), grad_w_hh (4H, H), grad_h0 (N, H), grad_c0 (N, H))``, gates in
        PyTorch's order.
    """
    gates, hs = cache.gates, cache.hs
    check_same_device("lstm_backward", grad_output=grad_output, grad_h_n=grad_h_n,
                      grad_c_n=grad_c_n, cache=gates)
    xp = get_array_module(grad_output)
    L, N, G = gates.shape
    H = G // 4
    dtype = gates.dtype
    for name, array, shape in (("grad_output", grad_output, (L, N, H)),
                               ("grad_h_n", grad_h_n, (N, H)), ("grad_c_n", grad_c_n, (N, H))):
        if array is not None and tuple(array.shape) != shape:
            raise ValueError(f"lstm_backward: {name} must be {shape}, got {tuple(array.shape)}")
    grad_output = grad_output[::-1] if cache.reverse else grad_output
    dh = xp.zeros((N, H), dtype) if grad_h_n is None else grad_h_n.astype(dtype, copy=True)
    dc = xp.zeros((N, H), dtype) if grad_c_n is None else grad_c_n.astype(dtype, copy=True)
    d_gates = xp.empty((L, N, G), dtype)
    loop = _cuda_backward_loop if xp.__name__ == "cupy" else _backward_loop
    dh, dc = loop(cache, grad_output, dh, dc, d_gates)
    flat = d_gates.reshape(L * N, G)
    grad_w_hh = flat.T @ hs[:L].reshape(L * N, H)
    grad_x_proj = d_gates[::-1] if cache.reverse else d_gates
    if cache.gate_order == "ifgo":
        grad_w_hh, grad_x_proj = _to_pytorch(grad_w_hh, 0), _to_pytorch(grad_x_proj, 2)
    return xp.ascontiguousarray(grad_x_proj), grad_w_hh, dh, dc


# Steps per block of local derivatives: a block's factors (CHUNK * N * 4H floats) should stay
# in cache between being computed and being used, while a dozen calls per block stay cheap.
_CHUNK_BYTES = 1 << 19


def _local_derivatives(cache: LSTMCache, start: int = 0, stop: int | None = None,
                       out=None, through_cell=None):
    """Steps ``start:stop``'s local derivative factors, ``(k, N, 4, H)`` in gate slots i, f, o,
    g: what multiplies the cell gradient (i, f, g slots) or the hidden gradient (o slot) to give
    the gate's pre-activation gradient, plus ``o * (1 - tanh(c)^2)`` for the cell path. A dozen
    calls over a block of steps instead of a dozen per step, in blocks small enough to stay in
    cache (one pass over a whole 128 x 32 x 1024 sequence is memory-bound: ~10% slower)."""
    xp = get_array_module(cache.gates)
    L, N, G = cache.gates.shape
    H = G // 4
    stop = L if stop is None else stop
    gates = cache.gates[start:stop].reshape(-1, N, 4, H)
    sig, g = gates[:, :, :3], gates[:, :, 3]
    tc = cache.tanh_cs[start:stop]
    factors = xp.empty_like(gates) if out is None else out[: stop - start]
    xp.subtract(1, sig, out=factors[:, :, :3])
    factors[:, :, :3] *= sig  # sigmoid' = s(1-s) for i, f, o
    factors[:, :, 0] *= g  # d i_pre = dc * g * i(1-i)
    factors[:, :, 1] *= cache.cs[start:stop]  # d f_pre = dc * c_prev * f(1-f)
    factors[:, :, 2] *= tc  # d o_pre = dh * tanh(c) * o(1-o)
    xp.multiply(g, g, out=factors[:, :, 3])
    xp.subtract(1, factors[:, :, 3], out=factors[:, :, 3])
    factors[:, :, 3] *= gates[:, :, 0]  # d g_pre = dc * i * (1-g^2)
    through = xp.empty_like(tc) if through_cell is None else through_cell[: stop - start]
    xp.multiply(tc, tc, out=through)  # dc += dh * o * (1 - tanh(c)^2)
    xp.subtract(1, through, out=through)
    through *= gates[:, :, 2]
    return factors, through


def _backward_loop(cache: LSTMCache, grad_output, dh, dc, d_gates):
    """BPTT on the CPU: fills ``d_gates`` step by step; returns the gradients of h0, c0."""
    xp = get_array_module(grad_output)
    L, N, G = cache.gates.shape
    H = G // 4
    chunk = max(1, min(L, _CHUNK_BYTES // (N * G * cache.gates.itemsize)))
    factor_block = xp.empty((chunk, N, 4, H), cache.gates.dtype)
    through_block = xp.empty((chunk, N, H), cache.gates.dtype)
    forget = cache.gates.reshape(L, N, 4, H)[:, :, 1]
    masks = cache.masks
    dh_step = xp.empty_like(dh)
    dc_total = xp.empty_like(dc)
    carried_h = xp.empty_like(dh)
    start = L
    for k in range(L - 1, -1, -1):
        if k < start:  # the next block of local derivatives, from its last step down
            start = max(0, k + 1 - chunk)
            factors, through_cell = _local_derivatives(cache, start, k + 1, factor_block,
                                                       through_block)
        j = k - start
        xp.add(dh, grad_output[k], out=dh_step)
        if masks is not None:  # padded steps: no gradient into the cell
            dh_step *= masks[k]
        xp.multiply(dh_step, through_cell[j], out=dc_total)
        dc_total += dc if masks is None else dc * masks[k]
        d = d_gates[k].reshape(N, 4, H)
        xp.multiply(dc_total[:, None, :], factors[j], out=d)
        xp.multiply(dh_step, factors[j, :, 2], out=d[:, 2])
        xp.matmul(d_gates[k], cache.w_hh, out=carried_h)
        if masks is None:
            dc = dc_total * forget[k]
            dh, carried_h = carried_h, dh
        else:  # state gradients of padded rows pass straight through
            skip = ~masks[k]
            dc = dc_total * forget[k] + dc * skip
            dh = carried_h + dh * skip
            carried_h = xp.empty_like(dh)
    return dh, dc


# ---- CUDA: cuBLAS for the GEMMs, one fused kernel per step for everything elementwise ------


class _Gemm:
    """Row-major GEMMs ``C = A B`` or ``C += A B`` on raw device pointers, straight through
    cuBLAS. The per-step GEMMs are small, so Python's cost per call is most of a step: this
    spares ``cupy.matmul``'s and the slicing of a view per operand, and the add is free
    (beta = 1)."""

    def __init__(self, dtype):
        import numpy
        from cupy.cuda import device

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
    import numpy

    from .cuda_sources import get_kernel, type_name

    kernel = get_kernel("lstm.cu", f"{name}<{type_name(dtype)}>")
    threads = 256
    return kernel, (-(-N * H // threads),), (threads,), (numpy.int32(N), numpy.int32(H))


def _active_rows(xp, masks, L: int):
    """``(pointers, flag)``: per step a pointer to one byte per row that is inside its sequence,
    and the kernels' flag saying whether to read them (without lengths every row is active and
    the pointers are null), plus the array that owns the bytes (kept alive by the caller)."""
    import numpy

    if masks is None:
        return [0] * L, numpy.int32(0), None
    rows = xp.ascontiguousarray(masks[:, :, 0]).astype(xp.uint8)
    return _pointers(rows), numpy.int32(1), rows


def _cuda_forward_loop(w_t, gates, hs, cs, tanh_cs, masks):
    """Per step: one cuBLAS GEMM adding ``h @ W_hh^T`` to the step's gate buffer (prefilled with
    ``x_proj``), then one fused kernel for the gate math and the state update. Everything a
    step passes is a precomputed pointer."""
    xp = get_array_module(gates)
    L, N, G = gates.shape
    H = G // 4
    w_t = xp.ascontiguousarray(w_t)
    gemm = _Gemm(gates.dtype)
    kernel, grid, block, sizes = _step_kernel("lstm_step_forward", gates.dtype, N, H)
    active, masked, _rows = _active_rows(xp, masks, L)
    g, h, c, t = (_pointers(a) for a in (gates, hs, cs, tanh_cs))
    w = w_t.data.ptr
    for k in range(L):
        gemm(N, G, H, h[k], w, g[k], True)
        kernel(grid, block, (g[k], h[k], c[k], h[k + 1], c[k + 1], t[k], active[k], masked,
                             *sizes))


def _cuda_backward_loop(cache: LSTMCache, grad_output, dh, dc, d_gates):
    """Per step: one fused kernel for the gate gradients and the carried cell gradient, then one
    cuBLAS GEMM adding ``d_gates @ W_hh`` to the hidden gradient that bypassed the cell."""
    xp = get_array_module(grad_output)
    gates, cs, tanh_cs = cache.gates, cache.cs, cache.tanh_cs
    L, N, G = gates.shape
    H = G // 4
    grad_output = xp.ascontiguousarray(grad_output)
    w_hh = xp.ascontiguousarray(cache.w_hh)
    gemm = _Gemm(gates.dtype)
    kernel, grid, block, sizes = _step_kernel("lstm_step_backward", gates.dtype, N, H)
    active, masked, _rows = _active_rows(xp, cache.masks, L)
    g, c, t, dy, dg = (_pointers(a) for a in (gates, cs, tanh_cs, grad_output, d_gates))
    dh, dc = xp.ascontiguousarray(dh), xp.ascontiguousarray(dc)
    dh_next, dc_prev = xp.empty_like(dh), xp.empty_like(dc)
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
