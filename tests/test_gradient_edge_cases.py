"""Gradients at the edges, as PyTorch: ops that select take no inf * 0 = nan from a replaced
element, ``x ** 0`` and the std of a constant have gradient 0, ignored targets get 0, and
division keeps its gradient where ``b * b`` would overflow or underflow.

References are hand-computed (the comments show how) or NumPy; float64 gradchecks away from
the kinks.
"""

from __future__ import annotations

import math
import warnings

import numpy
import pytest
from helpers import leaves

import seqlib as sl
import seqlib.nn.functional as F

INF, NAN = math.inf, math.nan


def grad_of(fn, values, dtype=sl.float64):
    x = sl.tensor(values, dtype=dtype, requires_grad=True)
    fn(x).sum().backward()
    return x.grad.numpy()


def assert_same(actual, expected):
    """Equal, with nan == nan and inf == inf (assert_array_equal does both)."""
    numpy.testing.assert_array_equal(actual, numpy.array(expected))


# ---- ops that select: an inf arriving at a replaced element gives 0 --------------------------
# sqrt'(0) = inf reaches every element that the op replaced by 0 (or by the bound); PyTorch's
# backward selects the incoming gradient there, so those elements get 0, not inf * 0 = nan.
# At x = 0 the element passes through clamp (min <= x) and ties in maximum (half of inf).
SELECTS = {
    "relu": (lambda x: x.relu(), [0.0, 0.0, 0.25]),
    "F.relu": (lambda x: F.relu(x), [0.0, 0.0, 0.25]),
    "clamp_min": (lambda x: x.clamp(min=0.0), [0.0, INF, 0.25]),
    "clamp_both": (lambda x: x.clamp(0.0, 9.0), [0.0, INF, 0.25]),
    "where": (lambda x: sl.where(x > 0, x, sl.tensor(0.0, dtype=sl.float64)), [0.0, 0.0, 0.25]),
    "where_number": (lambda x: sl.where(x > 0, x, 0.0), [0.0, 0.0, 0.25]),
    "masked_fill": (lambda x: x.masked_fill(x <= 0, 0.0), [0.0, 0.0, 0.25]),
    "maximum": (lambda x: sl.maximum(x, sl.zeros_like(x)), [0.0, INF, 0.25]),
    "max_elementwise": (lambda x: sl.max(x, sl.zeros(1, dtype=x.dtype)), [0.0, INF, 0.25]),
}


@pytest.mark.parametrize("name", SELECTS)
def test_selecting_ops_give_zero_where_they_replaced_the_input(name):
    op, expected = SELECTS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sqrt'(0) divides by zero
        assert_same(grad_of(lambda x: op(x).sqrt(), [-1.0, 0.0, 4.0]), expected)


