"""LSTM kernels and nn.LSTM/LSTMCell against a step-by-step NumPy reference, with gradchecks."""

from __future__ import annotations

import numpy
import pytest
from helpers import fake_gpu
from hypothesis import given
from hypothesis import strategies as st

import seqlib as sl
from seqlib import kernels, nn


def sigmoid(x):
    return 1 / (1 + numpy.exp(-x))


def reference_layer(x, w_ih, w_hh, b, h, c, lengths, reverse):
    """One direction of one layer, one time step at a time (PyTorch's equations)."""
    L, N = x.shape[:2]
    H = w_hh.shape[1]
    out = numpy.zeros((L, N, H))
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        a = x[t] @ w_ih.T + h @ w_hh.T + b
        i, f = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H])
        g, o = numpy.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c_new = f * c + i * g
        h_new = o * numpy.tanh(c_new)
        active = (t < lengths)[:, None]
        h, c = numpy.where(active, h_new, h), numpy.where(active, c_new, c)
        out[t] = numpy.where(active, h_new, 0)
    return out, h, c


def reference_lstm(model, x, h0, c0, lengths):
    """A whole nn.LSTM (time-major input) from its parameters."""
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    D = 2 if model.bidirectional else 1
    lengths = numpy.full(x.shape[1], x.shape[0]) if lengths is None else numpy.asarray(lengths)
    hs, cs = [], []
    for layer in range(model.num_layers):
        outs = []
        for d, suffix in enumerate(["", "_reverse"][:D]):
            key = f"l{layer}{suffix}"
            bias = params.get(f"bias_ih_{key}", 0) + params.get(f"bias_hh_{key}", 0)
            out, h, c = reference_layer(x, params[f"weight_ih_{key}"], params[f"weight_hh_{key}"],
                                        bias, h0[layer * D + d], c0[layer * D + d], lengths, d == 1)
            outs.append(out)
            hs.append(h)
            cs.append(c)
        x = numpy.concatenate(outs, -1)
    return x, numpy.stack(hs), numpy.stack(cs)


