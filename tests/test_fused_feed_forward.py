"""The fused pieces of a transformer layer (bias + activation, residual + LayerNorm) against
the plain Functions they stand in for, their float64 gradients, and when the layers use them."""

from __future__ import annotations

import contextlib
import math

import numpy
import pytest
import seqlib.core.functional as F
from hypothesis import given
from hypothesis import strategies as st
from seqlib.kernels import threads

import seqlib as sl
from seqlib import row_blocks, transformers
from seqlib.bias_activation import bias_activation
from seqlib.builders import TransformerDecoderBuilder, TransformerEncoderBuilder
from seqlib.masking import TriangularCausalMask
from seqlib.residual_norm import residual_layer_norm

LEADING = st.lists(st.integers(0, 4), min_size=0, max_size=2)  # the dims before the row's
BLOCK_BYTES = st.sampled_from([1, 24, 64, 1 << 18])  # one row per block, a few rows, all rows
WORKERS = st.sampled_from([1, 2, 3])


@contextlib.contextmanager
def blocks(block_bytes: int, workers: int):
    """Blocks of ``block_bytes`` bytes on ``workers`` threads (so small inputs get many blocks
    and tasks, and a remainder block), whatever BLAS's threads leave free."""
    saved = row_blocks.BLOCK_BYTES, row_blocks.workers, threads._requested
    row_blocks.BLOCK_BYTES = block_bytes
    row_blocks.workers = lambda: workers
    threads.set_num_threads(workers)  # the pool run_all uses
    try:
        yield
    finally:
        row_blocks.BLOCK_BYTES, row_blocks.workers = saved[:2]
        threads.set_num_threads(saved[2])


def array(seed: int, shape, dtype, low: float = 0.0):
    """Normal values with magnitude at least ``low`` (away from ReLU's kink)."""
    values = numpy.random.default_rng(seed).standard_normal(shape)
    values += numpy.sign(values) * low
    return sl.tensor(values.astype(dtype), requires_grad=True)


def names(tensor) -> set:
    """The names of every node of ``tensor``'s graph (before backward frees it)."""
    seen, found, stack = set(), set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or not hasattr(node, "next_functions"):
            continue
        seen.add(id(node))
        found.add(node.name())
        stack += [edge for edge, _ in node.next_functions]
    return found


def grads(fn, inputs, weights):
    """``fn(*inputs)`` and the gradients of ``sum(weights * fn(*inputs))``, as arrays."""
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    (out * weights).sum().backward()
    return [out.detach().numpy()] + [t.grad.numpy().copy() for t in inputs]


# ---------------------------------------------------------------------------- bias + activation


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@given(leading=LEADING, D=st.integers(1, 7), block_bytes=BLOCK_BYTES, workers=WORKERS)
def test_bias_activation_gradcheck(activation, leading, D, block_bytes, workers):
    b = array(1, (D,), numpy.float64)
    u = array(0, (*leading, D), numpy.float64, low=1e-2)  # the pre-activation h + b
    h = sl.tensor(u.detach().numpy() - b.detach().numpy(), requires_grad=True)
    with blocks(block_bytes, workers):
        assert sl.gradcheck(lambda h, b: bias_activation(h, b, activation), [h, b])


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("dtype, rtol", [(numpy.float32, 1e-6), (numpy.float64, 1e-14)])
@pytest.mark.parametrize("block_bytes, workers", [(1 << 18, 2), (4 * 96, 3), (1, 1)])
def test_bias_activation_equals_the_plain_functions(activation, dtype, rtol, block_bytes,
                                                    workers):
    h, b = array(0, (3, 37, 96), dtype), array(1, (96,), dtype)
    weights = sl.tensor(numpy.random.default_rng(2).standard_normal(h.shape).astype(dtype))
    plain = getattr(F, activation)
    expected = grads(lambda h, b: plain(h + b), [h, b], weights)
    with blocks(block_bytes, workers):
        found = grads(lambda h, b: bias_activation(h, b, activation), [h, b], weights)
    # the same array functions on the same numbers: the output and h's gradient are identical;
    # the bias's gradient sums the rows block by block, in another order
    numpy.testing.assert_array_equal(found[0], expected[0])
    numpy.testing.assert_array_equal(found[1], expected[1])
    scale = numpy.abs(expected[2]).max()
    numpy.testing.assert_allclose(found[2], expected[2], rtol=0, atol=rtol * 111 * scale)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_bias_activation_passes_infinities_and_nans_as_the_plain_functions(activation):
    values = numpy.array([[-numpy.inf, numpy.inf, numpy.nan, 0.0, -0.0, 1e30, -1e30, 3.0]],
                         numpy.float32)
    h, b = sl.tensor(values, requires_grad=True), sl.zeros(8, requires_grad=True)
    g = sl.tensor(numpy.array([[1.0, numpy.inf, 2.0, numpy.nan, 1.0, 1.0, numpy.inf, 1.0]],
                              numpy.float32))
    with numpy.errstate(all="ignore"):
        found = grads(lambda h, b: bias_activation(h, b, activation), [h, b], g)
        expected = grads(lambda h, b: getattr(F, activation)(h + b), [h, b], g)
    for f, e in zip(found, expected):
        numpy.testing.assert_array_equal(f, e)


