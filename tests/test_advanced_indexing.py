"""Indexing by PyTorch's rule: ints select first, then index tensors go first only when a
slice or None separates them. Checked against an element-by-element reference."""

from __future__ import annotations

import itertools

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import seqlib as sl


# ---- the reference: PyTorch's rule, one output element at a time ------------------------
def reference_sources(shape: tuple, parts: list):
    """For ``x[parts]`` on a tensor of ``shape``: the output shape and, per output element in
    row-major order, the source coordinates it reads.

    ``parts`` holds ints, slices, None, Ellipsis, bools and NumPy integer or bool arrays (what
    tensors and lists become). PyTorch's rule: an int removes its dim (select); a slice keeps
    a dim; None and a bool add a dim of size 1 (a bool also indexes it with [0] or []); a
    bool array stands for its nonzero() index arrays; index arrays broadcast together, and
    their dims replace theirs in place when they are neighbours, else go first.
    """
    consumed = sum(p.ndim if isinstance(p, numpy.ndarray) and p.dtype == bool else
                   0 if p is None or p is Ellipsis or isinstance(p, bool) else 1 for p in parts)
    fixed = {}  # source axis -> coordinate, from ints
    dims = []  # per dim after the basic steps: (source axis, source positions) or None (new)
    arrays = {}  # position in dims -> index array
    axis = 0
    for p in parts:
        if p is Ellipsis:
            for _ in range(len(shape) - consumed):
                dims.append((axis, list(range(shape[axis]))))
                axis += 1
        elif p is None or isinstance(p, bool):
            if isinstance(p, bool):
                arrays[len(dims)] = numpy.zeros(int(p), dtype=int)
            dims.append(None)
        elif isinstance(p, slice):
            dims.append((axis, list(range(shape[axis]))[p]))
            axis += 1
        elif isinstance(p, numpy.ndarray) and p.dtype == bool:
            for coordinate in numpy.nonzero(p):
                arrays[len(dims)] = coordinate
                dims.append((axis, list(range(shape[axis]))))
                axis += 1
        elif isinstance(p, numpy.ndarray):
            arrays[len(dims)] = p
            dims.append((axis, list(range(shape[axis]))))
            axis += 1
        else:
            fixed[axis] = p % shape[axis]
            axis += 1
    while axis < len(shape):  # dims the index does not mention
        dims.append((axis, list(range(shape[axis]))))
        axis += 1
    positions = sorted(arrays)
    broadcast = numpy.broadcast_shapes(*(arrays[i].shape for i in positions)) if arrays else ()
    plain = [i for i in range(len(dims)) if i not in arrays]
    adjacent = positions == list(range(positions[0], positions[-1] + 1)) if arrays else True
    if adjacent and arrays:
        before = [i for i in plain if i < positions[0]]
        after = [i for i in plain if i > positions[-1]]
        layout = [("dim", i) for i in before] + [("adv", k) for k in range(len(broadcast))] + \
                 [("dim", i) for i in after]
    else:
        layout = [("adv", k) for k in range(len(broadcast))] + [("dim", i) for i in plain]

    def size(entry):
        kind, i = entry
        if kind == "adv":
            return broadcast[i]
        return 1 if dims[i] is None else len(dims[i][1])

    out_shape = tuple(size(entry) for entry in layout)
    expanded = {i: numpy.broadcast_to(arrays[i], broadcast) for i in positions}
    sources = []
    for out_index in itertools.product(*(range(n) for n in out_shape)):
        adv_index = tuple(out_index[k] for k, (kind, _) in enumerate(layout) if kind == "adv")
        per_dim = {i: out_index[k] for k, (kind, i) in enumerate(layout) if kind == "dim"}
        per_dim.update({i: int(expanded[i][adv_index]) for i in positions})
        source = dict(fixed)
        for i, dim in enumerate(dims):
            if dim is not None:
                source[dim[0]] = dim[1][per_dim[i]]
        sources.append(tuple(source[a] % shape[a] for a in range(len(shape))))
    return out_shape, sources


def reference_getitem(array, parts):
    out_shape, sources = reference_sources(array.shape, parts)
    return numpy.array([array[s] for s in sources], dtype=array.dtype).reshape(out_shape)


def as_seqlib(parts):
    return tuple(sl.tensor(p) if isinstance(p, numpy.ndarray) else p for p in parts)


# ---- the examples and hand-computed cases ---------------------------------------
@pytest.mark.parametrize("first", [0, sl.tensor(0)])
def test_an_int_next_to_a_slice_does_not_move_the_index_tensor(first):
    x = sl.arange(8).view(2, 2, 2)
    assert x[first, :, sl.tensor([1, 0])].tolist() == [[1, 0], [3, 2]]  # PyTorch, not NumPy


def test_index_tensors_separated_by_a_slice_go_first():
    x = sl.arange(24).view(2, 3, 4)
    out = x[sl.tensor([1, 0]), :, sl.tensor([3, 2])]
    assert out.shape == (2, 3)
    assert out.tolist() == [[15, 19, 23], [2, 6, 10]]


def test_none_and_bools_as_pytorch():
    x = sl.arange(120).view(2, 3, 4, 5)
    assert x[None, 0, :, [1, 2]].shape == (1, 3, 2, 5)
    assert x[True, 0, :, sl.tensor([1, 2])].shape == (2, 3, 5)
    assert x[0, True, :, sl.tensor([1, 2])].shape == (2, 3, 5)
    assert x[sl.tensor(True), :, 0, sl.tensor([1, 2])].shape == (2, 2, 5)
    assert x[False].shape == (0, 2, 3, 4, 5)


