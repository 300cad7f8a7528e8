"""The array maths of one recurrent step: NumPy references, float64 gradchecks of the
Functions around it, and the row LayerNorm shared with the LayerNorm Function."""

from __future__ import annotations

import numpy
import pytest
from seqlib.core.functional.normalization import layer_norm_rows

import seqlib as sl
import seqlib.nn.functional as F
from seqlib.recurrent.step_maths import (
    LinearAttentionStep,
    SoftmaxWeights,
    linear_attention_step,
    softmax_attend,
)


def _random(*shape, seed=0, positive=False):
    values = numpy.random.default_rng(seed).standard_normal(shape)
    return numpy.abs(values) + 0.5 if positive else values


@pytest.mark.parametrize("first", [True, False])
def test_linear_attention_step_follows_the_formula(first):
    N, H, D, M = 2, 3, 4, 5
    Q, K = _random(N, H, D, seed=1, positive=True), _random(N, H, D, seed=2, positive=True)
    v = _random(N, H, M, seed=3)
    S = None if first else _random(N, H, D, M, seed=4, positive=True)
    Z = None if first else _random(N, H, D, seed=5, positive=True)
    kept = None if first else (S.copy(), Z.copy())
    out, S_new, Z_new = linear_attention_step(Q, K, v, S, Z, 1e-6)
    S_ref = numpy.einsum("nhd,nhm->nhdm", K, v) + (0 if first else S)
    Z_ref = K + (0 if first else Z)
    out_ref = numpy.einsum("nhd,nhdm->nhm", Q, S_ref) / (
        numpy.einsum("nhd,nhd->nh", Q, Z_ref)[..., None] + 1e-6)
    numpy.testing.assert_allclose(out, out_ref, rtol=1e-12)
    numpy.testing.assert_allclose(S_new, S_ref, rtol=1e-12)
    numpy.testing.assert_allclose(Z_new, Z_ref, rtol=1e-12)
    if not first:  # the state before is never modified
        numpy.testing.assert_array_equal(S, kept[0])
        numpy.testing.assert_array_equal(Z, kept[1])


def test_softmax_attend_follows_the_formula():
    q, keys, values = _random(2, 3, 4, seed=1), _random(2, 3, 6, 4, seed=2), _random(2, 3, 6, 5)
    scores = numpy.einsum("nhe,nhse->nhs", q, keys) * 0.5
    weights = numpy.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    numpy.testing.assert_allclose(softmax_attend(q, keys, values, 0.5),
                                  numpy.einsum("nhs,nhsm->nhm", weights, values), rtol=1e-12)


@pytest.mark.parametrize("with_state", [True, False])
def test_linear_attention_step_gradients(with_state):
    def tensor(array):
        return sl.tensor(array, dtype=sl.float64, requires_grad=True)

    Q, K = tensor(_random(2, 2, 3, seed=1, positive=True)), tensor(
        _random(2, 2, 3, seed=2, positive=True))
    v = tensor(_random(2, 2, 4, seed=3))
    S = tensor(_random(2, 2, 3, 4, seed=4, positive=True)) if with_state else None
    Z = tensor(_random(2, 2, 3, seed=5, positive=True)) if with_state else None
    weights = [sl.tensor(_random(*shape, seed=6), dtype=sl.float64)
               for shape in ((2, 2, 4), (2, 2, 3, 4), (2, 2, 3))]

    def loss(*inputs):  # every output reaches the loss, as a state does through later steps
        outputs = LinearAttentionStep.apply(*inputs, 1e-6)
        return sum((o * w).sum() for o, w in zip(outputs, weights))

    sl.gradcheck(loss, (Q, K, v, S, Z) if with_state else (Q, K, v, None, None))


def test_softmax_weights_gradients():
    q = sl.tensor(_random(2, 2, 3, seed=1), dtype=sl.float64, requires_grad=True)
    keys = sl.tensor(_random(2, 2, 5, 3, seed=2), dtype=sl.float64, requires_grad=True)
    weights = sl.tensor(_random(2, 2, 5, seed=3), dtype=sl.float64)
    sl.gradcheck(lambda q, keys: (SoftmaxWeights.apply(q, keys, 0.7) * weights).sum(),
                 (q, keys))


def test_recurrent_attention_modules_backpropagate_through_the_state():
    from seqlib.recurrent import RecurrentFullAttention, RecurrentLinearAttention

    for attention in (RecurrentLinearAttention(3), RecurrentFullAttention(attention_dropout=0)):
        inputs = [sl.tensor(_random(2, 3, 2, 3, seed=s, positive=True), dtype=sl.float64,
                            requires_grad=True) for s in range(3)]

        def two_steps(q, k, v, attention=attention):
            out, state = attention(q[0], k[0], v[0])
            out2, state = attention(q[1], k[1], v[1], state)
            return out.sum() + (out2 * out2).sum() + sum(s.sum() for s in state)

        sl.gradcheck(two_steps, inputs)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_layer_norm_rows_in_place_or_not_equals_the_reference(rows, affine, dtype):
    x = _random(rows, 7, seed=1).astype(dtype)
    weight = _random(7, seed=2).astype(dtype) if affine in ("both", "weight") else None
    bias = _random(7, seed=3).astype(dtype) if affine in ("both", "bias") else None
    centred = x - x.mean(-1, keepdims=True)
    expected = centred / numpy.sqrt((centred * centred).mean(-1, keepdims=True) + 1e-5)
    expected = expected * (1 if weight is None else weight) + (0 if bias is None else bias)
    tolerance = 1e-5 if dtype == numpy.float32 else 1e-12
    out, normalized, rstd = layer_norm_rows(x, weight, bias, 1e-5)
    numpy.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    assert out.dtype == dtype and not numpy.shares_memory(out, x)
    own = x.copy()
    in_place = layer_norm_rows(own, weight, bias, 1e-5, in_place=True)[0]
    assert in_place is own
    numpy.testing.assert_allclose(in_place, out, rtol=tolerance, atol=tolerance)
    module = F.layer_norm(sl.tensor(x), (7,), None if weight is None else sl.tensor(weight),
                          None if bias is None else sl.tensor(bias))
    numpy.testing.assert_array_equal(module.numpy(), out)  # the Function calls it