def seeded(seed: int = 5):
    return sl.Generator().manual_seed(seed)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@given(leading=LEADING, D=st.integers(1, 7), p=st.sampled_from([0.1, 0.5, 0.9]),
       block_bytes=BLOCK_BYTES, workers=WORKERS)
def test_bias_activation_with_dropout_gradcheck(activation, leading, D, p, block_bytes,
                                                workers):
    b = array(1, (D,), numpy.float64)
    u = array(0, (*leading, D), numpy.float64, low=1e-2)
    h = sl.tensor(u.detach().numpy() - b.detach().numpy(), requires_grad=True)
    with blocks(block_bytes, workers):  # the same mask at every call: a generator seeded anew
        assert sl.gradcheck(
            lambda h, b: bias_activation(h, b, activation, p, generator=seeded()), [h, b])


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("dtype, rtol", [(numpy.float32, 1e-6), (numpy.float64, 1e-14)])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_bias_activation_with_dropout_equals_dropout_after_the_activation(activation, dtype,
                                                                          rtol, p):
    h, b = array(0, (3, 37, 96), dtype), array(1, (96,), dtype)
    weights = sl.tensor(numpy.random.default_rng(2).standard_normal(h.shape).astype(dtype))
    plain = getattr(F, activation)
    expected = grads(lambda h, b: F.dropout(plain(h + b), p, generator=seeded()), [h, b],
                     weights)
    with blocks(4 * 96, 2):
        found = grads(lambda h, b: bias_activation(h, b, activation, p, generator=seeded()),
                      [h, b], weights)
    numpy.testing.assert_array_equal(found[0], expected[0])  # the same mask and scale
    assert 0 < (found[0] == 0).mean() < 1
    for f, e in zip(found[1:], expected[1:]):  # g * (slope * scale), not (g * scale) * slope
        numpy.testing.assert_allclose(f, e, rtol=0, atol=rtol * 111 * numpy.abs(e).max())


def test_bias_activation_saves_nothing_without_grad_and_checks_its_arguments():
    h, b = sl.randn(5, 8), sl.randn(8)
    with sl.no_grad():
        y = bias_activation(h.requires_grad_(), b, "gelu")
    assert y.grad_fn is None
    numpy.testing.assert_array_equal(y.numpy(), F.gelu(h + b).detach().numpy())
    assert bias_activation(h.detach(), b, "relu").grad_fn is None
    with pytest.raises(ValueError, match="activation must be one of"):
        bias_activation(h, b, "silu")
    with pytest.raises(ValueError, match="bias must be"):
        bias_activation(h, sl.randn(7), "gelu")
    with pytest.raises(ValueError, match="bias must be"):
        bias_activation(h, b.double(), "gelu")
    with pytest.raises(TypeError, match="float tensor"):
        bias_activation(sl.ones(2, 8, dtype=sl.int64), b, "gelu")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        bias_activation(h, b, "gelu", 1.0)


