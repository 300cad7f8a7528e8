"""gather, scatter, scatter_add and index_add against loop references, with float64 gradchecks
(hypothesis shapes, index smaller than the input as PyTorch allows), in-place twins and errors."""

from __future__ import annotations

import numpy
import pytest
from helpers import check_op, leaves
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import seqlib as sl


@st.composite
def along(draw, max_along: int = 5):
    """(input shape, dim, index shape, seed): index no larger than the input apart from dim."""
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    d = dim % len(shape)
    index_shape = tuple(draw(st.integers(0, max_along if i == d else n))
                        for i, n in enumerate(shape))
    return shape, dim, index_shape, draw(st.integers(0, 2**16))


def _source(position, dim, index):
    source = list(position)
    source[dim] = index[position]
    return tuple(source)


def gather_reference(x, dim, index):
    out = numpy.empty(index.shape, x.dtype)
    for position in numpy.ndindex(*index.shape):
        out[position] = x[_source(position, dim % x.ndim, index)]
    return out


def scatter_reference(x, dim, index, src, add=False):
    out = x.copy()
    for position in numpy.ndindex(*index.shape):
        target = _source(position, dim % x.ndim, index)
        value = src if numpy.ndim(src) == 0 else src[position]
        out[target] = out[target] + value if add else value
    return out


def index_add_reference(x, dim, index, source, alpha=1):
    out = x.copy()
    moved, moved_source = numpy.moveaxis(out, dim, 0), numpy.moveaxis(source, dim, 0)
    for i, target in enumerate(index):
        moved[target] += alpha * moved_source[i]
    return out


def values(shape, seed=0):
    return numpy.random.default_rng(seed).uniform(-2, 2, shape)


# ---- gather ------------------------------------------------------------------------------
def test_gather_with_an_index_smaller_than_the_input():
    x = sl.arange(12).view(3, 4)
    assert x.gather(1, sl.tensor([[0, 3]])).tolist() == [[0, 3]]
    assert x.gather(1, sl.tensor([[0, 3], [1, 1]])).tolist() == [[0, 3], [5, 5]]
    assert sl.gather(x, 0, sl.tensor([[2, 0, 1, 2]])).tolist() == [[8, 1, 6, 11]]
    assert x.gather(1, sl.tensor([[0, 1, 2, 3, 0]])).tolist() == [[0, 1, 2, 3, 0]]  # dim: any
    assert x.gather(-1, sl.zeros(2, 0, dtype=sl.int64)).shape == (2, 0)
    assert x.gather(1, sl.tensor([[1]], dtype=sl.int32)).tolist() == [[1]]
    assert sl.tensor(5.0).gather(0, sl.tensor(0)).tolist() == 5.0


@given(along())
def test_gather_matches_reference_and_gradcheck(case):
    shape, dim, index_shape, seed = case
    index = numpy.random.default_rng(seed).integers(0, shape[dim], index_shape)
    check_op(lambda t: t.gather(dim, sl.tensor(index)),
             lambda a: gather_reference(a, dim, index), values(shape, seed))


def test_gather_gradient_accumulates_repeated_indices():
    (x,) = leaves(values((2, 3)))
    x.gather(1, sl.tensor([[2, 2, 2], [0, 1, 0]])).sum().backward()
    assert x.grad.tolist() == [[0, 0, 3], [2, 1, 0]]


# ---- scatter, scatter_add ----------------------------------------------------------------
def _unique_index(shape, dim, index_shape, seed):
    """An index whose positions never repeat along ``dim`` (so overwrites have one winner)."""
    rng = numpy.random.default_rng(seed)
    d = dim % len(shape)
    index_shape = list(index_shape)
    index_shape[d] = min(index_shape[d], shape[d])
    index = numpy.empty(index_shape, numpy.int64)
    lines = numpy.moveaxis(index, d, -1)
    for position in numpy.ndindex(*lines.shape[:-1]):
        lines[position] = rng.permutation(shape[d])[: index_shape[d]]
    return index


@given(along(), st.integers(0, 2))
def test_scatter_matches_reference_and_gradcheck(case, src_extra):
    shape, dim, index_shape, seed = case
    index = _unique_index(shape, dim, index_shape, seed)
    src_shape = tuple(n + src_extra for n in index.shape)  # src may be larger than index
    check_op(lambda t, s: t.scatter(dim, sl.tensor(index), s),
             lambda a, s: scatter_reference(a, dim, index, s), values(shape, seed),
             values(src_shape, seed + 1))
    check_op(lambda t: sl.scatter(t, dim, sl.tensor(index), value=-3.5),
             lambda a: scatter_reference(a, dim, index, -3.5), values(shape, seed))


