"""Losses against per-element NumPy references of PyTorch's documented formulas."""

from __future__ import annotations

import itertools

import numpy
import pytest
from helpers import away_from, check_op
from hypothesis import given
from hypothesis import strategies as st

import seqlib as sl
import seqlib.nn.functional as F


def log_softmax(x, axis):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - numpy.log(numpy.exp(shifted).sum(axis, keepdims=True))


def reference_cross_entropy(x, target, weight, ignore_index, reduction, smoothing, logits=True):
    """Loop over elements: (1-e) * w[y] * -logp[y] + e/C * sum_c w[c] * -logp[c]."""
    logp = log_softmax(x, 1 if x.ndim > 1 else 0) if logits else x
    if x.ndim == 1:
        logp, target = logp[None], numpy.asarray(target)[None]
    classes = logp.shape[1]
    w = numpy.ones(classes) if weight is None else weight
    losses = numpy.zeros(target.shape)
    denominator = 0.0
    for position in itertools.product(*[range(n) for n in target.shape]):
        y = target[position]
        if y == ignore_index:
            continue
        scores = logp[(position[0], slice(None)) + position[1:]]
        nll = -w[y] * scores[y]
        smooth = -(w * scores).sum()
        losses[position] = (1 - smoothing) * nll + smoothing / classes * smooth
        denominator += w[y]
    if reduction == "none":
        return losses[0] if x.ndim == 1 else losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / denominator


@given(
    shape=st.sampled_from([(4, 3), (3, 5, 2), (2, 3, 2, 2), (5,)]),
    weighted=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    smoothing=st.sampled_from([0.0, 0.25]),
    seed=st.integers(0, 100),
)
def test_cross_entropy_class_targets(shape, weighted, reduction, smoothing, seed):
    rng = numpy.random.default_rng(seed)
    classes = shape[0] if len(shape) == 1 else shape[1]
    target_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    target = rng.integers(0, classes, target_shape)
    if target.size > 1:
        target.reshape(-1)[0] = -100  # one ignored element
    weight = rng.uniform(0.5, 2, classes) if weighted else None
    x = rng.normal(size=shape) * 3

    def fn(x):
        return F.cross_entropy(x, sl.tensor(target), None if weight is None else sl.tensor(weight),
                               reduction=reduction, label_smoothing=smoothing)

    check_op(fn, lambda x: reference_cross_entropy(x, target, weight, -100, reduction, smoothing),
             x)


def test_loss_weights_must_not_require_grad():
    with pytest.raises(NotImplementedError, match="derivative for 'weight'"):
        F.cross_entropy(sl.ones(2, 3), sl.tensor([0, 1]), weight=sl.ones(3, requires_grad=True))
    with pytest.raises(NotImplementedError, match="derivative for 'pos_weight'"):
        F.binary_cross_entropy_with_logits(sl.ones(2), sl.ones(2),
                                           pos_weight=sl.ones(2, requires_grad=True))


def test_cross_entropy_ignore_index_and_all_ignored():
    x = sl.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]], dtype=sl.float64)
    only_first = F.cross_entropy(x, sl.tensor([2, 7]), ignore_index=7)
    assert only_first.item() == pytest.approx(-log_softmax(x.numpy(), 1)[0, 2])
    assert numpy.isnan(F.cross_entropy(x, sl.tensor([-100, -100])).item())  # 0/0 as PyTorch


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_probability_targets(reduction, smoothing):
    rng = numpy.random.default_rng(3)
    x = rng.normal(size=(4, 3, 2))
    p = rng.random((4, 3, 2))
    p /= p.sum(1, keepdims=True)
    weight = numpy.array([0.5, 1.0, 2.0])

    def reference(x, p):
        q = p * (1 - smoothing) + smoothing / 3
        losses = -(log_softmax(x, 1) * q * weight[None, :, None]).sum(1)
        if reduction == "none":
            return losses
        return losses.sum() if reduction == "sum" else losses.sum() / losses.size

    check_op(lambda x, p: F.cross_entropy(x, p, sl.tensor(weight), reduction=reduction,
                                          label_smoothing=smoothing), reference, x, p)