@pytest.mark.parametrize("cpus, blas, kernels, expected", [
    (2, 2, 2, 1),  # BLAS's default, a thread per CPU: blocks in the calling thread
    (2, 1, 2, 2), (8, 2, 8, 4), (8, 1, 3, 3), (1, 1, 8, 1),
])
def test_row_blocks_leave_the_cpus_of_blas_threads(monkeypatch, cpus, blas, kernels, expected):
    monkeypatch.setattr(threads, "cpu_count", lambda: cpus)
    monkeypatch.setattr(threads, "blas_threads", lambda: blas)
    monkeypatch.setattr(threads, "get_num_threads", lambda: kernels)
    assert row_blocks.workers() == expected
    seen = []
    monkeypatch.setattr(threads, "run_all", lambda f, tasks: seen.append(len(tasks)) or
                        [f(*task) for task in tasks])
    starts = row_blocks.run_row_blocks(lambda start, stop: start, 10, row_blocks.BLOCK_BYTES)
    assert starts == list(range(10)) and seen == ([] if expected == 1 else [expected])


def test_the_pieces_of_gelu_compose_to_gelu():
    """The array functions both paths share give x * Phi(x) and its derivative."""
    from seqlib.core.functional.activation import gelu_slope, normal_cdf

    x = numpy.linspace(-6, 6, 241)
    cdf = normal_cdf(x)
    expected = numpy.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    numpy.testing.assert_allclose(cdf, expected, rtol=1e-15, atol=1e-16)
    numerical = ((x + 1e-6) * normal_cdf(x + 1e-6) - (x - 1e-6) * normal_cdf(x - 1e-6)) / 2e-6
    numpy.testing.assert_allclose(gelu_slope(x, cdf), numerical, atol=1e-8)
    same = x.copy()
    assert normal_cdf(same, out=same) is same  # in place, as the fused blocks compute it
    numpy.testing.assert_array_equal(same, cdf)


# ------------------------------------------------------------------------ residual + LayerNorm


@given(leading=LEADING, D=st.integers(1, 7), affine=st.sampled_from(["both", "weight", "none"]),
       block_bytes=BLOCK_BYTES, workers=WORKERS)
def test_residual_layer_norm_gradcheck(leading, D, affine, block_bytes, workers):
    x, y = array(0, (*leading, D), numpy.float64), array(1, (*leading, D), numpy.float64)
    weight = array(2, (D,), numpy.float64) if affine != "none" else None
    bias = array(3, (D,), numpy.float64) if affine == "both" else None
    inputs = [t for t in (x, y, weight, bias) if t is not None]

    def fn(x, y, *parameters):
        w, b = (list(parameters) + [None, None])[:2]
        return residual_layer_norm(x, y, w, b)

    with blocks(block_bytes, workers):
        assert sl.gradcheck(fn, inputs)


@pytest.mark.parametrize("dtype, rtol", [(numpy.float32, 1e-6), (numpy.float64, 1e-14)])
@pytest.mark.parametrize("block_bytes, workers", [(1 << 18, 2), (4 * 40, 3), (1, 1)])
def test_residual_layer_norm_equals_add_then_layer_norm(dtype, rtol, block_bytes, workers):
    x, y = array(0, (4, 33, 40), dtype), array(1, (4, 33, 40), dtype)
    weight, bias = array(2, (40,), dtype), array(3, (40,), dtype)
    g = sl.tensor(numpy.random.default_rng(4).standard_normal(x.shape).astype(dtype))
    expected = grads(lambda x, y, w, b: F.layer_norm(x + y, (40,), w, b), [x, y, weight, bias],
                     g)
    with blocks(block_bytes, workers):
        found = grads(residual_layer_norm, [x, y, weight, bias], g)
    # the same array functions; BLAS's row sums (GEMVs) round a block of a few rows a little
    # differently, and the weight's and bias's gradients add the rows up in another order
    for f, e in zip(found, expected):
        numpy.testing.assert_allclose(f, e, rtol=0, atol=rtol * 10 * numpy.abs(e).max())
    numpy.testing.assert_array_equal(found[1], found[2])  # x and y get the same gradient


