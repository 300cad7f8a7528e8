"""In-place ops under autograd, as PyTorch: what backward saves, graph-keeping overwrites, and
views whose base (or another view) is changed in place."""

from __future__ import annotations

import numpy
import pytest

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
