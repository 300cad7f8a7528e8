"""core.functional against NumPy references, with float64 gradchecks."""

from __future__ import annotations

import math

import numpy
import pytest
from helpers import away_from, check_op, leaves
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes
from seqlib.core.special import erf

import seqlib as sl
import seqlib.nn.functional as F


def values(shape, seed=0, scale=2.0):
    return numpy.random.default_rng(seed).uniform(-scale, scale, shape)


def np_softmax(a, dim):
    e = numpy.exp(a - a.max(dim, keepdims=True))
    return e / e.sum(dim, keepdims=True)


@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), bias=st.booleans(),
       out_features=st.integers(1, 3))
def test_linear(shape, bias, out_features):
    x = values(shape)
    w = values((out_features, shape[-1]), 1)
    b = values((out_features,), 2)
    if bias:
        check_op(F.linear, lambda x, w, b: x @ w.T + b, x, w, b)
    else:
        check_op(F.linear, lambda x, w: x @ w.T, x, w)


@pytest.mark.parametrize("shape, out_features", [
    ((4, 0, 2), 0), ((0, 3), 2), ((2, 0), 3), ((0, 0), 0), ((3, 2), 0),
])
def test_linear_with_empty_dims(shape, out_features):
    # the backward's reshape(-1, 0) could not infer the rows (found by tests/test_fuzz.py)
    x, w, b = leaves(values(shape), values((out_features, shape[-1]), 1), values((out_features,)))
    out = F.linear(x, w, b)
    assert out.shape == shape[:-1] + (out_features,)
    out.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape and b.grad.shape == b.shape


def test_linear_errors():
    with pytest.raises(RuntimeError, match=r"linear: input's last dimension \(\(2, 3\)\)"):
        F.linear(sl.ones(2, 3), sl.ones(4, 5))
    with pytest.raises(RuntimeError, match="bias must have shape"):
        F.linear(sl.ones(2, 3), sl.ones(4, 3), sl.ones(3))
    with pytest.raises(RuntimeError, match="same dtype"):
        F.linear(sl.ones(2, 3, dtype=sl.float64), sl.ones(4, 3))


@pytest.mark.parametrize("padding_idx", [None, 1, -1])
def test_embedding_gradient_scatters_and_skips_padding(padding_idx):
    weight = values((5, 3))
    indices = numpy.array([[1, 4, 1], [0, 4, 2]])
    check_op(lambda w: F.embedding(sl.tensor(indices), w, padding_idx=padding_idx),
             lambda w: w[indices], weight, grad=padding_idx is None)  # padding: no grad by design
    (w,) = leaves(weight)
    F.embedding(sl.tensor(indices), w, padding_idx=padding_idx).sum().backward()
    counts = numpy.bincount(indices.ravel(), minlength=5).astype(float)
    if padding_idx is not None:
        counts[padding_idx] = 0
    numpy.testing.assert_array_equal(w.grad.numpy(), numpy.repeat(counts[:, None], 3, 1))


@pytest.mark.parametrize("rows, dim, index_shape", [(1, 0, (2, 2)), (3, 0, (0,)), (2, 3, (0, 2))])
def test_embedding_with_empty_rows_or_index(rows, dim, index_shape):
    # the backward's reshape(-1, 0) could not infer the count (found by tests/test_fuzz.py)
    (weight,) = leaves(values((rows, dim)))
    index = sl.zeros(index_shape, dtype=sl.int64)
    out = F.embedding(index, weight)
    assert out.shape == index_shape + (dim,)
    out.sum().backward()
    assert weight.grad.shape == (rows, dim) and not weight.grad.numpy().any()


@given(rows=st.integers(1, 6), dim=st.integers(0, 3),
       index_shape=array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=9),
       dtype=st.sampled_from([numpy.float32, numpy.float64]), seed=st.integers(0, 3))
def test_embedding_gradient_equals_add_at(rows, dim, index_shape, dtype, seed):
    """The sorted, run-summed scatter-add against numpy.add.at (the same sums; the rows of one
    index may be added in another order), and a float64 gradcheck."""
    generator = numpy.random.default_rng(seed)
    indices = generator.integers(0, rows, index_shape)
    g = generator.standard_normal(index_shape + (dim,)).astype(dtype)
    (w,) = leaves(values((rows, dim)).astype(dtype))
    F.embedding(sl.tensor(indices), w).backward(sl.tensor(g))
    expected = numpy.zeros((rows, dim), dtype)
    numpy.add.at(expected, indices.ravel(), g.reshape(indices.size, dim))
    tolerance = 1e-6 if dtype == numpy.float32 else 1e-14
    numpy.testing.assert_allclose(w.grad.numpy(), expected, rtol=tolerance,
                                  atol=tolerance * indices.size)
    if dtype == numpy.float64:
        check_op(lambda w: F.embedding(sl.tensor(indices), w), lambda w: w[indices],
                 values((rows, dim)))