@given(leading=LEADING, D=st.integers(1, 7), p=st.sampled_from([0.2, 0.7]),
       block_bytes=BLOCK_BYTES, workers=WORKERS)
def test_residual_layer_norm_with_dropout_gradcheck(leading, D, p, block_bytes, workers):
    x, y = array(0, (*leading, D), numpy.float64), array(1, (*leading, D), numpy.float64)
    weight, bias = array(2, (D,), numpy.float64), array(3, (D,), numpy.float64)
    with blocks(block_bytes, workers):
        assert sl.gradcheck(lambda *a: residual_layer_norm(*a, dropout=p, generator=seeded()),
                            [x, y, weight, bias])


@pytest.mark.parametrize("dtype, rtol", [(numpy.float32, 1e-6), (numpy.float64, 1e-14)])
def test_residual_layer_norm_with_dropout_equals_add_of_dropout_then_layer_norm(dtype, rtol):
    x, y = array(0, (4, 33, 40), dtype), array(1, (4, 33, 40), dtype)
    weight, bias = array(2, (40,), dtype), array(3, (40,), dtype)
    g = sl.tensor(numpy.random.default_rng(4).standard_normal(x.shape).astype(dtype))
    expected = grads(lambda x, y, w, b: F.layer_norm(x + F.dropout(y, 0.3, generator=seeded()),
                                                     (40,), w, b), [x, y, weight, bias], g)
    with blocks(4 * 40 * 8, 2):
        found = grads(lambda *a: residual_layer_norm(*a, dropout=0.3, generator=seeded()),
                      [x, y, weight, bias], g)
    for f, e in zip(found, expected):
        numpy.testing.assert_allclose(f, e, rtol=0, atol=rtol * 10 * numpy.abs(e).max())
    dropped = found[2] == 0  # y's gradient is zero exactly where its element was dropped
    assert 0.2 < dropped.mean() < 0.4
    numpy.testing.assert_array_equal(dropped, expected[2] == 0)


def test_residual_layer_norm_checks_its_arguments():
    x = sl.randn(2, 3)
    with pytest.raises(ValueError, match="one shape"):
        residual_layer_norm(x, sl.randn(2, 1), None, None)
    with pytest.raises(ValueError, match="one shape"):
        residual_layer_norm(x, x.double(), None, None)
    with pytest.raises(ValueError, match="weight must have shape"):
        residual_layer_norm(x, x, sl.ones(2), None)
    with sl.no_grad():
        assert residual_layer_norm(x.requires_grad_(), x, None, None).grad_fn is None


# --------------------------------------------------------------------------------- the layers


def plain_paths(monkeypatch):
    monkeypatch.setattr(transformers, "fused_activation", lambda layer, x: None)
    monkeypatch.setattr(transformers, "add_norm", lambda norm, x, y, dropout=None:
                        norm(x + (y if dropout is None else dropout(y))))


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("dtype, rtol", [(sl.float32, 1e-6), (sl.float64, 1e-13)])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_encoder_fused_equals_plain_in_value_and_gradients(monkeypatch, activation, dtype,
                                                           rtol, dropout):
    sl.set_default_dtype(dtype)
    try:
        model = TransformerEncoderBuilder.from_kwargs(
            n_layers=2, n_heads=2, query_dimensions=8, value_dimensions=8,
            feed_forward_dimensions=64, dropout=dropout, activation=activation,
            attention_type="causal-linear").get()
        x = sl.randn(3, 50, 16, requires_grad=True)
    finally:
        sl.set_default_dtype(sl.float32)
    mask = TriangularCausalMask(50)
    tensors = [x] + list(model.parameters())

    def run():
        for t in tensors:
            t.grad = None
        sl.manual_seed(7)  # the same dropout masks on both paths
        out = model(x, attn_mask=mask)
        graph = names(out)
        (out * out).sum().backward()
        return graph, [out.detach().numpy()] + [t.grad.numpy().copy() for t in tensors]

    fused_names = {"BiasGELUBackward", "BiasReLUBackward", "ResidualLayerNormBackward"}
    with blocks(24 * 64, 2):  # several blocks per call
        graph, fused = run()
        assert {"BiasGELUBackward" if activation == "gelu" else "BiasReLUBackward",
                "ResidualLayerNormBackward"} <= graph
        assert "DropoutBackward" not in graph  # every dropout of the layers folded in
        plain_paths(monkeypatch)
        graph, plain = run()
        assert not fused_names & graph
        assert ("DropoutBackward" in graph) == (dropout > 0)
    for f, p in zip(fused, plain):
        numpy.testing.assert_allclose(f, p, rtol=0, atol=rtol * 100 * numpy.abs(p).max())


