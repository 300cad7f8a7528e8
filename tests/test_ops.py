"""Every tensor op against a NumPy reference, with float64 gradchecks (hypothesis shapes)."""

from __future__ import annotations

import numpy
import pytest
from helpers import away_from, check_op, leaves
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes
from seqlib.core.special import erf as erf_array

import seqlib as sl

SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
NONEMPTY = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
PAIRS = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0,
                                      max_side=3)


def values(shape, seed=0, low=-2.0, high=2.0):
    return numpy.random.default_rng(seed).uniform(low, high, shape)


# ---- unary elementwise -------------------------------------------------------------------
UNARY = {
    "neg": (lambda x: -x, lambda a: -a, None),
    "exp": (sl.exp, numpy.exp, None),
    "log": (sl.log, numpy.log, (0.2, 3.0)),
    "log1p": (sl.log1p, numpy.log1p, (-0.8, 3.0)),
    "sqrt": (sl.sqrt, numpy.sqrt, (0.2, 3.0)),
    "rsqrt": (sl.rsqrt, lambda a: 1 / numpy.sqrt(a), (0.2, 3.0)),
    "abs": (sl.abs, numpy.abs, "kink"),
    "sin": (sl.sin, numpy.sin, None),
    "cos": (sl.cos, numpy.cos, None),
    "tanh": (sl.tanh, numpy.tanh, None),
    "sigmoid": (sl.sigmoid, lambda a: 1 / (1 + numpy.exp(-a)), None),
    "erf": (sl.erf, lambda a: erf_array(a), None),
    "relu": (lambda x: x.relu(), lambda a: numpy.maximum(a, 0), "kink"),
    "square_pow": (lambda x: x**2, lambda a: a**2, None),
    "rpow": (lambda x: 2.0**x, lambda a: 2.0**a, None),
    "clamp": (lambda x: x.clamp(-0.5, 0.7), lambda a: numpy.clip(a, -0.5, 0.7), "clamp"),
    "clamp_min": (lambda x: sl.clamp(x, min=0.3), lambda a: numpy.maximum(a, 0.3), "clamp"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=SHAPES)
def test_unary_ops(name, shape):
    fn, reference, domain = UNARY[name]
    if isinstance(domain, tuple):
        x = values(shape, low=domain[0], high=domain[1])
    elif domain == "clamp":
        x = away_from(values(shape), (-0.5, 0.7, 0.3))
    else:
        x = away_from(values(shape)) if domain == "kink" else values(shape)
    check_op(fn, reference, x)


def test_erf_matches_math_erf_to_one_ulp():
    import math

    grid = numpy.linspace(-7, 7, 20001)
    expected = numpy.array([math.erf(v) for v in grid])
    numpy.testing.assert_allclose(erf_array(grid), expected, rtol=0, atol=2.3e-16)
    assert erf_array(numpy.array([numpy.inf, -numpy.inf])).tolist() == [1.0, -1.0]
    single = erf_array(grid.astype(numpy.float32))
    assert single.dtype == numpy.float32
    numpy.testing.assert_allclose(single, expected, rtol=0, atol=5e-7)
    assert numpy.isnan(erf_array(numpy.array([numpy.nan])))[0]
    # float32 runs in blocks: several of them, a ragged last one, a strided 2-d input
    fine = numpy.linspace(-7, 7, 3 * 65536 + 7)
    wide = numpy.stack([fine, -fine], axis=1).astype(numpy.float32)[:, ::-1]
    expected = numpy.array([math.erf(v) for v in fine])
    got = erf_array(wide)
    assert got.shape == wide.shape and got.dtype == numpy.float32
    numpy.testing.assert_allclose(got[:, 1], expected, rtol=0, atol=5e-7)
    numpy.testing.assert_allclose(got[:, 0], -expected, rtol=0, atol=5e-7)
    special = erf_array(numpy.array([numpy.nan, numpy.inf, -numpy.inf, -0.0], numpy.float32))
    assert numpy.isnan(special[0]) and special[1:].tolist() == [1.0, -1.0, 0.0]
    assert erf_array(numpy.array([0.5], numpy.float16)).dtype == numpy.float16


@pytest.mark.parametrize("name", ["floor", "ceil", "round", "trunc", "sign"])
def test_rounding_ops_have_zero_gradient(name):
    x = sl.tensor([-1.7, -0.2, 0.4, 2.5], dtype=sl.float64, requires_grad=True)
    y = getattr(x, name)()
    numpy.testing.assert_array_equal(y.detach().numpy(), getattr(numpy, name)(x.detach().numpy()))
    y.sum().backward()
    assert x.grad.tolist() == [0.0] * 4
    assert getattr(sl.tensor([3, -2]), name)().dtype == sl.int64


def test_round_with_decimals():
    assert sl.tensor([1.234, 5.678], dtype=sl.float64).round(decimals=1).tolist() == [1.2, 5.7]


def test_integer_inputs_to_float_math_give_default_float():
    assert sl.exp(sl.tensor([0, 1])).dtype == sl.float32


def test_math_stays_finite_for_extreme_inputs():
    big = sl.tensor([-1e4, 0.0, 1e4])
    assert sl.sigmoid(big).tolist() == [0.0, 0.5, 1.0]
    assert numpy.isfinite(sl.tanh(big).numpy()).all()


# ---- binary with broadcasting ------------------------------------------------------------
BINARY = {
    "add": (lambda a, b: a + b, numpy.add, None),
    "sub": (lambda a, b: a - b, numpy.subtract, None),
    "rsub": (lambda a, b: 1.5 - b + a, lambda a, b: 1.5 - b + a, None),
    "mul": (lambda a, b: a * b, numpy.multiply, None),
    "div": (lambda a, b: a / b, numpy.divide, "nonzero"),
    "pow": (lambda a, b: a**b, numpy.power, "positive"),
    "maximum": (sl.maximum, numpy.maximum, "distinct"),
    "minimum": (sl.minimum, numpy.minimum, "distinct"),
    "add_alpha": (lambda a, b: sl.add(a, b, alpha=0.5), lambda a, b: a + 0.5 * b, None),
    "sub_alpha": (lambda a, b: sl.sub(a, b, alpha=2), lambda a, b: a - 2 * b, None),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=PAIRS)
def test_binary_ops_broadcast(name, shapes):
    fn, reference, domain = BINARY[name]
    (sa, sb), _ = shapes
    a, b = values(sa, 1), values(sb, 2)
    if domain == "nonzero":
        b = away_from(b, gap=0.3)
    if domain == "positive":
        a = numpy.abs(a) + 0.3
    if domain == "distinct":
        b = b + 0.01
    check_op(fn, reference, a, b)


def test_maximum_splits_gradient_on_ties():
    a, b = leaves([1.0, 2.0], [1.0, 3.0])
    sl.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 0.0] and b.grad.tolist() == [0.5, 1.0]