@pytest.mark.parametrize("dtype", [sl.float16, sl.float32])
@pytest.mark.parametrize("name", ["relu", "clamp_min", "where_number", "masked_fill", "maximum"])
def test_selecting_ops_in_lower_precision(name, dtype):
    """The select works on the float's bits, whatever their width."""
    op, expected = SELECTS[name]
    x = sl.tensor([-1.0, 0.0, 4.0], dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        op(x).sqrt().sum().backward()
    assert x.grad.dtype == dtype
    assert_same(x.grad.numpy().astype(numpy.float64), expected)


def test_upper_bounds_and_the_other_branch_select_too():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # sqrt(-clamp(x, max=0)): x = 1 is replaced (0); at -4, d sqrt(-x) = -1/4; at 0 the
        # input passes, and -0.0 makes sqrt's slope -inf, so -(-inf) = +inf, as in PyTorch
        assert_same(grad_of(lambda x: (-x.clamp(max=0.0)).sqrt(), [1.0, 0.0, -4.0]),
                    [0.0, INF, -0.25])
        assert_same(grad_of(lambda x: (-sl.minimum(x, sl.zeros(3, dtype=sl.float64))).sqrt(),
                            [1.0, 0.0, -4.0]), [0.0, INF, -0.25])
        # where's `other` branch: sqrt(-x) where x <= 0, d = -1/(2 sqrt(-x)); 0 where x > 0
        assert_same(grad_of(lambda x: sl.where(x > 0, 0.0, -x).sqrt(), [-1.0, 0.0, 4.0]),
                    [-0.5, INF, 0.0])


def test_nan_gradients_still_flow_where_the_input_is_selected():
    """Selecting must not hide a nan that belongs to the chosen element."""
    x = sl.tensor([1.0, -1.0], dtype=sl.float64, requires_grad=True)
    (x.relu() * sl.tensor([NAN, NAN], dtype=sl.float64)).sum().backward()
    assert_same(x.grad.numpy(), [NAN, 0.0])


def test_relu_and_maximum_at_nan_pass_the_gradient_as_pytorch():
    # PyTorch's relu backward zeroes where out <= 0, so a NaN input passes its gradient
    assert_same(grad_of(lambda x: x.relu(), [NAN, -1.0, 2.0]), [1.0, 0.0, 1.0])
    # maximum: a NaN compares neither greater nor less, so both inputs get the gradient; a
    # tie splits it evenly
    a = sl.tensor([NAN, 1.0, 2.0], dtype=sl.float64, requires_grad=True)
    b = sl.tensor([1.0, NAN, 2.0], dtype=sl.float64, requires_grad=True)
    sl.maximum(a, b).sum().backward()
    assert_same(a.grad.numpy(), [1.0, 1.0, 0.5])
    assert_same(b.grad.numpy(), [1.0, 1.0, 0.5])


def test_selecting_backward_keeps_float32_and_broadcasts():
    rng = numpy.random.default_rng(0)
    x = sl.tensor(rng.standard_normal((3, 4)).astype(numpy.float32), requires_grad=True)
    y = sl.tensor(rng.standard_normal((4,)).astype(numpy.float32), requires_grad=True)
    mask = sl.tensor(rng.standard_normal((3, 1)) > 0)
    (sl.where(mask, x, y) + sl.maximum(x, y) + x.clamp(-0.5, 0.5) + x.relu()).sum().backward()
    assert x.grad.dtype == sl.float32 and y.grad.dtype == sl.float32 and y.grad.shape == (4,)
    xa, ya, ma = x.detach().numpy(), y.detach().numpy(), mask.numpy()
    expected_x = 1.0 * ma + (xa > ya) + (abs(xa) <= 0.5) + (xa > 0)  # no ties: random data
    expected_y = numpy.broadcast_to(~ma, (3, 4)).sum(0) + (ya > xa).sum(0)
    numpy.testing.assert_allclose(x.grad.numpy(), expected_x)
    numpy.testing.assert_allclose(y.grad.numpy(), expected_y)


@pytest.mark.parametrize("op", [
    lambda x, y: sl.where(x > 0.3, x, y),
    lambda x, y: sl.maximum(x, y),
    lambda x, y: sl.minimum(x, y),
    lambda x, y: x.clamp(-0.5, 0.5) * y,
    lambda x, y: x.relu() * y,
    lambda x, y: x.masked_fill(x < 0.3, 2.0) * y,
])
def test_selecting_ops_gradcheck(op):
    rng = numpy.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, 4))
    x[numpy.abs(x) < 0.05] = 0.2  # finite differences need some distance from the kinks
    x[numpy.abs(numpy.abs(x) - 0.5) < 0.05] = 0.7
    x[numpy.abs(x - 0.3) < 0.05] = 0.9
    y = rng.uniform(1.2, 2.0, (4,))  # never ties with x
    sl.gradcheck(op, leaves(x, y))


# ---- pow with exponent 0 -------------------------------------------------------------------
@pytest.mark.parametrize("exponent", [0, 0.0, "tensor"])
def test_power_zero_has_zero_gradient_at_zero(exponent):
    # d/dx x**0 = 0 everywhere (PyTorch), not 0 * 0**-1 = 0 * inf = nan at x = 0
    e = sl.zeros(3, dtype=sl.float64) if exponent == "tensor" else exponent
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and without a divide-by-zero warning
        assert_same(grad_of(lambda x: x**e, [0.0, 1.0, -2.0]), [0.0, 0.0, 0.0])


