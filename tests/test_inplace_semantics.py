"""In-place ops under autograd, as PyTorch: what backward saves, graph-keeping overwrites, and
views whose base (or another view) is changed in place."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import seqlib as sl
import seqlib.nn.functional as F


def rng_values(shape, seed=0):
    return numpy.random.default_rng(seed).uniform(-2.0, 2.0, shape)


# ---- Functions save what their backward needs, not their output by default -------------
def test_elu_output_may_be_changed_in_place():
    x = sl.tensor([-1.0, 0.5, 2.0], dtype=sl.float64, requires_grad=True)
    y = F.elu(x * 1)
    y.add_(1)  # PyTorch's elu backward reads its input, which this does not touch
    y.sum().backward()
    numpy.testing.assert_allclose(x.grad.numpy(), [numpy.exp(-1.0), 1.0, 1.0], rtol=1e-12)


def test_elu_gradcheck_with_alpha():
    x = sl.tensor(rng_values((3, 4)), requires_grad=True)
    assert sl.gradcheck(lambda t: F.elu(t, alpha=0.7), [x])


def test_pow_with_a_number_exponent_may_have_its_output_changed_in_place():
    x = sl.tensor([-1.0, 3.0], dtype=sl.float64, requires_grad=True)
    y = (x * 1) ** 2
    y.add_(1)
    y.sum().backward()
    assert x.grad.tolist() == [-2.0, 6.0]


def test_pow_with_a_tensor_exponent_that_needs_grad_still_saves_its_output():
    x = sl.tensor([1.5, 3.0], dtype=sl.float64, requires_grad=True)
    e = sl.tensor([2.0, 0.5], dtype=sl.float64, requires_grad=True)
    y = (x * 1) ** e
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("op", ["mul", "div"])
def test_an_input_that_no_gradient_reads_may_be_changed_in_place(op):
    x = sl.tensor([1.0, 2.0], dtype=sl.float64, requires_grad=True)
    w = sl.tensor([4.0, 8.0], dtype=sl.float64)
    y = x * 1
    z = y * w if op == "mul" else y / w  # dz/dy reads w only
    y.add_(1)
    z.sum().backward()
    assert x.grad.tolist() == ([4.0, 8.0] if op == "mul" else [0.25, 0.125])


@pytest.mark.parametrize("op", ["mul", "div"])
def test_an_input_a_gradient_reads_is_still_checked(op):
    x = sl.tensor([1.0, 2.0], dtype=sl.float64, requires_grad=True)
    w = sl.tensor([4.0, 8.0], dtype=sl.float64, requires_grad=op == "mul")
    y = x * 1
    z = w * y if op == "mul" else w / y  # dz/dw reads y; dz/dy of a quotient reads y
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


@pytest.mark.parametrize("op", ["mul", "div", "pow"])
@pytest.mark.parametrize("grad_of", ["left", "right", "both"])
def test_binary_gradcheck_with_either_input_requiring_grad(op, grad_of):
    a = sl.tensor(numpy.abs(rng_values((3, 1), 1)) + 0.5,
                  requires_grad=grad_of in ("left", "both"))
    b = sl.tensor(rng_values((1, 4), 2), requires_grad=grad_of in ("right", "both"))
    fn = {"mul": lambda p, q: p * q, "div": lambda p, q: p / q, "pow": lambda p, q: p ** q}[op]
    assert sl.gradcheck(fn, [a, b])


# ---- overwrites keep the graph: the overwritten elements get a zero gradient -------------
@pytest.mark.parametrize("overwrite", [
    lambda y: y.fill_(1.0),
    lambda y: y.zero_(),
    lambda y: y.copy_(sl.tensor([5.0, 6.0, 7.0], dtype=sl.float64)),
    lambda y: y.masked_fill_(sl.tensor([True, False, True]), 0.0),
    lambda y: y.__setitem__(sl.tensor([0, 2]), 7.0),
    lambda y: y.__setitem__(slice(0, 3, 2), 7.0),
])
def test_overwriting_in_place_keeps_the_graph(overwrite):
    x = sl.tensor([1.0, 2.0, 3.0], dtype=sl.float64, requires_grad=True)
    y = x * 2
    kept = [y.tolist()[i] for i in range(3)]
    overwrite(y)
    y.sum().backward()  # PyTorch: the overwritten elements' gradient is 0, the others' 2
    expected = [0.0 if y.tolist()[i] != kept[i] else 2.0 for i in range(3)]
    assert x.grad.tolist() == expected


def test_copy_into_a_tensor_passes_the_gradient_to_the_source():
    x = sl.tensor([1.0, 2.0], dtype=sl.float64, requires_grad=True)
    s = sl.tensor([3.0], dtype=sl.float64, requires_grad=True)
    y = x * 2
    y.copy_(s * 5)  # broadcast
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0] and s.grad.tolist() == [10.0]


# ---- views follow in-place changes of their base, and bases of their views ---------------
# Each program is a function of x (2, 3) that changes a tensor in place while views of it are
# alive, with `lib` seqlib (or torch, to compare by hand) and F its functional module.
def _t_then_base(lib, F, x):
    y = x * 1
    v = y.t()
    y.mul_(3)
    return (v * v).sum()


def _chain_of_views_then_base(lib, F, x):
    y = x * 1
    v = y.t()[1:].unsqueeze(0).squeeze(0)
    y.mul_(x.exp()).add_(x)
    return (v * v).sum()


def _reshape_view_permute(lib, F, x):
    y = (x * 1).reshape(1, 2, 3)
    views = [y.view(6), y.reshape(3, 2), y.permute(2, 0, 1), y.transpose(1, 2), y[0, :, 1:],
             y[..., None, 0], y.squeeze(0)]
    y.mul_(x.exp().reshape(1, 2, 3))
    return sum(((v * v) * (i + 1)).sum() for i, v in enumerate(views))


def _split_chunk_unbind_then_base(lib, F, x):
    y = x * 1
    pieces = [*y.split([1, 2], 1), *y.chunk(2, 0), *y.unbind(1)]
    y.mul_(x)
    return sum(((p * p) * (i + 1)).sum() for i, p in enumerate(pieces))


def _expand_then_base(lib, F, x):
    y = x * 1
    e = y[0].expand(4, 3)
    y.mul_(2)
    return (e * e).sum()


def _view_in_place_then_base(lib, F, x):
    y = x * 1
    y[0].mul_(x[1])
    return (y * y).sum()


def _view_in_place_then_overlapping_view(lib, F, x):
    y = x * 1
    column, row = y[:, 0], y[1]
    row.mul_(x[0])
    return (column * column).sum() + (row * 3).sum()


def _view_of_view_in_place(lib, F, x):
    y = x * 1
    y.t()[1:].mul_(3)
    y.t()[0].add_(x[:, 2] * x[:, 1])
    return (y * y).sum()


def _view_in_place_then_itself(lib, F, x):
    y = x * 1
    v = y[0]
    v.mul_(2)
    v.add_(x[1])
    return (v * v).sum()


def _overwrites_through_views(lib, F, x):
    y = x * 1
    y[0].zero_()
    y.t()[1].fill_(2.0)
    y[1, 1:].copy_(x[0, :2] * 4)
    y[:, 2].masked_fill_(x[:, 0] > 0, 1.5)
    y.t()[0][1] = x[0, 0] * x[1, 2]
    return (y * y).sum()


def _relu_in_place_on_a_view(lib, F, x):
    y = x * 1
    F.relu(y[1], inplace=True)
    return (y * y).sum()


def _base_without_grad_written_through_a_view(lib, F, x):
    b = lib.zeros(2, 3, dtype=x.dtype)
    column = b[:, 0]  # made while b has no history
    b[1].copy_(x[0] * 2)
    return (column * column).sum() + (b * b).sum()


def _root_changed_twice(lib, F, x):
    y = x * 1
    v = y.t()
    y.mul_(2)
    first = (v * 2).sum()  # saves no view: y may change again
    y.add_(x * x)
    return first + (v * v * v).sum()


def _pieces_in_place(lib, F, x):
    y = x * 1
    top, bottom = y.unbind(0)
    top.mul_(3)
    left, right = y.split([2, 1], 1)
    right.add_(x[:, :1])
    return (y * y).sum() + (left * left).sum() + (bottom * bottom).sum()


VIEW_PROGRAMS = [_t_then_base, _chain_of_views_then_base, _reshape_view_permute,
                 _split_chunk_unbind_then_base, _expand_then_base, _view_in_place_then_base,
                 _view_in_place_then_overlapping_view, _view_of_view_in_place,
                 _view_in_place_then_itself, _overwrites_through_views,
                 _relu_in_place_on_a_view, _base_without_grad_written_through_a_view,
                 _root_changed_twice, _pieces_in_place]


@pytest.mark.parametrize("program", VIEW_PROGRAMS, ids=lambda p: p.__name__.strip("_"))
def test_views_and_in_place_gradcheck(program):
    x = sl.tensor(rng_values((2, 3), 3), requires_grad=True)
    assert sl.gradcheck(lambda t: program(sl, F, t), [x])


def test_issue_example_view_reads_its_base_after_mul_():
    x = sl.tensor([[0.0, 0.5, 1.0], [1.5, 2.0, 2.5]], requires_grad=True)
    y = x * 1
    v = y.t()
    y.mul_(3)
    assert v.tolist() == [[0.0, 4.5], [1.5, 6.0], [3.0, 7.5]]
    assert v.grad_fn.name() == "AsStridedBackward"
    (v * v).sum().backward()
    assert x.grad.tolist() == [[0.0, 9.0, 18.0], [27.0, 36.0, 45.0]]  # 2 * 3x * 3, as PyTorch


def test_issue_example_split_views_read_their_base_after_mul_():
    x = sl.tensor([0.0, 0.5, 1.0, 1.5], requires_grad=True)
    y = x * 1
    a, b = y.split(2)
    y.mul_(3)
    (a * a).sum().backward()
    assert x.grad.tolist() == [0.0, 9.0, 0.0, 0.0]


def test_views_share_the_version_counter_with_their_base():
    x = sl.ones(2, 3, requires_grad=True)
    y = x * 1
    v, row = y.t(), y[1]
    y.add_(1)
    assert v._version[0] == row._version[0] == y._version[0] == 1
    row.mul_(2)
    assert v._version[0] == y._version[0] == 2
    z = v * v  # saves v: a later change through any view is detected
    y[0].zero_()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_retain_grad_follows_a_rebased_view():
    x = sl.ones(2, 2, requires_grad=True)
    y = x * 1
    v = y[0]
    v.retain_grad()
    y.mul_(3)
    (v * 2).sum().backward()
    assert v.grad.tolist() == [2.0, 2.0] and x.grad.tolist() == [[6.0, 6.0], [0.0, 0.0]]


def test_in_place_on_an_expanded_view_is_refused():
    y = sl.ones(3, requires_grad=True) * 1
    with pytest.raises(RuntimeError, match="expanded view.*clone"):
        y.expand(2, 3).mul_(2)


def test_in_place_on_a_view_made_under_no_grad_is_refused_with_grad_mode_on():
    y = sl.ones(2, 2, requires_grad=True) * 1
    with sl.no_grad():
        row = y[0]
        row.mul_(2)  # allowed: untracked, as asked
    with pytest.raises(RuntimeError, match="created in no_grad mode"):
        row.mul_(2)


def test_dead_views_are_forgotten():
    y = sl.ones(4, 4, requires_grad=True) * 1
    for _ in range(1000):
        y.t()
    assert len(y._views) < 32
    kept = [y[i] for i in range(4)]
    for _ in range(100):
        y.t()
    assert sum(ref() is not None for ref in y._views) == len(kept)


def test_in_place_activation_under_no_grad_keeps_the_history():
    x = sl.tensor([-1.0, 2.0], dtype=sl.float64, requires_grad=True)
    y = x * 3
    with sl.no_grad():
        F.relu(y, inplace=True)  # untracked, as asked: y keeps its history and bumps its version
    assert y.grad_fn is not None and y._version[0] == 1 and y.tolist() == [0.0, 6.0]
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_a_single_element_view_writes_through():
    y = sl.tensor([1.0, 2.0, 3.0])
    y[0].add_(5)  # NumPy copies single elements out; seqlib's x[i] is a 0-d view, as PyTorch
    assert y.tolist() == [6.0, 2.0, 3.0]
    x = sl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    z = x * 1
    z[1].mul_(3)
    z.sum().backward()
    assert x.grad.tolist() == [1.0, 3.0, 1.0]


# ---- random chains of views, changed in place through the root or the view ---------------
VIEW_STEPS = {
    "transpose": lambda v: v.transpose(0, -1) if v.ndim >= 2 else v,
    "permute": lambda v: v.permute(*range(v.ndim - 1, -1, -1)) if v.ndim >= 2 else v,
    "unsqueeze": lambda v: v.unsqueeze(0),
    "squeeze": lambda v: v.squeeze(),
    "index": lambda v: v[-1] if v.ndim else v,
    "slice": lambda v: v[..., ::2] if v.ndim else v,
    "split": lambda v: v.split(2)[0] if v.ndim else v,
    "chunk": lambda v: v.chunk(2, -1)[-1] if v.ndim else v,
    "unbind": lambda v: v.unbind(-1)[0] if v.ndim else v,
    "reshape": lambda v: v.reshape(-1),  # a view when the layout allows, else a copy
    "expand": lambda v: v.unsqueeze(0).expand(2, *v.shape),
}


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       steps=st.lists(st.sampled_from(sorted(VIEW_STEPS)), min_size=1, max_size=3),
       changed=st.sampled_from(["root", "view"]), seed=st.integers(0, 100))
def test_random_view_chains_changed_in_place_gradcheck(shape, steps, changed, seed):
    x = sl.tensor(rng_values(shape, seed), requires_grad=True)

    def program(leaf):
        root = leaf * 1
        view = root
        for step in steps:
            view = VIEW_STEPS[step](view)
        weights = sl.tensor(rng_values(view.shape, seed + 1))
        if changed == "root":
            root.mul_(leaf.exp())
        else:
            try:
                view.mul_(view * 1).add_(1.5)
            except RuntimeError as error:  # refused only on expanded views
                assert "expand" in steps and "expanded view" in str(error)
        return (view * weights).sum() + (root * root).sum()

    assert sl.gradcheck(program, [x])