def test_pow_gradient_at_zero_base():
    a, b = leaves([0.0, 2.0], [2.0, 3.0])
    (a**b).sum().backward()
    assert a.grad.tolist() == [0.0, 12.0]
    assert b.grad.tolist()[0] == 0.0


@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3))
def test_where(shapes):
    (sc, sa, sb), _ = shapes
    condition = values(sc, 3) > 0
    check_op(lambda c, a, b: sl.where(c, a, b), numpy.where, condition, values(sa, 1),
             values(sb, 2))


def test_where_with_scalars_and_method_form():
    x = sl.tensor([1.0, -2.0, 3.0])
    assert sl.where(x > 0, x, 0.0).tolist() == [1.0, 0.0, 3.0]
    assert x.where(x < 0, -1.0).tolist() == [-1.0, -2.0, -1.0]
    with pytest.raises(TypeError, match="bool tensor"):
        sl.where(x, x, x)


@given(shape=SHAPES)
def test_where_with_one_argument_is_nonzero_as_tuple(shape):
    x = numpy.random.default_rng(len(shape)).integers(-1, 2, shape)
    expected = numpy.nonzero(x.reshape(1) if x.ndim == 0 else x)
    for result in (sl.where(sl.tensor(x)), sl.tensor(x).nonzero(as_tuple=True),
                   sl.where(sl.tensor(x) != 0)):
        assert len(result) == len(expected)
        for got, want in zip(result, expected):
            assert got.dtype == sl.int64 and got.tolist() == want.tolist()
    matrix = sl.nonzero(sl.tensor(x))
    assert matrix.dtype == sl.int64 and matrix.shape == (numpy.count_nonzero(x), x.ndim)
    assert matrix.tolist() == numpy.argwhere(x).tolist()


def test_nonzero_examples_checked_against_pytorch():
    x = sl.tensor([[0, 1], [2, 0]])
    assert x.nonzero().tolist() == [[0, 1], [1, 0]]
    rows, cols = sl.where(x > 0)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    assert sl.arange(4.0).view(2, 2)[sl.where(x > 0)].tolist() == [1.0, 2.0]
    assert sl.tensor(3).nonzero().shape == (1, 0) and sl.tensor(0).nonzero().shape == (0, 0)
    assert [t.tolist() for t in sl.tensor(3).nonzero(as_tuple=True)] == [[0]]
    assert sl.nonzero(sl.tensor([0.0, float("nan")])).tolist() == [[1]]  # NaN is not zero
    with pytest.raises(TypeError, match="both 'input' and 'other', or neither"):
        sl.where(x > 0, x)


# ---- matmul and einsum -------------------------------------------------------------------
@pytest.mark.parametrize("sa, sb", [
    ((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)), ((5, 1, 2, 3), (4, 3, 2)), ((0, 3), (3, 2)), ((2, 0), (0, 2)),
])
def test_matmul_shapes_and_gradients(sa, sb):
    check_op(lambda a, b: a @ b, numpy.matmul, values(sa, 1), values(sb, 2))


@given(batch=st.integers(1, 3), n=st.integers(1, 3), k=st.integers(1, 3), m=st.integers(1, 3))
def test_matmul_drawn(batch, n, k, m):
    check_op(sl.matmul, numpy.matmul, values((batch, n, k), 1), values((k, m), 2))