def test_power_with_mixed_exponents_and_its_exponent_gradient():
    x = sl.tensor([0.0, 0.0, 2.0], dtype=sl.float64, requires_grad=True)
    e = sl.tensor([0.0, 2.0, 3.0], dtype=sl.float64, requires_grad=True)
    (x**e).sum().backward()
    assert_same(x.grad.numpy(), [0.0, 0.0, 12.0])  # 0; 2 * 0; 3 * 2**2
    assert_same(e.grad.numpy(), [0.0, 0.0, 8 * math.log(2.0)])  # x**e log x, 0 at x = 0
    x, e = leaves([0.5, 1.5, 2.0], [0.0, 2.0, -1.5])
    sl.gradcheck(lambda x, e: x**e, (x, e))


# ---- std of a constant ---------------------------------------------------------------------
def test_std_of_a_constant_row_has_zero_gradient():
    x = sl.tensor([[1.0, 1.0], [2.0, 3.0]], dtype=sl.float64, requires_grad=True)
    x.std(1).sum().backward()
    # row 2: std = sqrt(0.5); d std/dx_i = (x_i - mean) / ((n - 1) std) = -+0.5 / sqrt(0.5)
    numpy.testing.assert_allclose(x.grad.numpy(), [[0.0, 0.0], [-0.5**0.5, 0.5**0.5]])
    assert_same(grad_of(lambda x: x.std(), [1.0, 1.0, 1.0]), [0.0, 0.0, 0.0])
    assert_same(grad_of(lambda x: x.std(correction=0), [7.0]), [0.0])
    assert_same(grad_of(lambda x: x.std(), [7.0]), [NAN])  # 0/0: one element, correction 1


def test_std_of_a_constant_row_is_exactly_zero_whatever_the_rounding_of_its_mean():
    # mean([0.1] * 3) is not 0.1 in floating point: the std was ~1e-17 and its gradient O(1)
    # noise instead of 0 (found by tests/compare_torch.py)
    x = sl.tensor([[0.1, 0.1, 0.1], [0.3, 0.3, 0.3]], dtype=sl.float64, requires_grad=True)
    out = x.std(1)
    assert out.tolist() == [0.0, 0.0]
    out.sum().backward()
    assert_same(x.grad.numpy(), numpy.zeros((2, 3)))
    assert_same(grad_of(lambda x: x.std(), [0.1] * 7), [0.0] * 7)


@pytest.mark.parametrize("dim, correction, values, grad", [
    (0, 2, [1.5], [-0.0]),  # along a dim: 2 / (1 - 2) * (x - mean), as PyTorch
    (0, 3, [1.5, 2.0], [0.5, -0.5]),  # 2 / (2 - 3) * (x - 1.75)
    (None, 2, [1.5], [NAN]),  # the whole tensor: nan where x is the mean, inf elsewhere
    (None, 2, [1.5, 2.0], [INF, INF]),
])
def test_var_without_degrees_of_freedom_has_pytorchs_gradient(dim, correction, values, grad):
    # found by tests/compare_torch.py; the value is nan or inf either way
    assert_same(grad_of(lambda x: x.var(dim, correction=correction), values), grad)