def finite_difference_check(objective, arrays, analytic, eps=1e-6, tolerance=1e-6):
    """Central differences of ``objective()`` at a dozen entries of each array."""
    for array, gradient in zip(arrays, analytic):
        for index in list(numpy.ndindex(array.shape))[:: max(1, array.size // 12)]:
            original = array[index]
            array[index] = original + eps
            plus = objective()
            array[index] = original - eps
            minus = objective()
            array[index] = original
            assert abs((plus - minus) / (2 * eps) - gradient[index]) < tolerance


# ---- kernels -----------------------------------------------------------------------------
@pytest.mark.parametrize("reverse", [False, True])
@given(L=st.integers(1, 6), N=st.integers(1, 3), H=st.integers(1, 4), data=st.data())
def test_kernel_matches_reference_and_finite_differences(reverse, L, N, H, data):
    rng = numpy.random.default_rng(L * 100 + N * 10 + H)
    with_lengths = data.draw(st.booleans())
    lengths = rng.integers(0, L + 1, N) if with_lengths else None
    x_proj = rng.standard_normal((L, N, 4 * H))
    w_hh = rng.standard_normal((4 * H, H)) * 0.5
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    out, h_n, c_n, cache = kernels.lstm_forward(x_proj, w_hh, h0, c0, lengths, reverse)
    identity = numpy.eye(4 * H)
    expected = reference_layer(x_proj, identity, w_hh, 0, h0, c0,
                               numpy.full(N, L) if lengths is None else lengths, reverse)
    for got, want in zip((out, h_n, c_n), expected):
        numpy.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    grads = [rng.standard_normal(a.shape) for a in (out, h_n, c_n)]
    analytic = kernels.lstm_backward(*grads, cache)

    def objective():
        values = reference_layer(x_proj, identity, w_hh, 0, h0, c0,
                                 numpy.full(N, L) if lengths is None else lengths, reverse)
        return sum((v * g).sum() for v, g in zip(values, grads))

    finite_difference_check(objective, (x_proj, w_hh, h0, c0), analytic)


@pytest.mark.parametrize("chunk_steps", [1, 2, 3])
@pytest.mark.parametrize("reverse", [False, True])
def test_backward_in_blocks_of_steps_equals_one_block(monkeypatch, chunk_steps, reverse):
    L, N, H = 7, 3, 2
    rng = numpy.random.default_rng(chunk_steps)
    x_proj = rng.standard_normal((L, N, 4 * H))
    w_hh = rng.standard_normal((4 * H, H)) * 0.5
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    lengths = numpy.array([7, 4, 0])
    *outputs, cache = kernels.lstm_forward(x_proj, w_hh, h0, c0, lengths, reverse)
    grads = [rng.standard_normal(a.shape) for a in outputs]
    whole = kernels.lstm_backward(*grads, cache)
    step_bytes = N * 4 * H * x_proj.itemsize
    monkeypatch.setattr(kernels.lstm.cpu, "_CHUNK_BYTES", chunk_steps * step_bytes)
    blocks = kernels.lstm_backward(*grads, cache)
    for got, want in zip(blocks, whole):
        numpy.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", ["both", "ih", "none"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_layer_kernel_matches_reference_and_finite_differences(reverse, bias, with_lengths):
    """``lstm_layer`` takes PyTorch's layout (gates i, f, g, o, two biases) and gives
    PyTorch's results; its backward pass matches finite differences of the reference."""
    rng = numpy.random.default_rng(7)
    L, N, F, H = 5, 3, 4, 3
    x = rng.standard_normal((L, N, F))
    w_ih, w_hh = rng.standard_normal((4 * H, F)) * 0.5, rng.standard_normal((4 * H, H)) * 0.5
    b_ih = rng.standard_normal(4 * H) if bias != "none" else None
    b_hh = rng.standard_normal(4 * H) if bias == "both" else None
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    lengths = numpy.array([5, 2, 0]) if with_lengths else None
    full = numpy.full(N, L) if lengths is None else lengths
    result = kernels.lstm_layer(x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse)
    assert result._fields == ("output", "h_n", "c_n", "saved")

    def reference():
        b = sum(v for v in (b_ih, b_hh) if v is not None)
        return reference_layer(x, w_ih, w_hh, b, h0, c0, full, reverse)

    for got, want in zip(result[:3], reference()):
        numpy.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    grads = [rng.standard_normal(a.shape) for a in result[:3]]
    analytic = kernels.lstm_layer_backward(*grads, result.saved)
    assert analytic._fields == ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
    assert (analytic.b_ih is None) == (b_ih is None) and (analytic.b_hh is None) == (b_hh is None)
    arrays = [(a, g) for a, g in zip((x, w_ih, w_hh, b_ih, b_hh, h0, c0), analytic)
              if a is not None]
    finite_difference_check(lambda: sum((v * g).sum() for v, g in zip(reference(), grads)),
                            [a for a, _ in arrays], [g for _, g in arrays])
    partial = kernels.lstm_layer_backward(*grads, result.saved, input_grad=False,
                                          weight_grad=False)
    assert partial.x is None and partial.w_ih is None and partial.b_ih is None
    numpy.testing.assert_array_equal(partial.w_hh, analytic.w_hh)
    numpy.testing.assert_array_equal(partial.h0, analytic.h0)


def test_layer_kernel_agrees_with_the_recurrence_kernel():
    """``lstm_layer`` is ``lstm_forward`` on ``x W_ih^T + b_ih + b_hh``, in float32 too."""
    rng = numpy.random.default_rng(3)
    L, N, F, H = 6, 2, 5, 4
    x = rng.standard_normal((L, N, F)).astype(numpy.float32)
    w_ih, w_hh = (rng.standard_normal((4 * H, n)).astype(numpy.float32) for n in (F, H))
    b_ih, b_hh = (rng.standard_normal(4 * H).astype(numpy.float32) for _ in range(2))
    h0 = c0 = numpy.zeros((N, H), numpy.float32)
    layer = kernels.lstm_layer(x, w_ih, w_hh, b_ih, b_hh, h0, c0, None, True)
    recurrence = kernels.lstm_forward(x @ w_ih.T + b_ih + b_hh, w_hh, h0, c0, None, True)
    for a, b in zip(layer[:3], recurrence[:3]):
        assert a.dtype == numpy.float32
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_kernel_float32_stays_float32():
    x_proj = numpy.zeros((3, 2, 8), numpy.float32)
    out, h, c, cache = kernels.lstm_forward(x_proj, numpy.zeros((8, 2), numpy.float32),
                                            numpy.zeros((2, 2), numpy.float32),
                                            numpy.zeros((2, 2), numpy.float32))
    assert out.dtype == h.dtype == c.dtype == numpy.float32
    grads = kernels.lstm_backward(out, None, None, cache)
    assert all(g.dtype == numpy.float32 for g in grads)


def test_kernel_gates_do_not_overflow():
    huge = numpy.full((2, 1, 8), 1e4, numpy.float32)
    out, _, c, _ = kernels.lstm_forward(huge * numpy.array([1, -1] * 4, numpy.float32),
                                        numpy.zeros((8, 2), numpy.float32),
                                        numpy.zeros((1, 2), numpy.float32),
                                        numpy.zeros((1, 2), numpy.float32))
    assert numpy.isfinite(out).all() and numpy.isfinite(c).all()


# ---- nn.LSTM -----------------------------------------------------------------------------
CONFIGS = [
    dict(num_layers=1), dict(num_layers=2), dict(num_layers=1, bidirectional=True),
    dict(num_layers=2, bidirectional=True), dict(num_layers=2, bias=False),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_matches_reference(config, with_lengths, with_state):
    model = nn.LSTM(3, 4, **config).double()
    D = 2 if model.bidirectional else 1
    rng = numpy.random.default_rng(0)
    L, N = 5, 3
    x = rng.standard_normal((L, N, 3))
    h0 = rng.standard_normal((model.num_layers * D, N, 4)) if with_state else numpy.zeros(
        (model.num_layers * D, N, 4))
    c0 = rng.standard_normal(h0.shape) if with_state else numpy.zeros(h0.shape)
    lengths = [5, 2, 3] if with_lengths else None
    hx = (sl.tensor(h0), sl.tensor(c0)) if with_state else None
    out, (h_n, c_n) = model(sl.tensor(x), hx, lengths=lengths)
    expected = reference_lstm(model, x, h0, c0, lengths)
    for got, want in zip((out, h_n, c_n), expected):
        numpy.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_gradcheck(config, with_lengths):
    model = nn.LSTM(2, 2, **config).double()
    D = 2 if model.bidirectional else 1
    x = sl.randn(3, 2, 2, dtype=sl.float64, requires_grad=True)
    h0 = sl.randn(model.num_layers * D, 2, 2, dtype=sl.float64, requires_grad=True)
    c0 = sl.randn(model.num_layers * D, 2, 2, dtype=sl.float64, requires_grad=True)
    lengths = [3, 1] if with_lengths else None
    params = list(model.parameters())

    def fn(x, h0, c0, *weights):
        out, (h_n, c_n) = model(x, (h0, c0), lengths=lengths)
        return out, h_n, c_n

    sl.gradcheck(fn, [x, h0, c0, *params])


def test_lstm_names_shapes_and_init_follow_pytorch():
    model = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    assert list(model.state_dict()) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
        "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
        "bias_hh_l0_reverse",
        "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
        "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse",
        "bias_hh_l1_reverse",
    ]
    assert model.weight_ih_l0.shape == (20, 3) and model.weight_ih_l1.shape == (20, 10)
    assert model.weight_hh_l1_reverse.shape == (20, 5)
    bound = 1 / numpy.sqrt(5)
    assert all(abs(p).max().item() <= bound for p in model.parameters())
    out, (h_n, c_n) = model(sl.randn(7, 4, 3))
    assert out.shape == (7, 4, 10) and h_n.shape == c_n.shape == (4, 4, 5)
    assert repr(model) == "LSTM(3, 5, num_layers=2, bidirectional=True)"


def test_lstm_batch_first_and_unbatched_agree_with_time_major():
    model = nn.LSTM(3, 4, num_layers=2)
    x = sl.randn(5, 2, 3)
    out, (h_n, _) = model(x)
    model.batch_first = True
    out_bf, (h_bf, _) = model(x.transpose(0, 1))
    assert out_bf.transpose(0, 1).allclose(out) and h_bf.allclose(h_n)
    model.batch_first = False
    single, (h_single, _) = model(x[:, 0])
    assert single.shape == (5, 4) and h_single.shape == (2, 4)
    assert single.allclose(out[:, 0], atol=1e-6)


def test_padded_steps_do_not_leak_into_final_states():
    model = nn.LSTM(2, 3, bidirectional=True)
    x = sl.randn(6, 2, 2)
    out, (h_n, c_n) = model(x, lengths=sl.tensor([6, 3]))
    alone, (h_alone, c_alone) = model(x[:3, 1:])
    assert h_n[:, 1].allclose(h_alone[:, 0], atol=1e-6)
    assert c_n[:, 1].allclose(c_alone[:, 0], atol=1e-6)
    assert out[3:, 1].abs().sum().item() == 0
    assert out[:3, 1].allclose(alone[:, 0], atol=1e-6)
    masked, _ = model(x, lengths=sl.masking.LengthMask(sl.tensor([6, 3]), max_len=6))
    assert masked.equal(out)


def test_lstm_dropout_between_layers():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.LSTM(2, 2, dropout=0.5)
    model = nn.LSTM(2, 8, num_layers=2, dropout=0.5)
    x = sl.randn(4, 3, 2)
    assert not model(x)[0].equal(model(x)[0])
    model.eval()
    assert model(x)[0].equal(model(x)[0])


def test_lstm_errors_name_the_problem():
    model = nn.LSTM(3, 4, num_layers=2)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. "
                                           "Expected 3, got 5"):
        model(sl.randn(2, 2, 5))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(2, 2, 4\)"):
        model(sl.randn(2, 2, 3), (sl.zeros(1, 2, 4), sl.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="lengths must be between 0 and the sequence length 2"):
        model(sl.randn(2, 2, 3), lengths=[3, 1])
    with pytest.raises(ValueError, match="one integer per sequence"):
        model(sl.randn(2, 2, 3), lengths=[1])
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)


def test_lstm_kernel_errors_name_the_argument(monkeypatch):
    x = numpy.zeros((3, 2, 8), numpy.float32)
    w, h = numpy.zeros((8, 2), numpy.float32), numpy.zeros((2, 2), numpy.float32)
    with pytest.raises(ValueError, match=r"x_proj must be \(L, N, 4H\) with H >= 1, got shape "
                                         r"\(3, 2, 7\)"):
        kernels.lstm_forward(x[..., :7], w, h, h)
    with pytest.raises(ValueError, match=r"w_hh must be \(8, 2\) .* got \(2, 8\)"):
        kernels.lstm_forward(x, w.T, h, h)
    with pytest.raises(ValueError, match=r"c0 must be \(2, 2\) .* got \(1, 2\)"):
        kernels.lstm_forward(x, w, h, h[:1])
    with pytest.raises(TypeError, match="share one float dtype, got float32, float64"):
        kernels.lstm_forward(x, w.astype(numpy.float64), h, h)
    with pytest.raises(ValueError, match=r"one integer per sequence, shape \(2,\), got shape "
                                         r"\(3,\) and dtype int64"):
        kernels.lstm_forward(x, w, h, h, lengths=numpy.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\), got shape \(\) and dtype int64"):
        kernels.lstm_forward(x, w, h, h, lengths=numpy.array(3))
    with pytest.raises(ValueError, match=r"got shape \(2,\) and dtype float64"):
        kernels.lstm_forward(x, w, h, h, lengths=numpy.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="lengths must be between 0 and the sequence length 3, "
                                         "got -1..2"):
        kernels.lstm_forward(x, w, h, h, lengths=numpy.array([-1, 2]))
    x_in, w_ih = numpy.zeros((3, 2, 5), numpy.float32), numpy.zeros((8, 5), numpy.float32)
    with pytest.raises(ValueError, match=r"lstm_layer: w_ih must be \(8, 5\) .* got \(8, 4\)"):
        kernels.lstm_layer(x_in, w_ih[:, :4], w, None, None, h, h)
    with pytest.raises(ValueError, match=r"lstm_layer: b_hh must be \(8,\) .* got \(7,\)"):
        kernels.lstm_layer(x_in, w_ih, w, w[:, 0], w[:7, 0], h, h)
    with pytest.raises(ValueError, match=r"lstm_layer: w_hh must be \(4H, H\) with H >= 1"):
        kernels.lstm_layer(x_in, w_ih, w[:6], None, None, h, h)
    with pytest.raises(TypeError, match="lstm_layer: .* must share one float dtype"):
        kernels.lstm_layer(x_in.astype(numpy.float64), w_ih, w, None, None, h, h)
    with pytest.raises(TypeError, match="h0 must be a NumPy or CuPy array, got list"):
        kernels.lstm_forward(x, w, h.tolist(), h)
    *_, cache = kernels.lstm_forward(x, w, h, h)
    with pytest.raises(ValueError, match=r"grad_output must be \(3, 2, 2\), got \(2, 2, 2\)"):
        kernels.lstm_backward(numpy.zeros((2, 2, 2), numpy.float32), None, None, cache)
    with pytest.raises(ValueError, match=r"grad_c_n must be \(2, 2\), got \(2, 3\)"):
        kernels.lstm_backward(numpy.zeros((3, 2, 2), numpy.float32), None,
                              numpy.zeros((2, 3), numpy.float32), cache)
    on_gpu = fake_gpu(monkeypatch)
    with pytest.raises(TypeError, match="one device, got x_proj on cpu, w_hh on cuda:0"):
        kernels.lstm_forward(x, on_gpu(w), h, h)
    with pytest.raises(TypeError, match="grad_output on cuda:0, cache on cpu"):
        kernels.lstm_backward(on_gpu(numpy.zeros((3, 2, 2), numpy.float32)), None, None, cache)
    with pytest.raises(TypeError, match="one device, got x on cpu, .* lengths on cuda:0"):
        kernels.lstm_layer(x_in, w_ih, w, None, None, h, h, on_gpu(numpy.array([1, 2])))


def test_lstm_cell_matches_one_step_of_lstm():
    cell = nn.LSTMCell(3, 4).double()
    layer = nn.LSTM(3, 4).double()
    layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    x = sl.randn(2, 3, dtype=sl.float64, requires_grad=True)
    h, c = sl.randn(2, 4, dtype=sl.float64), sl.randn(2, 4, dtype=sl.float64)
    h1, c1 = cell(x, (h, c))
    _, (h_n, c_n) = layer(x[None], (h[None], c[None]))
    assert h1.allclose(h_n[0]) and c1.allclose(c_n[0])
    sl.gradcheck(lambda x, *w: cell(x, (h, c))[0], [x, *cell.parameters()])
    h_single, _ = cell(x[0].detach())
    assert h_single.shape == (4,)
    with pytest.raises(RuntimeError, match="expected hx of shape"):
        cell(x, (sl.zeros(3, 4), sl.zeros(3, 4)))


def test_each_layer_direction_is_one_graph_node():
    model = nn.LSTM(2, 3, num_layers=2)
    out, _ = model(sl.randn(50, 1, 2))
    nodes, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in nodes:
            continue
        nodes.add(id(node))
        stack.extend(n for n, _ in node.next_functions if n is not None and hasattr(n, "_edges"))
    assert len(nodes) <= 4  # two LSTMLayer nodes (+ view ops), not 50 per layer