@given(along(), st.integers(0, 2))
def test_scatter_add_matches_reference_and_gradcheck(case, src_extra):
    shape, dim, index_shape, seed = case
    index = numpy.random.default_rng(seed).integers(0, shape[dim], index_shape)  # repeats
    src_shape = tuple(n + src_extra for n in index_shape)
    check_op(lambda t, s: t.scatter_add(dim, sl.tensor(index), s),
             lambda a, s: scatter_reference(a, dim, index, s, add=True), values(shape, seed),
             values(src_shape, seed + 1))
    check_op(lambda t, s: sl.scatter(t, dim, sl.tensor(index), s, reduce="add"),
             lambda a, s: scatter_reference(a, dim, index, s, add=True), values(shape, seed),
             values(src_shape, seed + 1))


def test_scatter_examples_from_pytorch():
    src = sl.arange(1.0, 9.0).view(2, 4)
    out = sl.zeros(3, 4).scatter(1, sl.tensor([[0, 3, 1]]), src)
    assert out.tolist() == [[1, 3, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0]]
    out = sl.zeros(3, 4).scatter_add(1, sl.tensor([[0, 0]]), src)
    assert out.tolist() == [[3, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    out = sl.ones(2, 3, dtype=sl.int64).scatter(1, sl.zeros(2, 1, dtype=sl.int64), 2.7)
    assert out.dtype == sl.int64 and out.tolist() == [[2, 1, 1], [2, 1, 1]]
    assert sl.tensor(1.0).scatter_add(0, sl.tensor(0), sl.tensor(2.0)).item() == 3.0


# ---- index_add ---------------------------------------------------------------------------
@given(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), st.data())
def test_index_add_matches_reference_and_gradcheck(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    count = data.draw(st.integers(0, 5))
    index = numpy.random.default_rng(count).integers(0, shape[dim], count)  # repeats
    source_shape = tuple(count if i == dim % len(shape) else n for i, n in enumerate(shape))
    alpha = data.draw(st.sampled_from([1, -0.5]))
    check_op(lambda t, s: t.index_add(dim, sl.tensor(index), s, alpha=alpha),
             lambda a, s: index_add_reference(a, dim, index, s, alpha), values(shape),
             values(source_shape, 1))


def test_index_add_examples_from_pytorch():
    out = sl.zeros(3, 4).index_add(0, sl.tensor([0, 2, 0]), sl.ones(3, 4), alpha=2)
    assert out.tolist() == [[4] * 4, [0] * 4, [2] * 4]
    out = sl.index_add(sl.ones(2, 3), 0, sl.tensor(1), sl.ones(1, 3))  # 0-d index
    assert out.tolist() == [[1] * 3, [2] * 3]
    assert sl.tensor(1.0).index_add(0, sl.tensor(0), sl.tensor(2.0)).item() == 3.0
    empty = sl.ones(2, 3).index_add(0, sl.tensor([], dtype=sl.int64), sl.ones(0, 3))
    assert empty.tolist() == [[1] * 3] * 2


# ---- in place ----------------------------------------------------------------------------
def test_in_place_twins_write_into_self_and_bump_the_version():
    x = sl.zeros(3, 4)
    version = x._version[0]
    assert x.scatter_(1, sl.tensor([[0, 3]]), sl.ones(1, 2)) is x
    assert x.scatter_(0, sl.tensor([[2]]), value=5.0) is x
    x.scatter_add_(1, sl.tensor([[0, 0]]), sl.ones(1, 2))
    x.index_add_(0, sl.tensor([1, 1]), sl.ones(2, 4), alpha=3)
    assert x.tolist() == [[3, 0, 0, 1], [6, 6, 6, 6], [5, 0, 0, 0]]
    assert x._version[0] == version + 4


def test_in_place_twins_under_autograd_match_out_of_place():
    index = numpy.array([[1, 0], [2, 1]])

    def in_place(a, s):
        y = a * 1
        y.scatter_(1, sl.tensor(index), s[:, :2])
        y.scatter_add_(0, sl.tensor(index) % 2, s * 2)
        y.index_add_(1, sl.tensor([2, 2, 0]), s, alpha=0.5)
        return y

    def out_of_place(a, s):
        y = a.scatter(1, sl.tensor(index), s[:, :2]).scatter_add(0, sl.tensor(index) % 2, s * 2)
        return y.index_add(1, sl.tensor([2, 2, 0]), s, alpha=0.5)

    a, s = values((2, 3)), values((2, 3), 1)
    check_op(in_place, lambda x, y: out_of_place(*leaves(x, y)).detach().numpy(), a, s)


def test_in_place_twins_refuse_a_leaf_and_are_caught_by_the_version_check():
    (leaf,) = leaves(values((2, 3)))
    with pytest.raises(RuntimeError, match="scatter_.*leaf Variable"):
        leaf.scatter_(1, sl.tensor([[0]]), value=1.0)
    y = leaf * 1
    saved = y.exp()  # saves its output... and exp's input is y
    product = y * y  # saves y
    y.index_add_(0, sl.tensor([0]), sl.ones(1, 3, dtype=sl.float64))
    saved.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        product.sum().backward()


# ---- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, message", [
    (lambda x: x.gather(1, sl.tensor([[0.0]])), TypeError, "gather: index must be an integer "
     r"tensor \(int64 or int32\), got float32"),
    (lambda x: x.gather(1, sl.tensor([[0]], dtype=sl.int16)), TypeError, "got int16"),
    (lambda x: x.gather(1, [[0]]), TypeError, "got list"),
    (lambda x: x.gather(1, sl.tensor([0])), RuntimeError, "as many dims as input.*index shape"),
    (lambda x: x.gather(2, sl.tensor([[0]])), IndexError, "Dimension out of range"),
    (lambda x: x.gather(1, sl.tensor([[4]])), IndexError,
     "gather: index 4 is out of bounds for dimension 1 with size 4"),
    (lambda x: x.gather(1, sl.tensor([[-1]])), IndexError, "index -1 is out of bounds"),
    (lambda x: x.gather(0, sl.zeros(1, 5, dtype=sl.int64)), RuntimeError,
     r"index \[1, 5\] to be no larger than input \[3, 4\] apart from dimension 0"),
    (lambda x: x.scatter(1, sl.tensor([[0, 1, 2]]), sl.ones(1, 2)), RuntimeError,
     r"no larger than src \[1, 2\]"),
    (lambda x: x.scatter(1, sl.tensor([[0]]), sl.ones(1)), RuntimeError,
     "src must have as many dims as index"),
    (lambda x: x.scatter(1, sl.tensor([[0]]), sl.ones(1, 1, dtype=sl.float64)), RuntimeError,
     "scatter: expected src to have input's dtype float32, got float64"),
    (lambda x: x.scatter(1, sl.tensor([[0]])), TypeError, "exactly one of 'src'"),
    (lambda x: x.scatter(1, sl.tensor([[0]]), 1.0, value=2.0), TypeError, "exactly one"),
    (lambda x: x.scatter(1, sl.tensor([[0]]), 1.0, reduce="multiply"), NotImplementedError,
     "reduce='multiply'"),
    (lambda x: x.scatter_add(1, sl.tensor([[0]]), 1.0), TypeError,
     "scatter_add: src must be a Tensor, got float"),
    (lambda x: x.scatter_add(1, sl.tensor([[9]]), sl.ones(1, 1)), IndexError,
     "scatter_add: index 9 is out of bounds"),
    (lambda x: x.index_add(0, sl.tensor([0, 2.0]), sl.ones(2, 4)), TypeError,
     "index_add: index must be an integer tensor"),
    (lambda x: x.index_add(0, sl.tensor([[0, 2]]), sl.ones(2, 4)), IndexError,
     r"index must be 1-D, got shape \(1, 2\)"),
    (lambda x: x.index_add(0, sl.tensor([0, 2]), sl.ones(3, 4)), RuntimeError,
     r"source must have input's shape \[3, 4\] with size 2 .* along dim 0, got \[3, 4\]"),
    (lambda x: x.index_add(1, sl.tensor([0]), sl.ones(3, 2)), RuntimeError, "got \\[3, 2\\]"),
    (lambda x: x.index_add(0, sl.tensor([3]), sl.ones(1, 4)), IndexError,
     "index_add: index 3 is out of bounds for dimension 0 with size 3"),
    (lambda x: x.index_add(0, sl.tensor([0]), sl.ones(1, 4, dtype=sl.float64)), RuntimeError,
     "expected source to have input's dtype float32, got float64"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(sl.zeros(3, 4))