def test_var_std_and_log_softmax_of_empty_dims_warn_nothing():
    x = sl.zeros(2, 0, dtype=sl.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert numpy.isnan(x.var(1).tolist()).all() and numpy.isnan(x.std(1).tolist()).all()
        assert F.log_softmax(x, 1).shape == (2, 0)
        x.var(1).sum().backward()


@pytest.mark.parametrize("dim, correction, keepdim", [
    (None, 1, False), (1, 1, True), ((0, 2), 0, False), (-1, 2, False),
])
def test_std_matches_numpy_and_gradchecks(dim, correction, keepdim):
    rng = numpy.random.default_rng(2)
    a = rng.standard_normal((3, 4, 5))
    (x,) = leaves(a)
    out = x.std(dim, keepdim=keepdim, correction=correction)
    axis = tuple(dim) if isinstance(dim, tuple) else dim
    numpy.testing.assert_allclose(out.detach().numpy(),
                                  a.std(axis=axis, ddof=correction, keepdims=keepdim))
    sl.gradcheck(lambda t: t.std(dim, keepdim=keepdim, correction=correction), (x,))


# ---- cross-entropy and nll with nothing to count -------------------------------------------
LOGITS = [[1.0, 2.0, 0.5], [3.0, 4.0, -1.0]]


def loss_and_grad(loss_fn, target, **kwargs):
    x = sl.tensor(LOGITS, dtype=sl.float64, requires_grad=True)
    loss = loss_fn(x, sl.tensor(target), **kwargs)
    loss.backward()
    return loss.item(), x.grad.numpy()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_with_every_target_ignored(smoothing):
    # the mean over no targets is 0/0 = nan, but nothing depends on the input: gradient 0
    loss, grad = loss_and_grad(F.cross_entropy, [-100, -100], label_smoothing=smoothing)
    assert math.isnan(loss)
    assert_same(grad, numpy.zeros((2, 3)))
    loss, grad = loss_and_grad(F.cross_entropy, [7, 7], ignore_index=7, reduction="sum")
    assert loss == 0.0 and not grad.any()
    loss, grad = loss_and_grad(F.nll_loss, [-100, -100])
    assert math.isnan(loss)
    assert_same(grad, numpy.zeros((2, 3)))


def test_cross_entropy_with_zero_total_weight_is_nan_where_rows_count():
    """Rows that count with weight 0 divide 0 by a total weight of 0 (nan in PyTorch too);
    ignored rows still get 0. Through log_softmax the whole row is nan; nll_loss's gradient
    is only at the target."""
    zero = sl.tensor([0.0, 0.0, 1.0], dtype=sl.float64)
    loss, grad = loss_and_grad(F.cross_entropy, [0, -100], weight=zero)
    assert math.isnan(loss)
    assert_same(grad, [[NAN] * 3, [0.0] * 3])
    loss, grad = loss_and_grad(F.nll_loss, [0, 1], weight=zero)
    assert_same(grad, [[NAN, 0.0, 0.0], [0.0, NAN, 0.0]])


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_a_nan_arriving_at_nll_stays_on_counted_target_entries(reduction):
    # PyTorch scatters nll_loss's gradient to the targets: a nan from above reaches neither
    # the other entries nor ignored rows (found by tests/compare_torch.py, from a var of one
    # element upstream)
    x = sl.tensor(LOGITS, dtype=sl.float64, requires_grad=True)
    loss = F.nll_loss(x, sl.tensor([2, 1]), reduction=reduction, ignore_index=1)
    (loss * sl.tensor(NAN, dtype=sl.float64)).sum().backward()
    assert_same(x.grad.numpy(), [[0.0, 0.0, NAN], [0.0, 0.0, 0.0]])
    x.grad = None
    loss = F.cross_entropy(x, sl.tensor([2, 1]), reduction=reduction, ignore_index=1)
    (loss * sl.tensor(NAN, dtype=sl.float64)).sum().backward()
    assert_same(x.grad.numpy(), [[NAN] * 3, [0.0] * 3])  # the whole row through log_softmax


def test_cross_entropy_of_an_empty_batch():
    for target in (sl.zeros(0, dtype=sl.int64), sl.zeros(0, 3, dtype=sl.float64)):
        x = sl.zeros(0, 3, dtype=sl.float64, requires_grad=True)
        loss = F.cross_entropy(x, target)
        loss.backward()
        assert math.isnan(loss.item()) and x.grad.shape == (0, 3)
        assert F.cross_entropy(x, target, reduction="sum").item() == 0.0


def test_cross_entropy_with_some_targets_ignored_is_unchanged():
    x = numpy.array(LOGITS)
    loss, grad = loss_and_grad(F.cross_entropy, [1, -100])
    p = numpy.exp(x[0]) / numpy.exp(x[0]).sum()
    assert loss == pytest.approx(-math.log(p[1]))
    numpy.testing.assert_allclose(grad, [p - [0, 1, 0], [0, 0, 0]])


# ---- division at extreme magnitudes (issue 15, item 7) --------------------------------------
@pytest.mark.parametrize("dtype, a, b", [
    (sl.float32, 1e-20, 1e-23),  # b * b = 1e-46 underflows float32 to 0
    (sl.float64, 1e300, 1e160),  # b * b = 1e320 overflows float64 to inf
])
def test_division_gradient_at_extreme_magnitudes(dtype, a, b):
    x = sl.tensor(a, dtype=dtype, requires_grad=True)
    y = sl.tensor(b, dtype=dtype, requires_grad=True)
    (x / y).backward()
    assert x.grad.item() == pytest.approx(1 / b, rel=1e-6)
    assert y.grad.item() == pytest.approx(-a / b / b, rel=1e-6)  # -1e26, -1e-20


@pytest.mark.parametrize("mode", ["floor", "trunc"])
def test_rounded_division_has_zero_gradient_even_for_a_nan_dividend(mode):
    # PyTorch defines both gradients as 0; floor(a / b) sent 0 * (a / b) / b = nan to b
    # (found by tests/compare_torch.py)
    a = sl.tensor([NAN, 7.0, -7.0], dtype=sl.float64, requires_grad=True)
    b = sl.tensor([2.0, 2.0, 2.0], dtype=sl.float64, requires_grad=True)
    out = sl.div(a, b, rounding_mode=mode)
    assert_same(out.detach().numpy(), [NAN, 3.0, -4.0 if mode == "floor" else -3.0])
    out.sum().backward()
    assert_same(a.grad.numpy(), [0.0] * 3)
    assert_same(b.grad.numpy(), [0.0] * 3)
    (c,) = leaves([1.5])
    (sl.div(c, 2.0, rounding_mode=mode) + sl.div(4.0, c, rounding_mode=mode)).sum().backward()
    assert_same(c.grad.numpy(), [0.0])


# ---- NaN in max and amax ---------------------------------------------------------------------
def test_max_of_a_nan_sends_the_gradient_to_the_nans_and_amax_gives_nan():
    # PyTorch: max() spreads the gradient over the NaNs (its result), amax(dim) is 0 / 0 = nan;
    # seqlib gave nan for max() and printed NumPy's divide warning for amax (found by
    # tests/test_fuzz.py's slow profile)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(grad_of(lambda x: x.max(), [1.0, NAN, 2.0]), [0.0, 1.0, 0.0])
        assert_same(grad_of(lambda x: x.min(), [NAN, NAN, 2.0]), [0.5, 0.5, 0.0])
        assert_same(grad_of(lambda x: x.amax(0), [1.0, NAN, 2.0]), [NAN] * 3)
        assert_same(grad_of(lambda x: sl.amin(x, 0), [NAN]), [NAN])


def test_a_nan_arriving_at_max_reaches_only_the_maximum():
    # PyTorch's max() fills the gradient in at the maximum; amax multiplies, so there it is
    # nan everywhere (found by tests/compare_torch.py)
    x = sl.tensor([1.0, 3.0, 2.0], dtype=sl.float64, requires_grad=True)
    (x.max() * NAN).backward()
    assert_same(x.grad.numpy(), [0.0, NAN, 0.0])
    x.grad = None
    (x.amax(0) * NAN).backward()
    assert_same(x.grad.numpy(), [NAN] * 3)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_an_ignored_row_of_nan_scores_loses_nothing(smoothing):
    # PyTorch: an ignored row's loss is 0 whatever its scores; seqlib gave nan * 0 = nan
    # (found by tests/compare_torch.py)
    x = sl.tensor([[NAN, 1.0, 2.0], [0.5, 1.0, -1.0]], dtype=sl.float64, requires_grad=True)
    target = sl.tensor([-100, 1])
    losses = F.cross_entropy(x, target, reduction="none", label_smoothing=smoothing)
    assert losses[0].item() == 0.0 and math.isfinite(losses[1].item())
    assert F.cross_entropy(x, target, label_smoothing=smoothing).item() == losses[1].item()
    assert F.nll_loss(x, target, reduction="sum").item() == -1.0