def test_decoder_uses_the_fused_pieces_and_matches_the_plain_path(monkeypatch):
    model = TransformerDecoderBuilder.from_kwargs(
        n_layers=1, n_heads=2, query_dimensions=4, value_dimensions=4,
        feed_forward_dimensions=32, dropout=0.0, attention_dropout=0.0, activation="gelu",
        self_attention_type="causal-linear", cross_attention_type="full").get()
    x, memory = sl.randn(2, 7, 8), sl.randn(2, 5, 8)
    fused = model(x, memory, x_mask=TriangularCausalMask(7))
    assert {"BiasGELUBackward", "ResidualLayerNormBackward"} <= names(fused)
    plain_paths(monkeypatch)
    plain = model(x, memory, x_mask=TriangularCausalMask(7))
    numpy.testing.assert_allclose(fused.detach().numpy(), plain.detach().numpy(), atol=1e-6)


def test_layers_fall_back_to_the_modules_where_fusing_would_change_something():
    layer = TransformerEncoderBuilder.from_kwargs(
        n_layers=1, n_heads=2, query_dimensions=4, value_dimensions=4,
        feed_forward_dimensions=32, dropout=0.0, activation="gelu").get().layers[0]
    x = sl.randn(2, 5, 8)
    assert transformers.fused_activation(layer, x) == "gelu"
    assert transformers.fused_activation(layer, x.double()) is None  # parameters' dtype differs
    assert transformers.fused_activation(layer, x.half()) is None
    calls = []
    handle = layer.linear1.register_forward_hook(lambda m, i, o: calls.append("linear1"))
    assert transformers.fused_activation(layer, x) is None
    norm_handle = layer.norm2.register_forward_hook(lambda m, i, o: calls.append("norm2"))
    layer(x)
    assert calls == ["linear1", "norm2"]  # hooks still see their modules run
    handle.remove()
    norm_handle.remove()
    layer.activation = lambda t: F.gelu(t, approximate="tanh")
    assert transformers.fused_activation(layer, x) is None
    assert transformers.foldable_dropout(sl.nn.Dropout(0.3)) == 0.3
    assert transformers.foldable_dropout(sl.nn.Dropout(0.3).eval()) == 0.0
    assert transformers.foldable_dropout(sl.nn.Dropout(1.0)) is None  # all zeros: the module
    hooked = sl.nn.Dropout(0.3)
    hooked.register_forward_pre_hook(lambda m, i: None)
    assert transformers.foldable_dropout(hooked) is None

    class Scaled(sl.nn.LayerNorm):
        def forward(self, input):
            return 2 * super().forward(input)

    layer.norm2 = Scaled(8)
    out = transformers.add_norm(layer.norm2, x, x)
    numpy.testing.assert_allclose(out.detach().numpy(),
                                  2 * F.layer_norm(x + x, (8,)).detach().numpy(), atol=1e-6)
    assert "ResidualLayerNormBackward" not in names(transformers.add_norm(
        sl.nn.LayerNorm(8), x, sl.randn(1, 5, 8, requires_grad=True)))  # broadcast: modules
