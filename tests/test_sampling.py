"""multinomial, uniform_ and normal_: reproducible through Generator and manual_seed, the
right distributions (frequency checks with fixed seeds), PyTorch's errors."""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl

WEIGHTS = [0.5, 0.0, 1.5, 2.0]  # unnormalised, with a zero


def test_multinomial_is_reproducible_with_a_generator_and_with_manual_seed():
    probs = sl.tensor([WEIGHTS, [1.0, 1.0, 1.0, 1.0]])
    for replacement in (False, True):
        first = sl.multinomial(probs, 3, replacement, generator=sl.Generator().manual_seed(7))
        again = probs.multinomial(3, replacement, generator=sl.Generator().manual_seed(7))
        assert first.tolist() == again.tolist()
        sl.manual_seed(3)
        seeded = sl.multinomial(probs, 3, replacement)
        sl.manual_seed(3)
        assert sl.multinomial(probs, 3, replacement).tolist() == seeded.tolist()


def test_multinomial_shapes_and_dtype():
    assert sl.multinomial(sl.tensor(WEIGHTS), 2).shape == (2,)
    out = sl.multinomial(sl.ones(3, 5, dtype=sl.float64), 4, replacement=True)
    assert out.shape == (3, 4) and out.dtype == sl.int64
    assert sl.multinomial(sl.ones(0, 3), 1).shape == (0, 1)
    assert not sl.multinomial(sl.ones(3, requires_grad=True), 2).requires_grad


@pytest.mark.parametrize("num_samples", [1, 5])
def test_multinomial_with_replacement_follows_the_weights(num_samples):
    draws = sl.multinomial(sl.tensor([WEIGHTS] * 4000), num_samples, replacement=True,
                           generator=sl.Generator().manual_seed(0)).numpy()
    frequencies = numpy.bincount(draws.reshape(-1), minlength=4) / draws.size
    numpy.testing.assert_allclose(frequencies, numpy.array(WEIGHTS) / 4.0, atol=0.02)
    assert frequencies[1] == 0.0  # a zero weight is never drawn


def test_multinomial_without_replacement_draws_successively():
    weights = numpy.array([1.0, 2.0, 3.0, 4.0])
    draws = sl.multinomial(sl.tensor([weights] * 20000), 2,
                           generator=sl.Generator().manual_seed(1)).numpy()
    assert (draws[:, 0] != draws[:, 1]).all()
    p = weights / weights.sum()
    # P(first i, then j) = p_i * p_j / (1 - p_i) for successive sampling
    expected = p[:, None] * p[None, :] / (1 - p[:, None]) * (1 - numpy.eye(4))
    counts = numpy.zeros((4, 4))
    numpy.add.at(counts, (draws[:, 0], draws[:, 1]), 1)
    numpy.testing.assert_allclose(counts / len(draws), expected, atol=0.01)


def test_multinomial_without_replacement_takes_zero_weights_last():
    draws = sl.multinomial(sl.tensor([[0.0, 1.0, 3.0]] * 50), 3).numpy()
    assert (draws[:, 2] == 0).all() and sorted(draws[0].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("call, error, message", [
    (lambda: sl.multinomial(sl.tensor([1, 1]), 1), RuntimeError,
     "multinomial: input must hold floating-point probabilities, got int64"),
    (lambda: sl.multinomial(sl.tensor(1.0), 1), RuntimeError, r"1-D or 2-D .*got shape \(\)"),
    (lambda: sl.multinomial(sl.ones(2, 2, 2), 1), RuntimeError, r"got shape \(2, 2, 2\)"),
    (lambda: sl.multinomial(sl.ones(3), 0), RuntimeError, "num_samples must be positive, got 0"),
    (lambda: sl.multinomial(sl.ones(3), 1.0), TypeError, "num_samples must be an int"),
    (lambda: sl.multinomial(sl.ones(3), 4), RuntimeError,
     "cannot draw num_samples=4 of 3 categories without replacement"),
    (lambda: sl.multinomial(sl.tensor([-1.0, 1.0]), 1), RuntimeError, "inf, nan or an element"),
    (lambda: sl.multinomial(sl.tensor([float("inf"), 1.0]), 1, True), RuntimeError, "inf, nan"),
    (lambda: sl.multinomial(sl.tensor([float("nan"), 1.0]), 1), RuntimeError, "inf, nan"),
    (lambda: sl.multinomial(sl.tensor([[1.0, 1.0], [0.0, 0.0]]), 1, True), RuntimeError,
     "a row of probabilities sums to 0"),
    (lambda: sl.multinomial([0.5, 0.5], 1), TypeError, "input must be a Tensor, got list"),
])
def test_multinomial_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- uniform_, normal_ -------------------------------------------------------------------
def test_uniform_and_normal_fill_in_place_from_the_generator():
    x = sl.zeros(20000, dtype=sl.float64)
    version = x._version[0]
    assert x.uniform_(-2.0, 3.0, generator=sl.Generator().manual_seed(0)) is x
    assert x._version[0] == version + 1
    values = x.numpy()
    assert values.min() >= -2.0 and values.max() < 3.0 and abs(values.mean() - 0.5) < 0.05
    x.normal_(1.0, 2.0, generator=sl.Generator().manual_seed(0))
    assert abs(x.numpy().mean() - 1.0) < 0.05 and abs(x.numpy().std() - 2.0) < 0.05
    half = sl.zeros(3, dtype=sl.float16).normal_(std=0.0, mean=4.0)
    assert half.dtype == sl.float16 and half.tolist() == [4.0, 4.0, 4.0]
    assert sl.zeros(2).uniform_(1.0, 1.0).tolist() == [1.0, 1.0]


def test_uniform_and_normal_draw_what_nn_init_draws():
    a, b = sl.empty(4, 3), sl.empty(4, 3)
    sl.manual_seed(5)
    a.uniform_(-1, 1).add_(0)
    sl.manual_seed(5)
    sl.nn.init.uniform_(b, -1, 1)
    assert a.tolist() == b.tolist()
    sl.nn.init.normal_(a, generator=sl.Generator().manual_seed(2))
    assert a.tolist() == b.normal_(generator=sl.Generator().manual_seed(2)).tolist()


def test_uniform_and_normal_under_autograd():
    leaf = sl.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="uniform_: a leaf Variable that requires grad"):
        leaf.uniform_()
    with sl.no_grad():
        leaf.normal_()  # how parameters are re-initialised
    hidden = leaf * 2
    hidden.normal_()
    (hidden * 3).sum().backward()
    assert leaf.grad.tolist() == [0.0, 0.0, 0.0]  # the drawn values do not depend on leaf


@pytest.mark.parametrize("call, error, message", [
    (lambda: sl.zeros(2).uniform_(2, 1), RuntimeError, "expected from <= to, got from=2 > to=1"),
    (lambda: sl.zeros(2).normal_(std=-1), RuntimeError, "expected std >= 0.0, got std=-1"),
    (lambda: sl.zeros(2, dtype=sl.int64).uniform_(), TypeError,
     "uniform_: only floating tensors can be filled, got int64"),
    (lambda: sl.zeros(2, dtype=sl.int64).normal_(), TypeError, "normal_: only floating"),
])
def test_uniform_and_normal_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