def test_0d_integer_tensor_selects_like_an_int():
    x = sl.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], requires_grad=True)
    row = x[sl.tensor(1)]
    assert row.tolist() == [3.0, 4.0, 5.0] and row._base is x  # a view, as x[1]


def test_setitem_follows_the_same_rule():
    x = sl.zeros(2, 2, 2, dtype=sl.int64)
    x[0, :, sl.tensor([1, 0])] = sl.tensor([[1, 2], [3, 4]])
    assert x.tolist() == [[[2, 1], [4, 3]], [[0, 0], [0, 0]]]


def test_gradient_of_mixed_indexing():
    x = sl.arange(8.0, dtype=sl.float64).view(2, 2, 2).requires_grad_()
    w = sl.tensor([[1.0, 10.0], [100.0, 1000.0]], dtype=sl.float64)
    (x[0, :, sl.tensor([1, 0])] * w).sum().backward()
    assert x.grad.tolist() == [[[10.0, 1.0], [1000.0, 100.0]], [[0.0, 0.0], [0.0, 0.0]]]


def test_value_gradient_of_mixed_setitem():
    x = sl.zeros(2, 2, 2, dtype=sl.float64)
    v = sl.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=sl.float64, requires_grad=True)
    x[1, :, sl.tensor([0, 1])] = v
    (x * sl.arange(8.0, dtype=sl.float64).view(2, 2, 2)).sum().backward()
    assert v.grad.tolist() == [[4.0, 5.0], [6.0, 7.0]]  # v[i, j] lands at x[1, i, j]


# ---- random mixes against the reference -------------------------------------------------
@st.composite
def shapes_and_indices(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    array_shape = draw(st.sampled_from([(2,), (3,), (1,), (2, 2)]))
    parts, axis, ellipsis_used = [], 0, False
    # after an Ellipsis the parts must reach the last dim, so that it covers exactly the skipped
    while axis < len(shape) and draw(st.booleans() if parts and not ellipsis_used
                                     else st.just(True)):
        n = shape[axis]
        kind = draw(st.sampled_from(["int", "int0d", "slice", "array", "array", "none", "bool",
                                     "mask", "ellipsis"]))
        if kind == "int":
            parts.append(draw(st.integers(-n, n - 1)))
        elif kind == "int0d":
            parts.append(numpy.array(draw(st.integers(-n, n - 1))))
        elif kind == "slice":
            start = draw(st.none() | st.integers(-n, n))
            stop = draw(st.none() | st.integers(-n, n))
            parts.append(slice(start, stop, draw(st.none() | st.integers(1, 3))))
        elif kind == "array":
            values = draw(st.lists(st.integers(-n, n - 1), min_size=int(numpy.prod(array_shape)),
                                   max_size=int(numpy.prod(array_shape))))
            parts.append(numpy.array(values).reshape(array_shape))
        elif kind == "mask":
            parts.append(numpy.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))))
        elif kind == "none":
            parts.append(None)
            continue
        elif kind == "bool":
            parts.append(draw(st.booleans()))
            continue
        elif not ellipsis_used:
            ellipsis_used = True
            parts.append(Ellipsis)
            axis += draw(st.integers(0, len(shape) - axis))
            continue
        else:
            continue
        axis += 1
    return shape, parts


def _numpy_parts(parts):
    """The reference's view of an index: 0-d integer arrays are ints (PyTorch selects)."""
    return [int(p) if isinstance(p, numpy.ndarray) and p.ndim == 0 else p for p in parts]


def _broadcasts(shape, parts) -> bool:
    try:
        reference_sources(shape, _numpy_parts(parts))
    except ValueError:  # index arrays (or masks' nonzero) of shapes that do not broadcast
        return False
    return True


@given(shapes_and_indices())
def test_getitem_matches_the_reference(case):
    shape, parts = case
    array = numpy.arange(numpy.prod(shape), dtype=numpy.float64).reshape(shape)
    x = sl.tensor(array, requires_grad=True)
    if not _broadcasts(shape, parts):
        with pytest.raises(IndexError, match="shape mismatch"):
            x[as_seqlib(parts)]
        return
    expected = reference_getitem(array, _numpy_parts(parts))
    out = x[as_seqlib(parts)]
    assert out.shape == expected.shape
    numpy.testing.assert_array_equal(out.detach().numpy(), expected)
    # the gradient: each output element's weight lands on its source (repeats add up)
    weights = numpy.random.default_rng(0).uniform(1, 2, expected.shape)
    (out * sl.tensor(weights)).sum().backward()
    grad = numpy.zeros(shape)
    for source, weight in zip(reference_sources(shape, _numpy_parts(parts))[1], weights.flat):
        grad[source] += weight
    numpy.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-12)


@given(shapes_and_indices())
def test_setitem_matches_the_reference(case):
    shape, parts = case
    if not _broadcasts(shape, parts):
        return
    out_shape, sources = reference_sources(shape, _numpy_parts(parts))
    if len(set(sources)) != len(sources):
        return  # repeated targets: which write wins is unspecified (as in PyTorch)
    values = numpy.arange(1, len(sources) + 1, dtype=numpy.float64).reshape(out_shape)
    expected = numpy.zeros(shape)
    for source, value in zip(sources, values.flat):
        expected[source] = value
    x = sl.zeros(shape, dtype=sl.float64)
    x[as_seqlib(parts)] = sl.tensor(values)
    numpy.testing.assert_array_equal(x.numpy(), expected)