def test_embedding_errors():
    with pytest.raises(IndexError, match="index 5 is out of range.*5 rows"):
        F.embedding(sl.tensor([5]), sl.ones(5, 2))
    with pytest.raises(TypeError, match="integer tensor"):
        F.embedding(sl.ones(2), sl.ones(5, 2))


def test_one_hot():
    out = F.one_hot(sl.tensor([0, 2, 1]), 4)
    assert out.dtype == sl.int64
    assert out.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]
    assert F.one_hot(sl.tensor([[1], [3]])).shape == (2, 1, 4)
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(sl.tensor([3]), 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        F.one_hot(sl.tensor([-1]), 3)


def test_dropout_scales_and_is_seeded():
    x = sl.ones(10001)  # not a multiple of the four 16-bit draws in a 64-bit word
    g = sl.Generator().manual_seed(1)
    out = F.dropout(x, 0.3, generator=g)
    kept = out.numpy() > 0
    for lane in range(4):  # every 16-bit lane of the raw words is its own fair draw
        assert abs(kept[lane::4].mean() - 0.7) < 0.03
    assert not F.dropout(x, 0.3, generator=g).equal(out)  # the stream moves on
    numpy.testing.assert_allclose(numpy.unique(out.numpy()), [0.0, 1 / 0.7], rtol=1e-6)
    again = F.dropout(x, 0.3, generator=sl.Generator().manual_seed(1))
    assert again.equal(out)
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 1.0).sum().item() == 0
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)


def test_dropout_gradcheck_with_fixed_mask():
    def fn(t):
        return F.dropout(t, 0.4, generator=sl.Generator().manual_seed(7))

    (t,) = leaves(values((4, 5)))
    sl.gradcheck(fn, [t])
    mask = fn(t).detach().numpy() != 0
    fn(t).sum().backward()
    numpy.testing.assert_allclose(t.grad.numpy(), mask / 0.6)


@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), data=st.data())
def test_layer_norm(shape, data):
    k = data.draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - k:]
    with_weight, with_bias = data.draw(st.booleans()), data.draw(st.booleans())
    x, w, b = values(shape), values(normalized, 1), values(normalized, 2)
    axes = tuple(range(len(shape) - k, len(shape)))

    def reference(x, *affine):
        mean = x.mean(axes, keepdims=True)
        var = x.var(axes, keepdims=True)
        y = (x - mean) / numpy.sqrt(var + 1e-5)
        parts = iter(affine)
        if with_weight:
            y = y * next(parts)
        return y + next(parts) if with_bias else y

    def layer_norm(x, *affine):
        parts = iter(affine)
        weight = next(parts) if with_weight else None
        return F.layer_norm(x, normalized, weight, next(parts) if with_bias else None)

    arrays = [x] + ([w] if with_weight else []) + ([b] if with_bias else [])
    check_op(layer_norm, reference, *arrays)
    single = F.layer_norm(sl.tensor(x.astype(numpy.float32)), normalized)
    assert single.dtype == sl.float32
    plain = (x - x.mean(axes, keepdims=True)) / numpy.sqrt(x.var(axes, keepdims=True) + 1e-5)
    numpy.testing.assert_allclose(single.numpy(), plain, rtol=1e-4, atol=1e-4)


def test_layer_norm_errors():
    with pytest.raises(RuntimeError, match="does not end with normalized_shape"):
        F.layer_norm(sl.ones(2, 3), (4,))
    with pytest.raises(RuntimeError, match="weight must have shape"):
        F.layer_norm(sl.ones(2, 3), 3, sl.ones(4))