def test_cross_entropy_is_stable_and_validates():
    x = sl.tensor([[1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
    loss = F.cross_entropy(x, sl.tensor([0, 0]))
    assert numpy.isfinite(loss.item()) and loss.item() == pytest.approx(1e4)
    loss.backward()
    assert numpy.isfinite(x.grad.numpy()).all()
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        F.cross_entropy(sl.ones(2, 3), sl.tensor([0, 3]))
    with pytest.raises(ValueError, match="expected target of shape"):
        F.cross_entropy(sl.ones(2, 3), sl.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction must be"):
        F.cross_entropy(sl.ones(2, 3), sl.tensor([0, 1]), reduction="avg")
    with pytest.raises(RuntimeError, match="weight must have shape"):
        F.cross_entropy(sl.ones(2, 3), sl.tensor([0, 1]), weight=sl.ones(2))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(sl.ones(2, 3), sl.tensor([0, 1]), label_smoothing=2.0)
    with pytest.raises(ValueError, match="probability targets must have the input's shape"):
        F.cross_entropy(sl.ones(2, 3), sl.ones(2, 2))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(reduction, weighted):
    rng = numpy.random.default_rng(1)
    logp = log_softmax(rng.normal(size=(5, 4)), 1)
    target = numpy.array([0, 3, -100, 1, 3])
    weight = rng.uniform(0.5, 2, 4) if weighted else None
    check_op(lambda x: F.nll_loss(x, sl.tensor(target), None if weight is None
                                  else sl.tensor(weight), reduction=reduction),
             lambda x: reference_cross_entropy(x, target, weight, -100, reduction, 0.0,
                                               logits=False), logp)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1(reduction):
    rng = numpy.random.default_rng(2)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    b = a + away_from(b - a, gap=0.1)
    reduce = {"mean": numpy.mean, "sum": numpy.sum, "none": lambda v: v}[reduction]
    check_op(lambda x, y: F.mse_loss(x, y, reduction), lambda x, y: reduce((x - y) ** 2), a, b)
    check_op(lambda x, y: F.l1_loss(x, y, reduction), lambda x, y: reduce(numpy.abs(x - y)), a, b)
    with pytest.raises(ValueError, match="must be the same as input size"):
        F.mse_loss(sl.ones(2), sl.ones(3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted, pos_weighted", [(False, False), (True, False), (False, True),
                                                    (True, True)])
def test_binary_cross_entropy_with_logits(reduction, weighted, pos_weighted):
    rng = numpy.random.default_rng(4)
    x = rng.normal(size=(4, 3)) * 3
    y = rng.random((4, 3))
    weight = rng.random((4, 3)) if weighted else None
    pos_weight = rng.uniform(0.5, 3, 3) if pos_weighted else None
    reduce = {"mean": numpy.mean, "sum": numpy.sum, "none": lambda v: v}[reduction]

    def reference(x, y):
        p = 1 / (1 + numpy.exp(-x))
        pw = 1 if pos_weight is None else pos_weight
        losses = -(pw * y * numpy.log(p) + (1 - y) * numpy.log(1 - p))
        return reduce(losses * (1 if weight is None else weight))

    check_op(lambda x, y: F.binary_cross_entropy_with_logits(
        x, y, None if weight is None else sl.tensor(weight), reduction,
        None if pos_weight is None else sl.tensor(pos_weight)), reference, x, y)


def test_bce_is_stable_for_huge_logits():
    loss = F.binary_cross_entropy_with_logits(sl.tensor([1e4, -1e4]), sl.tensor([0.0, 1.0]),
                                              reduction="none")
    assert loss.tolist() == [1e4, 1e4]
