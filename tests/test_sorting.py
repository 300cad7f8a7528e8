"""sort, argsort and topk against a stable reference (ties, NaN, bool, unsigned), with float64
gradchecks of the values on hypothesis shapes."""

from __future__ import annotations

import numpy
import pytest
from helpers import check_op, leaves
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import seqlib as sl

SHAPES = array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)


def order_reference(x, dim, descending):
    """Stable order along ``dim`` with NaN above every number, as PyTorch sorts."""
    def line_order(line):
        def key(i):
            nan = bool(numpy.isnan(line[i])) if line.dtype.kind == "f" else False
            value = 0 if nan else line[i]
            return (-nan, -value, i) if descending else (nan, value, i)

        return numpy.array(sorted(range(len(line)), key=key), dtype=numpy.int64)

    lines = numpy.moveaxis(x, dim, -1)
    out = numpy.zeros(lines.shape, numpy.int64)
    for position in numpy.ndindex(*lines.shape[:-1]):
        out[position] = line_order(lines[position])
    return numpy.moveaxis(out, -1, dim)


def ties(shape, seed, nan=False):
    """Values from a small set, so that ties are common; some NaN if asked."""
    rng = numpy.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(numpy.float64)
    if nan:
        x[rng.random(shape) < 0.2] = numpy.nan
    return x


@given(SHAPES, st.data())
def test_sort_and_argsort_are_stable_with_nan_largest(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    descending = data.draw(st.booleans())
    x = ties(shape, data.draw(st.integers(0, 2**16)), nan=data.draw(st.booleans()))
    expected = order_reference(x, dim, descending)
    values, indices = sl.sort(sl.tensor(x), dim, descending)
    assert indices.dtype == sl.int64 and indices.tolist() == expected.tolist()
    numpy.testing.assert_array_equal(values.numpy(), numpy.take_along_axis(x, expected, dim))
    assert sl.tensor(x).argsort(dim, descending=descending).tolist() == expected.tolist()


@given(SHAPES, st.data())
def test_sort_values_gradcheck(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    descending = data.draw(st.booleans())
    x = numpy.random.default_rng(len(shape)).uniform(-2, 2, shape)  # no ties: differentiable
    order = order_reference(x, dim, descending)
    check_op(lambda t: t.sort(dim, descending=descending, stable=True).values,
             lambda a: numpy.take_along_axis(a, order, dim), x)


@given(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), st.data())
def test_topk_matches_the_stable_order_and_gradcheck(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(0, shape[dim]))
    largest = data.draw(st.booleans())
    x = ties(shape, k, nan=data.draw(st.booleans()))
    order = numpy.take(order_reference(x, dim, largest), range(k), axis=dim)
    values, indices = sl.topk(sl.tensor(x), k, dim=dim, largest=largest)
    assert indices.tolist() == order.tolist()
    numpy.testing.assert_array_equal(values.numpy(), numpy.take_along_axis(x, order, dim))
    x = numpy.random.default_rng(k).uniform(-2, 2, shape)
    order = numpy.take(order_reference(x, dim, largest), range(k), axis=dim)
    check_op(lambda t: t.topk(k, dim, largest).values,
             lambda a: numpy.take_along_axis(a, order, dim), x)


@pytest.mark.parametrize("largest", [True, False])
def test_topk_on_long_lines_with_many_ties_keeps_the_stable_order(largest):
    x = numpy.random.default_rng(0).integers(0, 20, (3, 500)).astype(numpy.float64)
    order = order_reference(x, 1, largest)
    for k in (1, 7, 50, 499):
        assert sl.topk(sl.tensor(x), k, largest=largest).indices.tolist() == order[:, :k].tolist()


def test_examples_checked_against_pytorch():
    values, indices = sl.sort(sl.tensor([3.0, 1, 2, 1]))
    assert values.tolist() == [1, 1, 2, 3] and indices.tolist() == [1, 3, 2, 0]
    result = sl.tensor([3.0, 1, float("nan"), 1]).sort(descending=True, stable=True)
    assert result.indices.tolist() == [2, 0, 1, 3] and numpy.isnan(result.values[0].item())
    assert sl.tensor([1, 1, 1, 0, 1, 1]).sort(descending=True).indices.tolist() == [
        0, 1, 2, 4, 5, 3]
    assert sl.sort(sl.tensor([True, False, True]), descending=True).values.tolist() == [
        True, True, False]
    assert sl.sort(sl.tensor([3, 1], dtype=sl.uint8), descending=True).indices.tolist() == [0, 1]
    assert sl.argsort(sl.tensor([3.0, 1, 2, 1]), descending=True).tolist() == [0, 2, 1, 3]
    assert sl.topk(sl.tensor([1.0, 3, 2]), 2).indices.tolist() == [1, 2]
    assert sl.topk(sl.tensor([1.0, 3, 2]), 2, largest=False).values.tolist() == [1, 2]
    assert sl.topk(sl.tensor([1.0, 3, float("nan"), 2]), 1).indices.tolist() == [2]
    assert sl.topk(sl.tensor([1.0, 3, 2]), 0).values.shape == (0,)
    assert sl.sort(sl.ones(2, 0), dim=1).indices.shape == (2, 0)


def test_zero_dim_input_is_its_own_sort():
    x = sl.tensor(3.0, dtype=sl.float64, requires_grad=True)
    values, indices = sl.sort(x)
    assert values.shape == () and indices.tolist() == 0
    assert sl.topk(x, 0).values.item() == 3.0  # PyTorch returns the element for k=0 too
    assert sl.argsort(x).tolist() == 0
    sl.topk(x, 1).values.backward()
    assert x.grad.item() == 1.0


def test_indices_carry_no_gradient_and_integer_values_none():
    (x,) = leaves(numpy.array([[0.5, -1.0, 2.0]]))
    values, indices = x.topk(2)
    assert values.requires_grad and not indices.requires_grad
    (values * 3).sum().backward()
    assert x.grad.tolist() == [[3.0, 0.0, 3.0]]
    assert not sl.tensor([2, 1]).sort().values.requires_grad


@pytest.mark.parametrize("call, error, message", [
    (lambda x: sl.topk(x, 4), RuntimeError, r"topk: k must be in \[0, 3\] .*dim 1.*got 4"),
    (lambda x: sl.topk(x, -1), RuntimeError, "got -1"),
    (lambda x: sl.topk(x, 1.0), TypeError, "topk: k must be an int, got 1.0"),
    (lambda x: sl.sort(x, 2), IndexError, r"sort: Dimension out of range.*\[-2, 1\]"),
    (lambda x: sl.argsort(x, -3), IndexError, "argsort: Dimension out of range"),
    (lambda x: sl.sort(x.tolist()), TypeError, "sort: input must be a Tensor, got list"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(sl.ones(2, 3))