@given(batch=st.integers(0, 3), n=st.integers(1, 3), k=st.integers(0, 3), m=st.integers(1, 3))
def test_bmm(batch, n, k, m):
    check_op(sl.bmm, numpy.matmul, values((batch, n, k), 1), values((batch, k, m), 2))
    check_op(lambda a, b: a.bmm(b), numpy.matmul, values((batch, n, k), 3), values((batch, k, m)))


def test_bmm_does_not_broadcast():
    with pytest.raises(RuntimeError, match=r"bmm: expected mat2 to start with \(batch, k\) = "
                       r"\(2, 4\).*got shape \(1, 4, 5\)"):
        sl.bmm(sl.ones(2, 3, 4), sl.ones(1, 4, 5))
    with pytest.raises(RuntimeError, match=r"bmm: input must be a 3-D tensor, got shape \(3, 4\)"):
        sl.bmm(sl.ones(3, 4), sl.ones(4, 5))
    with pytest.raises(RuntimeError, match="bmm: mat2 must be a 3-D tensor"):
        sl.bmm(sl.ones(2, 3, 4), sl.ones(4, 5))


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("nlhd,nshd->nhls", [(2, 3, 2, 4), (2, 5, 2, 4)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("ij->ji", [(3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("bi,bi->b", [(3, 4), (3, 4)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ij,jk", [(2, 3), (3, 4)]),
])
def test_einsum(equation, shapes):
    arrays = [values(s, i) for i, s in enumerate(shapes)]
    check_op(lambda *t: sl.einsum(equation, *t), lambda *a: numpy.einsum(equation, *a), *arrays)


@pytest.mark.parametrize("equation, shape", [("ij->ji", (2, 3)), ("ii->i", (3, 3)),
                                             ("ij->ij", (2, 3))])
def test_einsum_without_a_sum_returns_a_new_tensor(equation, shape):
    # NumPy hands back a view of the operand; writing to the result changed the input
    # behind autograd's back (found by tests/test_fuzz.py)
    x = sl.ones(shape)
    out = sl.einsum(equation, x)
    out.mul_(0)
    assert x.tolist() == numpy.ones(shape).tolist()


def test_einsum_errors():
    with pytest.raises(ValueError, match="2 operands but 1"):
        sl.einsum("ij,jk->ik", sl.ones(2, 2))
    with pytest.raises(ValueError, match="do not match"):
        sl.einsum("ijk->i", sl.ones(2, 2))
    with pytest.raises(NotImplementedError, match="repeated index"):
        sl.einsum("ii->", sl.ones(2, 2, requires_grad=True))


# ---- reductions --------------------------------------------------------------------------
def _dims(shape, data):
    if not shape:
        return None
    return data.draw(st.one_of(
        st.none(), st.integers(-len(shape), len(shape) - 1),
        st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple),
    ))


REDUCTIONS = {
    "sum": (lambda x, d, k: x.sum(d, k), lambda a, d, k: numpy.sum(a, d, keepdims=k), 0),
    "mean": (lambda x, d, k: x.mean(d, k), lambda a, d, k: numpy.mean(a, d, keepdims=k), 1),
    "prod": (lambda x, d, k: x.prod(d, k), lambda a, d, k: numpy.prod(a, d, keepdims=k), 0),
    "amax": (lambda x, d, k: x.amax(() if d is None else d, k),
             lambda a, d, k: numpy.max(a, d, keepdims=k), 1),
    "amin": (lambda x, d, k: x.amin(() if d is None else d, k),
             lambda a, d, k: numpy.min(a, d, keepdims=k), 1),
    "var": (lambda x, d, k: x.var(d, keepdim=k), lambda a, d, k: numpy.var(a, d, ddof=1,
                                                                          keepdims=k), 2),
    "var_biased": (lambda x, d, k: x.var(d, unbiased=False, keepdim=k),
                   lambda a, d, k: numpy.var(a, d, keepdims=k), 1),
    "std": (lambda x, d, k: x.std(d, keepdim=k, correction=0),
            lambda a, d, k: numpy.std(a, d, keepdims=k), 2),  # sqrt'(0) is inf at one element
    "logsumexp": (lambda x, d, k: x.logsumexp(tuple(range(x.ndim)) if d is None else d, k),
                  lambda a, d, k: numpy.log(numpy.sum(numpy.exp(a), d, keepdims=k)), 1),
    "norm2": (lambda x, d, k: x.norm(2, d, k),
              lambda a, d, k: numpy.sqrt(numpy.sum(a * a, d, keepdims=k)), 1),
    "norm1": (lambda x, d, k: x.norm(1, d, k),
              lambda a, d, k: numpy.sum(numpy.abs(a), d, keepdims=k), 1),
    "norm3": (lambda x, d, k: x.norm(3, d, k),
              lambda a, d, k: numpy.sum(numpy.abs(a) ** 3, d, keepdims=k) ** (1 / 3), 1),
    "norm_inf": (lambda x, d, k: x.norm(float("inf"), d, k),
                 lambda a, d, k: numpy.max(numpy.abs(a), d, keepdims=k), 1),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), data=st.data())
def test_reductions(name, shape, data):
    fn, reference, min_count = REDUCTIONS[name]
    dim = _dims(shape, data)
    keepdim = data.draw(st.booleans())
    reduced = shape if dim is None else [shape[d] for d in ((dim,) if isinstance(dim, int)
                                                            else dim)]
    if int(numpy.prod(reduced)) < min_count:
        return
    x = away_from(values(shape), gap=0.1)
    if name.startswith("norm") or name in ("amax", "amin"):  # distinct magnitudes
        x = numpy.sign(x) * (0.1 + numpy.arange(x.size).reshape(shape) * 0.37 % 1.9)
    check_op(lambda t: fn(t, dim, keepdim), lambda a: reference(a, dim, keepdim), x)


def test_prod_gradient_with_zeros_is_exact():
    (x,) = leaves([[2.0, 0.0, 3.0], [0.0, 0.0, 1.0]])
    x.prod(1).sum().backward()
    assert x.grad.tolist() == [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0]]
    (y,) = leaves([2.0, 0.0, 3.0])
    sl.gradcheck(lambda t: t.prod(), [y])


@pytest.mark.parametrize("shape, dim", [((0, 0), 0), ((2, 0), 1), ((0, 3), 0), ((0, 3), 1)])
def test_prod_over_empty_dims_has_a_gradient(shape, dim):
    # the backward's reshape(..., -1) could not infer a size next to a 0 (found by
    # tests/test_fuzz.py)
    x = sl.zeros(shape, dtype=sl.float64, requires_grad=True)
    y = x.prod(dim)
    assert y.tolist() == numpy.prod(numpy.zeros(shape), axis=dim).tolist()
    y.sum().backward()
    assert x.grad.shape == shape


@pytest.mark.parametrize("largest", [True, False])
@given(shape=NONEMPTY, data=st.data())
def test_max_min_along_dim_return_values_and_indices(largest, shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    keepdim = data.draw(st.booleans())
    x = numpy.random.default_rng(0).permutation(int(numpy.prod(shape))).reshape(shape) * 0.1
    reference_values = (numpy.max if largest else numpy.min)(x, dim, keepdims=keepdim)
    reference_indices = (numpy.argmax if largest else numpy.argmin)(x, dim, keepdims=keepdim)
    op = "max" if largest else "min"
    result = check_op(lambda t: getattr(t, op)(dim, keepdim).values,
                      lambda a: reference_values, x)
    (t,) = leaves(x)
    values_, indices = getattr(t, op)(dim, keepdim)
    numpy.testing.assert_array_equal(indices.numpy(), reference_indices)
    assert indices.dtype == sl.int64 and result.shape == values_.shape


def test_max_full_reduction_splits_ties_and_elementwise_form():
    (x,) = leaves([1.0, 3.0, 3.0])
    x.max().backward()
    assert x.grad.tolist() == [0.0, 0.5, 0.5]
    assert sl.max(sl.tensor([1.0, 5.0]), sl.tensor([2.0, 4.0])).tolist() == [2.0, 5.0]
    assert sl.min(sl.tensor([1.0, 5.0]), sl.tensor([2.0, 4.0])).tolist() == [1.0, 4.0]
    with pytest.raises(RuntimeError, match="numel\\(\\) == 0"):
        sl.zeros(0).max()


def test_argmax_argmin():
    x = sl.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    assert x.argmax().item() == 3
    assert x.argmax(1).tolist() == [1, 0]
    assert x.argmin(dim=1, keepdim=True).tolist() == [[0], [1]]
    assert sl.argmin(x).item() == 4


@given(shape=NONEMPTY, data=st.data())
def test_cumsum(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    check_op(lambda t: t.cumsum(dim), lambda a: numpy.cumsum(a, dim), values(shape))


def zeros_here_and_there(shape, seed):
    """Values with zeros: single ones, repeated ones along a line, and whole lines."""
    x = values(shape, seed)
    rng = numpy.random.default_rng(seed)
    x[rng.random(shape) < 0.25] = 0.0
    return x


@given(shape=NONEMPTY, data=st.data())
def test_cumprod_gradient_is_exact_with_zeros(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = zeros_here_and_there(shape, data.draw(st.integers(0, 2**16)))
    check_op(lambda t: t.cumprod(dim), lambda a: numpy.cumprod(a, dim), x)
    check_op(lambda t: sl.cumprod(t, dim), lambda a: numpy.cumprod(a, dim), values(shape))


def test_cumprod_dtypes_and_zero_dim():
    assert sl.cumprod(sl.tensor([1, 2, 3], dtype=sl.int32), 0).dtype == sl.int64
    assert sl.cumprod(sl.tensor([True, True]), 0).tolist() == [1, 1]
    assert sl.cumprod(sl.tensor([1, 2, 3]), 0, dtype=sl.float32).tolist() == [1.0, 2.0, 6.0]
    assert sl.cumprod(sl.tensor(3.0), 0).shape == () and sl.cumsum(sl.tensor(3.0), 0).shape == ()
    (x,) = leaves([2.0, 0.0, 3.0, 0.0, 5.0])
    x.cumprod(0).sum().backward()
    assert x.grad.tolist() == [1.0, 2 + 6.0, 0.0, 0.0, 0.0]  # d/dx1 = 2 + 2*3 (2*3*0*5 is 0)
    with pytest.raises(IndexError, match="cumprod: Dimension out of range"):
        sl.cumprod(sl.ones(2), 1)


def test_reduction_dtypes_and_errors():
    ints = sl.tensor([1, 2, 3], dtype=sl.int32)
    assert ints.sum().dtype == sl.int64 and ints.sum().item() == 6
    assert sl.tensor([True, True]).sum().item() == 2
    assert ints.mean(dtype=sl.float64).item() == 2.0
    assert ints.cumsum(0).dtype == sl.int64
    with pytest.raises(RuntimeError, match="could not infer output dtype"):
        ints.mean()
    assert sl.ones(2, 3).sum(axis=1).tolist() == [3.0, 3.0]
    assert sl.ones(2, 3).sum([0, 1]).item() == 6
    with pytest.raises(RuntimeError, match="multiple times"):
        sl.ones(2, 3).sum((1, 1))
    assert sl.tensor([[1, 0], [1, 1]]).all(1).tolist() == [False, True]
    assert sl.tensor([[1, 0], [0, 0]]).any(1).tolist() == [True, False]
    assert sl.tensor([1, 1]).all().item() is True
    with pytest.raises(ValueError, match="positive number"):
        sl.ones(2).norm(-1)
    with pytest.raises(ValueError, match="either 'unbiased' or 'correction'"):
        sl.ones(3).var(unbiased=True, correction=1)


def test_sum_of_empty_and_mean_of_empty():
    assert sl.zeros(0, 3).sum().item() == 0.0
    assert sl.zeros(0, 3).sum(0).tolist() == [0.0, 0.0, 0.0]


def test_logsumexp_is_stable():
    x = sl.tensor([1e4, 1e4], dtype=sl.float64)
    assert x.logsumexp(0).item() == pytest.approx(1e4 + numpy.log(2))
    assert sl.tensor([-numpy.inf, -numpy.inf]).logsumexp(0).item() == -numpy.inf


def test_norm_gradient_at_zero_is_zero():
    x = sl.zeros(3, dtype=sl.float64, requires_grad=True)
    x.norm().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


# ---- shape ops ---------------------------------------------------------------------------
def test_reshape_family():
    x = values((2, 3, 4))
    check_op(lambda t: t.reshape(4, -1), lambda a: a.reshape(4, -1), x)
    check_op(lambda t: t.view(6, 4), lambda a: a.reshape(6, 4), x)
    check_op(lambda t: t.view((-1,)), lambda a: a.reshape(-1), x)
    check_op(lambda t: t.flatten(), lambda a: a.reshape(-1), x)
    check_op(lambda t: t.flatten(1), lambda a: a.reshape(2, 12), x)
    check_op(lambda t: t.flatten(0, 1), lambda a: a.reshape(6, 4), x)
    check_op(lambda t: t.unflatten(2, (2, -1)), lambda a: a.reshape(2, 3, 2, 2), x)
    check_op(lambda t: t.unsqueeze(1), lambda a: a[:, None], x)
    check_op(lambda t: t.unsqueeze(-1), lambda a: a[..., None], x)
    check_op(lambda t: t.reshape_as(sl.zeros(12, 2)), lambda a: a.reshape(12, 2), x)
    y = values((2, 1, 3, 1))
    check_op(lambda t: t.squeeze(), lambda a: a.reshape(2, 3), y)
    check_op(lambda t: t.squeeze(1), lambda a: a.reshape(2, 3, 1), y)
    check_op(lambda t: t.squeeze(0), lambda a: a, y)  # not size 1: left alone
    check_op(lambda t: t.squeeze((1, 3)), lambda a: a.reshape(2, 3), y)
    assert sl.tensor(3.0).flatten().shape == (1,)


def test_reshape_errors():
    x = sl.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"shape '\[4\]' is invalid for input of size 6"):
        x.view(4)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.view(-1, -1)
    with pytest.raises(RuntimeError, match="use .reshape"):
        x.t().view(6)
    assert x.t().reshape(6).shape == (6,)
    with pytest.raises(RuntimeError, match="start_dim cannot come after end_dim"):
        sl.ones(2, 3, 4).flatten(2, 1)


def test_views_share_memory():
    x = sl.zeros(2, 3)
    x.view(6)[0] = 1
    x.t()[2, 1] = 2
    x[1][0] = 3
    assert x.tolist() == [[1, 0, 0], [3, 0, 2]]


def test_permute_transpose_and_friends():
    x = values((2, 3, 4))
    check_op(lambda t: t.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), x)
    check_op(lambda t: t.permute((1, 2, 0)), lambda a: a.transpose(1, 2, 0), x)
    check_op(lambda t: t.transpose(0, 2), lambda a: a.swapaxes(0, 2), x)
    check_op(lambda t: t.mT, lambda a: a.swapaxes(-1, -2), x)
    check_op(lambda t: t.T, lambda a: a.transpose(2, 1, 0), x)
    check_op(lambda t: t.movedim(0, -1), lambda a: numpy.moveaxis(a, 0, -1), x)
    check_op(lambda t: t.movedim((0, 1), (2, 0)), lambda a: numpy.moveaxis(a, (0, 1), (2, 0)), x)
    check_op(lambda t: t[0].t(), lambda a: a[0].T, x)
    with pytest.raises(RuntimeError, match="not a permutation"):
        sl.ones(2, 3).permute(0, 0)
    with pytest.raises(RuntimeError, match="<= 2 dimensions"):
        sl.ones(2, 3, 4).t()


def test_expand_and_repeat():
    x = values((3, 1))
    check_op(lambda t: t.expand(2, 3, 4), lambda a: numpy.broadcast_to(a, (2, 3, 4)), x)
    check_op(lambda t: t.expand(-1, 5), lambda a: numpy.broadcast_to(a, (3, 5)), x)
    check_op(lambda t: t.expand_as(sl.zeros(3, 2)), lambda a: numpy.broadcast_to(a, (3, 2)), x)
    check_op(lambda t: t.repeat(2, 3), lambda a: numpy.tile(a, (2, 3)), x)
    check_op(lambda t: t.repeat(2, 1, 2), lambda a: numpy.tile(a, (2, 1, 2)), x)
    with pytest.raises(RuntimeError, match="must match the existing size"):
        sl.ones(3, 2).expand(3, 4)
    with pytest.raises(RuntimeError, match="can not be smaller"):
        sl.ones(3, 2).repeat(2)


@given(shape=NONEMPTY, count=st.integers(1, 3), data=st.data())
def test_cat_and_stack(shape, count, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    arrays = [values(shape, i) for i in range(count)]
    check_op(lambda *t: sl.cat(t, dim), lambda *a: numpy.concatenate(a, dim), *arrays)
    stack_dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check_op(lambda *t: sl.stack(t, stack_dim), lambda *a: numpy.stack(a, stack_dim), *arrays)


def test_cat_stack_errors():
    with pytest.raises(RuntimeError, match="sizes of tensors must match"):
        sl.cat([sl.ones(2, 3), sl.ones(2, 4)], 0)
    with pytest.raises(RuntimeError, match="equal size"):
        sl.stack([sl.ones(2), sl.ones(3)])
    with pytest.raises(RuntimeError, match="non-empty"):
        sl.cat([])
    with pytest.raises(TypeError, match="item 1"):
        sl.cat([sl.ones(1), [1.0]])


@given(size=st.integers(1, 7), piece=st.integers(1, 4))
def test_split_chunk_unbind(size, piece):
    x = values((size, 2))
    bounds = list(range(piece, size, piece))
    check_op(lambda t: t.split(piece), lambda a: numpy.split(a, bounds), x)
    chunk_size = -(-size // piece)
    chunk_bounds = list(range(chunk_size, size, chunk_size))
    check_op(lambda t: t.chunk(piece), lambda a: numpy.split(a, chunk_bounds), x)
    check_op(lambda t: t.unbind(0), lambda a: list(a), x)
    check_op(lambda t: t.split([1, size - 1]), lambda a: numpy.split(a, [1]), x)


def test_split_keywords_are_torchs():
    # Tensor.split(split_size, dim), torch.split(tensor, split_size_or_sections, dim) (found by
    # tests/compare_torch.py)
    x = sl.arange(5)
    assert [p.tolist() for p in x.split(split_size=2, dim=0)] == [[0, 1], [2, 3], [4]]
    assert [p.tolist() for p in sl.split(x, split_size_or_sections=[1, 4])] == [[0], [1, 2, 3, 4]]


def test_split_and_chunk_of_an_empty_dim():
    # PyTorch: chunk gives `chunks` empty pieces, split one (chunk gave one: found by
    # tests/test_fuzz.py)
    x = sl.zeros(0, 2)
    assert [p.shape for p in x.chunk(3)] == [(0, 2)] * 3
    assert [p.shape for p in x.split(2)] == [(0, 2)]
    assert [p.shape for p in x.chunk(2, dim=1)] == [(0, 1)] * 2


def test_split_gradients_with_unused_pieces():
    (x,) = leaves(values((5,)))
    first, _, last = x.split(2)
    (first.sum() + 3 * last.sum()).backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0, 3.0]
    with pytest.raises(RuntimeError, match="sum exactly to 5"):
        x.split([2, 2])


def test_flip_and_roll():
    x = values((3, 4))
    check_op(lambda t: t.flip(0), lambda a: a[::-1], x)
    check_op(lambda t: t.flip(0, 1), lambda a: a[::-1, ::-1], x)
    check_op(lambda t: t.roll(1, 1), lambda a: numpy.roll(a, 1, 1), x)
    check_op(lambda t: t.roll((1, -2), (0, 1)), lambda a: numpy.roll(a, (1, -2), (0, 1)), x)
    check_op(lambda t: t.roll(5), lambda a: numpy.roll(a, 5), x)


def test_flip_returns_a_new_contiguous_tensor():
    x = sl.arange(6).view(2, 3)
    flipped = x.flip(0)
    assert flipped.is_contiguous()
    assert flipped.view(-1).tolist() == [3, 4, 5, 0, 1, 2]  # PyTorch: flip copies
    flipped[0, 0] = 9  # its own memory: the input is untouched
    assert x.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_tril_triu():
    x = values((2, 4, 4))
    check_op(lambda t: t.tril(), numpy.tril, x)
    check_op(lambda t: t.triu(1), lambda a: numpy.triu(a, 1), x)
    check_op(lambda t: sl.tril(t, -1), lambda a: numpy.tril(a, -1), x)
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        sl.ones(3).tril()


# ---- indexing ----------------------------------------------------------------------------
@pytest.mark.parametrize("index", [
    0, -1, (1, 2), slice(1, 3), (slice(None), 1), (Ellipsis, 0), (None, 0), (slice(None, None, 2),),
    [0, 0, 2], ([0, 1], [2, 2]), (slice(None), [3, 1, 3]), numpy.array([[0, 1], [1, 1]]),
])
def test_getitem_basic_and_advanced(index):
    x = values((3, 4))
    check_op(lambda t: t[index], lambda a: a[index], x)


def test_getitem_with_tensor_indices_and_masks():
    x = values((3, 4))
    rows = sl.tensor([2, 0, 2])
    check_op(lambda t: t[rows], lambda a: a[[2, 0, 2]], x)
    mask = x > 0
    check_op(lambda t: t[sl.tensor(mask)], lambda a: a[mask], x)
    check_op(lambda t: t[t.detach() > 0], lambda a: a[mask], x)


def test_setitem_values_broadcast_and_errors():
    x = sl.zeros(2, 3)
    x[0] = 1
    x[:, 2] = sl.tensor([5.0, 6.0])
    x[x > 5.5] = -1
    assert x.tolist() == [[1, 1, 5], [0, 0, -1]]
    with pytest.raises(ValueError, match="__setitem__.*tensor shape"):
        x[0] = sl.ones(4)


def test_setitem_gradcheck():
    def fn(a, v):
        out = a * 1
        out[1:, [0, 2]] = v
        return out

    check_op(fn, lambda a, v: _set(a, v), values((3, 3)), values((2, 1), 5))


def _set(a, v):
    out = a.copy()
    out[1:, [0, 2]] = v
    return out


def test_gather_and_index_select():
    x = values((3, 4))
    index = numpy.array([[0, 0], [3, 1], [2, 2]])
    check_op(lambda t: t.gather(1, sl.tensor(index)),
             lambda a: numpy.take_along_axis(a, index, 1), x)
    rows = numpy.array([2, 0, 2])
    check_op(lambda t: t.index_select(0, sl.tensor(rows)), lambda a: a[rows], x)
    check_op(lambda t: sl.index_select(t, 1, sl.tensor([3])), lambda a: a[:, [3]], x)
    with pytest.raises(TypeError, match="integer tensor"):
        sl.ones(2).gather(0, sl.ones(2))
    with pytest.raises(IndexError, match="out of range"):
        sl.ones(2).index_select(0, sl.tensor([2]))


@given(shape=SHAPES, data=st.data())
def test_repeat_interleave(shape, data):
    dim = data.draw(st.one_of(st.none(), st.integers(-max(len(shape), 1), max(len(shape), 1) - 1)))
    size = int(numpy.prod(shape)) if dim is None or not shape else shape[dim]
    repeats = data.draw(st.one_of(
        st.integers(0, 3), st.lists(st.integers(0, 3), min_size=size, max_size=size)
        .map(lambda counts: sl.tensor(counts, dtype=sl.int64))))
    counts = repeats.numpy() if isinstance(repeats, sl.Tensor) else repeats
    axis = None if not shape else dim
    check_op(lambda t: sl.repeat_interleave(t, repeats, dim),
             lambda a: numpy.repeat(a, counts, axis=axis), values(shape))


def test_repeat_interleave_examples_checked_against_pytorch():
    x = sl.tensor([[1, 2], [3, 4]])
    assert x.repeat_interleave(2).tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    assert sl.repeat_interleave(x, sl.tensor([1, 2]), dim=0).tolist() == [[1, 2], [3, 4], [3, 4]]
    assert sl.repeat_interleave(x, sl.tensor([2]), dim=1).tolist() == [[1, 1, 2, 2], [3, 3, 4, 4]]
    assert sl.repeat_interleave(x, sl.tensor(2), dim=1, output_size=4).shape == (2, 4)
    assert sl.repeat_interleave(sl.tensor([1, 2, 0])).tolist() == [0, 1, 1]
    assert sl.repeat_interleave(sl.tensor([1, 2], dtype=sl.int32)).dtype == sl.int32
    assert sl.repeat_interleave(sl.tensor(3.0), 2).tolist() == [3.0, 3.0]


@pytest.mark.parametrize("call, error, message", [
    (lambda x: sl.repeat_interleave(x, sl.tensor([1, 2])), RuntimeError,
     r"repeats must have one count per entry along dim \(4\), got 2"),
    (lambda x: x.repeat_interleave(sl.tensor([1, -2]), dim=0), RuntimeError,
     "repeats can not be negative, got -2"),
    (lambda x: x.repeat_interleave(-1, dim=0), RuntimeError, "can not be negative"),
    (lambda x: x.repeat_interleave(sl.tensor([1.0, 2.0]), dim=0), TypeError,
     "repeats must be an int or an integer tensor, got float32"),
    (lambda x: x.repeat_interleave(2.0), TypeError, "got float"),
    (lambda x: x.repeat_interleave(sl.tensor([[1, 2]]), dim=0), RuntimeError,
     r"0-d or 1-D tensor .*got shape \(1, 2\)"),
    (lambda x: x.repeat_interleave(2, dim=0, output_size=5), RuntimeError,
     "output_size=5 but the repeats add up to 4"),
    (lambda x: sl.repeat_interleave(x.float()), TypeError, "integer tensor, got float32"),
])
def test_repeat_interleave_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(sl.tensor([[1, 2], [3, 4]]))


def test_masked_fill():
    x = values((3, 4))
    mask = x > 0.5
    check_op(lambda t: t.masked_fill(sl.tensor(mask), -7.0),
             lambda a: numpy.where(mask, -7.0, a), x)
    row_mask = numpy.array([True, False, True, False])
    check_op(lambda t: t.masked_fill(sl.tensor(row_mask), float("-inf")).exp(),
             lambda a: numpy.exp(numpy.where(row_mask, -numpy.inf, a)), x)
    with pytest.raises(TypeError, match="bool tensor"):
        sl.ones(2).masked_fill(sl.ones(2), 0)
    with pytest.raises(RuntimeError, match="does not broadcast"):
        sl.ones(2).masked_fill(sl.ones(3, 2, dtype=sl.bool), 0)
    v = sl.tensor(2.0, dtype=sl.float64, requires_grad=True)
    (t,) = leaves(x)
    t.masked_fill(sl.tensor(mask), v).sum().backward()
    assert v.grad.item() == mask.sum()


@pytest.mark.parametrize("op", ["add", "sub"])
def test_alpha_scales_a_number_too(op):
    # x.add(2, alpha=2) multiplied two numbers through mul and raised (found by tests/test_fuzz.py)
    (x,) = leaves(numpy.array([1.0, 2.0]))
    sign = 1 if op == "add" else -1
    assert getattr(x, op)(2, alpha=3).tolist() == [1.0 + sign * 6, 2.0 + sign * 6]
    y = x * 1
    getattr(y, op + "_")(2, alpha=3)  # under autograd: the out-of-place op
    assert y.tolist() == [1.0 + sign * 6, 2.0 + sign * 6]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


# ---- in-place, conversion ----------------------------------------------------------------
def test_in_place_ops_without_autograd():
    x = sl.ones(3)
    x.add_(2).mul_(3).sub_(1, alpha=2).div_(2)
    assert x.tolist() == [3.5, 3.5, 3.5]
    x.pow_(2)
    assert x.tolist() == [12.25] * 3
    x.zero_()
    assert x.tolist() == [0, 0, 0]
    x.fill_(4)
    x.clamp_(max=3)
    assert x.tolist() == [3, 3, 3]
    x.masked_fill_(sl.tensor([True, False, False]), 0)
    x.copy_(sl.tensor([1, 2, 3]))
    assert x.tolist() == [1.0, 2.0, 3.0]
    x += 1
    x *= 2
    x -= 1
    x /= 3
    assert x.tolist() == pytest.approx([1.0, 5 / 3, 7 / 3])
    assert x._version[0] > 5
    with pytest.raises(RuntimeError, match="can't be cast"):
        sl.ones(2, dtype=sl.int64).add_(0.5)
    with pytest.raises(RuntimeError, match="copy_.*broadcast"):
        sl.ones(2).copy_(sl.ones(3))


def test_in_place_ops_under_autograd_match_out_of_place():
    def in_place(a, b):
        y = a * 1
        y.add_(b).mul_(b).sub_(a).div_(2)
        y.exp_()
        y.clamp_(max=50.0)
        return y

    def out_of_place(a, b):
        return ((((a + b) * b - a) / 2).exp()).clamp(max=50.0)

    a, b = values((3,), 1), values((3,), 2)
    check_op(in_place, lambda x, y: out_of_place(*leaves(x, y)).detach().numpy(), a, b)


def test_copy_and_fill_under_autograd():
    src = sl.tensor([1.0, 2.0], dtype=sl.float64, requires_grad=True)
    y = sl.zeros(2, dtype=sl.float64, requires_grad=True) * 1
    y.copy_(src * 2)
    y.sum().backward()
    assert src.grad.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("overwrite", [
    lambda y: y.copy_(sl.ones(3)), lambda y: y.fill_(2.0), lambda y: y.zero_(),
    lambda y: y.copy_(sl.ones(1, dtype=sl.float64)),
])
def test_copy_and_fill_keep_the_history_with_a_zero_gradient(overwrite):
    x = sl.ones(3, requires_grad=True)
    y = x * 2
    overwrite(y)
    assert y.requires_grad and y.grad_fn is not None  # as PyTorch's CopyBackwards/FillBackward
    (y * 3).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]
    value = sl.tensor(2.0, requires_grad=True)
    (x * 1).fill_(value).sum().backward()
    assert value.grad.item() == 3.0
    with pytest.raises(RuntimeError, match=r"copy_: source of shape \(2,\) can't be broadcast"):
        (x * 1).copy_(sl.ones(2))


def test_clone_and_cast_are_differentiable():
    x = values((2, 2))
    check_op(lambda t: t.clone() * 2, lambda a: a * 2, x)
    (t,) = leaves(x)
    t.float().sum().backward()
    assert t.grad.dtype == sl.float64 and t.grad.tolist() == [[1.0, 1.0], [1.0, 1.0]]