@pytest.mark.parametrize("fn, reference", [
    (F.softmax, np_softmax),
    (F.log_softmax, lambda a, d: numpy.log(np_softmax(a, d))),
    (sl.softmax, np_softmax),  # torch.softmax / torch.log_softmax: the same functions
    (sl.log_softmax, lambda a, d: numpy.log(np_softmax(a, d))),
])
@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), data=st.data())
def test_softmax_family(fn, reference, shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    check_op(lambda t: fn(t, dim), lambda a: reference(a, dim), values(shape))


def test_softmax_is_stable_for_huge_logits():
    x = sl.tensor([[1e4, -1e4, 0.0]])
    assert F.softmax(x, -1).tolist() == [[1.0, 0.0, 0.0]]
    out = F.log_softmax(x, -1).numpy()
    assert numpy.isfinite(out).all() and out[0, 0] == 0
    with pytest.raises(TypeError, match="'dim' argument is required"):
        F.softmax(x)
    assert F.softmax(x, -1, dtype=sl.float64).dtype == sl.float64
    assert x.softmax(-1).shape == (1, 3) and x.log_softmax(1).shape == (1, 3)


ACTIVATIONS = {
    "relu": (F.relu, lambda a: numpy.maximum(a, 0)),
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.2), lambda a: numpy.where(a > 0, a, 0.2 * a)),
    "gelu": (F.gelu, lambda a: 0.5 * a * (1 + erf(a / math.sqrt(2)))),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"),
                  lambda a: 0.5 * a * (1 + numpy.tanh(math.sqrt(2 / math.pi)
                                                       * (a + 0.044715 * a**3)))),
    "silu": (F.silu, lambda a: a / (1 + numpy.exp(-a))),
    "elu": (F.elu, lambda a: numpy.where(a > 0, a, numpy.exp(a) - 1)),
    "elu_alpha": (lambda t: F.elu(t, 0.5),
                  lambda a: numpy.where(a > 0, a, 0.5 * (numpy.exp(a) - 1))),
    "sigmoid": (F.sigmoid, lambda a: 1 / (1 + numpy.exp(-a))),
    "tanh": (F.tanh, numpy.tanh),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(shape=array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
def test_activations(name, shape):
    fn, reference = ACTIVATIONS[name]
    check_op(fn, reference, away_from(values(shape, scale=4)))


def test_activations_do_not_overflow():
    x = sl.tensor([-1e4, 1e4])
    for fn in (F.gelu, F.silu, F.elu, F.sigmoid, F.relu):
        assert numpy.isfinite(fn(x).numpy()).all(), fn.__name__
    assert F.gelu(sl.tensor([-1e4, 1e4]), approximate="tanh").tolist() == [0.0, 1e4]
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")


def test_inplace_activations():
    x = sl.tensor([-1.0, 2.0])
    assert F.relu(x, inplace=True) is x and x.tolist() == [0.0, 2.0]
    leaf = sl.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        F.relu(leaf, inplace=True)
    y = leaf * -1
    F.relu(y, inplace=True).sum().backward()
    assert leaf.grad.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("pad, mode", [
    ((1, 2), "constant"), ((1, 0, 2, 1), "constant"), ((-1, 2), "constant"),
    ((2, 1), "reflect"), ((1, 2, 1, 0), "reflect"), ((3, 1), "replicate"),
    ((1, 2), "circular"), ((0, 0), "reflect"),
])
def test_pad_modes(pad, mode):
    x = values((2, 3, 4))
    widths = [(0, 0)] * 3
    for i in range(len(pad) // 2):
        widths[2 - i] = (pad[2 * i], pad[2 * i + 1])
    numpy_mode = {"replicate": "edge", "circular": "wrap"}.get(mode, mode)

    def reference(a):
        if mode == "constant" and min(min(w) for w in widths) < 0:
            a = a[:, :, 1:]
            return numpy.pad(a, [(0, 0), (0, 0), (0, 2)], constant_values=1.5)
        kwargs = {"constant_values": 1.5} if mode == "constant" else {}
        return numpy.pad(a, widths, mode=numpy_mode, **kwargs)

    check_op(lambda t: F.pad(t, pad, mode=mode, value=1.5 if mode == "constant" else None),
             reference, x)


def test_pad_errors():
    with pytest.raises(ValueError, match="padding length must be even"):
        F.pad(sl.ones(2), (1,))
    with pytest.raises(NotImplementedError, match="mode must be"):
        F.pad(sl.ones(2), (1, 1), mode="mirror")
    with pytest.raises(ValueError, match="smaller than the dimension size"):
        F.pad(sl.ones(2, 3), (3, 0), mode="reflect")
