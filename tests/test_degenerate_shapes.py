"""0-d tensors given a dim, dims of size 0, einsum's broadcast batch dims, argmax of a vector and
negative padding past the edge, with PyTorch's results (NumPy or hand-computed references)."""

from __future__ import annotations

import math
import warnings

import numpy
import pytest
from helpers import leaves

import seqlib as sl
import seqlib.nn.functional as F

INF = math.inf


# ---- 0-d tensors: dim 0 or -1 names the tensor itself ---------------------------------------
# (op, value of op at x = -1.5, its derivative there)
ZERO_D = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), -1.5, 1.0),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), -1.5, 1.0),
    "prod": (lambda x, d, k: x.prod(d, keepdim=k), -1.5, 1.0),
    "amax": (lambda x, d, k: x.amax(d, keepdim=k), -1.5, 1.0),
    "amin": (lambda x, d, k: x.amin(d, keepdim=k), -1.5, 1.0),
    "logsumexp": (lambda x, d, k: x.logsumexp(d, keepdim=k), -1.5, 1.0),
    "norm": (lambda x, d, k: x.norm(dim=d, keepdim=k), 1.5, -1.0),
    "norm3": (lambda x, d, k: x.norm(p=3, dim=d, keepdim=k), 1.5, -1.0),
    "norm_inf": (lambda x, d, k: x.norm(p=math.inf, dim=d, keepdim=k), 1.5, -1.0),
    "var": (lambda x, d, k: x.var(d, keepdim=k, correction=0), 0.0, 0.0),
    "std": (lambda x, d, k: x.std(d, keepdim=k, correction=0), 0.0, 0.0),
    "max": (lambda x, d, k: x.max(d, keepdim=k).values, -1.5, 1.0),
    "min": (lambda x, d, k: sl.min(x, d, keepdim=k)[0], -1.5, 1.0),
    "cumsum": (lambda x, d, k: x.cumsum(d), -1.5, 1.0),
    "flip": (lambda x, d, k: x.flip(d), -1.5, 1.0),
    "softmax": (lambda x, d, k: x.softmax(d), 1.0, 0.0),
}


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("name", ZERO_D)
def test_zero_d_tensor_with_a_dim(name, dim, keepdim):
    op, value, slope = ZERO_D[name]
    x = sl.tensor(-1.5, dtype=sl.float64, requires_grad=True)
    out = op(x, dim, keepdim)
    assert out.shape == () and out.item() == value
    out.backward()
    assert x.grad.item() == slope


def test_zero_d_tensor_with_a_dim_more():
    x = sl.tensor(1.5, dtype=sl.float64)
    values, indices = x.max(0)
    assert indices.shape == () and indices.item() == 0 and indices.dtype == sl.int64
    assert math.isnan(x.var(0).item())  # one element, correction 1: 0/0, as PyTorch
    for op in (x.argmax, x.argmin):
        assert op(0).shape == () and op(0, keepdim=True).shape == () and op(-1).item() == 0
    assert sl.tensor(True).all(0).item() is True and sl.tensor(0).any(-1, True).shape == ()
    assert x.sum((0,)).item() == 1.5
    for op in (lambda: x.sum(1), lambda: x.max(1), lambda: x.flip(-2), lambda: x.argmax(1)):
        with pytest.raises(IndexError, match=r"range of \[-1, 0\]"):
            op()
    with pytest.raises(RuntimeError, match="multiple times"):
        x.sum((0, -1))


# ---- dims of size 0 ------------------------------------------------------------------------
def empty(*shape):
    return sl.zeros(*shape, dtype=sl.float64, requires_grad=True)


def test_logsumexp_over_an_empty_dim_is_minus_infinity():
    x = empty(2, 0)
    out = x.logsumexp(1)
    assert out.tolist() == [-INF, -INF]  # log of an empty sum
    out.sum().backward()
    assert x.grad.shape == (2, 0)
    assert x.logsumexp(0).shape == (0,) and x.logsumexp((0, 1)).item() == -INF
    assert x.logsumexp(1, keepdim=True).shape == (2, 1)


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_along_a_nonempty_dim_of_an_empty_tensor(op):
    x = empty(2, 0)
    values, indices = getattr(x, op)(dim=0)
    assert values.shape == (0,) and indices.shape == (0,) and indices.dtype == sl.int64
    assert getattr(x, op)(0, keepdim=True).values.shape == (1, 0)
    values.sum().backward()
    assert x.grad.shape == (2, 0)
    for reduce in ("amax", "amin", "argmax", "argmin"):
        assert getattr(x, reduce)(0).shape == (0,)


@pytest.mark.parametrize("op, error", [
    (lambda x: x.max(1), IndexError), (lambda x: x.min(-1), IndexError),
    (lambda x: x.amax(1), IndexError), (lambda x: x.amin((0, 1)), IndexError),
    (lambda x: x.argmax(1), IndexError), (lambda x: x.argmin(), IndexError),
    (lambda x: x.max(), RuntimeError), (lambda x: x.amax(), RuntimeError),
    (lambda x: x.norm(p=math.inf, dim=1), RuntimeError),
    (lambda x: x.norm(p=math.inf), RuntimeError),
])
def test_max_of_no_elements_raises_as_pytorch(op, error):
    with pytest.raises(error, match="non-zero size|numel\\(\\) == 0|inf norm"):
        op(empty(2, 0))


def test_sums_over_empty_dims():
    x = empty(2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the empty mean's backward divides nothing by 0
        x.mean(1).sum().backward()
    assert x.grad.shape == (2, 0)
    assert x.norm(dim=1).tolist() == [0.0, 0.0] and x.norm(p=3, dim=1).tolist() == [0.0, 0.0]
    assert x.norm(p=math.inf, dim=0).shape == (0,)
    assert x.prod(1).tolist() == [1.0, 1.0] and x.sum(1).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("shape_a, shape_b, shape_out", [
    ((2, 3, 0), (0, 4), (2, 3, 4)),  # the weight-like branch, k = 0
    ((2, 3, 0), (0,), (2, 3)),
    ((3, 0), (0, 4), (3, 4)),
    ((2, 0, 3), (3, 4), (2, 0, 4)),
    ((2, 3, 4), (4, 0), (2, 3, 0)),  # m = 0
    ((0,), (2, 0, 4), (2, 4)),
    ((0, 2, 3), (1, 3, 4), (0, 2, 4)),
])
def test_matmul_backward_with_empty_dims(shape_a, shape_b, shape_out):
    a, b = empty(*shape_a), empty(*shape_b)
    out = a @ b
    assert out.shape == shape_out and not out.detach().numpy().any()
    (out * 2).sum().backward()
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    assert not a.grad.numpy().any() and not b.grad.numpy().any()  # sums over k = 0 terms


def test_mse_loss_of_empty_tensors():
    x = empty(0)
    loss = F.mse_loss(x, sl.zeros(0, dtype=sl.float64))
    assert math.isnan(loss.item())  # the mean of nothing
    loss.backward()
    assert x.grad.shape == (0,)
    assert F.mse_loss(x, sl.zeros(0, dtype=sl.float64), reduction="sum").item() == 0.0
    assert F.mse_loss(x, sl.zeros(0, dtype=sl.float64), reduction="none").shape == (0,)


# ---- einsum: "..." batch dims that broadcast ------------------------------------------------
@pytest.mark.parametrize("equation, shape_a, shape_b, reference", [
    ("...ij,...jk->...ik", (1, 2, 3), (4, 3, 2), numpy.matmul),
    ("...ij,...jk->...ik", (2, 3), (4, 3, 2), numpy.matmul),
    ("...ij,...jk->...ik", (4, 1, 2, 3), (1, 5, 3, 2), numpy.matmul),
    ("...ij,...jk->ik", (1, 2, 3), (4, 3, 2), lambda a, b: (a @ b).sum(0)),
    ("bij,bjk->bik", (1, 2, 3), (4, 3, 2), numpy.matmul),
    ("...ij,...j->...i", (3, 1, 2, 4), (5, 4), lambda a, b: (a @ b[..., None])[..., 0]),
])
def test_einsum_gradient_sums_over_broadcast_dims(equation, shape_a, shape_b, reference):
    rng = numpy.random.default_rng(0)
    a_np, b_np = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    a, b = leaves(a_np, b_np)
    out = sl.einsum(equation, a, b)
    numpy.testing.assert_allclose(out.detach().numpy(), reference(a_np, b_np), rtol=1e-12)
    out.sum().backward()
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    sl.gradcheck(lambda a, b: sl.einsum(equation, a, b), (a, b))


def test_einsum_broadcast_gradient_by_hand():
    a = sl.ones(1, 2, 3, dtype=sl.float64, requires_grad=True)
    b = sl.arange(24, dtype=sl.float64).reshape(4, 3, 2).requires_grad_()
    sl.einsum("...ij,...jk->...ik", a, b).sum().backward()
    # d/da[0, i, j] = sum over the 4 batches and k of b[n, j, k]
    expected_a = numpy.arange(24.0).reshape(4, 3, 2).sum(axis=(0, 2))
    numpy.testing.assert_array_equal(a.grad.numpy(), numpy.broadcast_to(expected_a, (1, 2, 3)))
    # d/db[n, j, k] = sum over i of a[0, i, j] = 2
    numpy.testing.assert_array_equal(b.grad.numpy(), numpy.full((4, 3, 2), 2.0))


# ---- argmax / argmin results are tensors that print and convert ------------------------------
@pytest.mark.parametrize("kwargs, shape", [
    ({}, ()), ({"dim": 0}, ()), ({"dim": -1}, ()), ({"dim": 0, "keepdim": True}, (1,)),
    ({"keepdim": True}, (1,)),
])
def test_argmax_of_a_vector(kwargs, shape):
    for op, index in (("argmax", 1), ("argmin", 0)):
        out = getattr(sl.tensor([1.0, 3.0, 2.0]), op)(**kwargs)
        assert out.shape == shape and out.dtype == sl.int64
        array = out.numpy()
        assert isinstance(array, numpy.ndarray) and array.tolist() == numpy.full(shape,
                                                                                 index).tolist()
        assert repr(out) == (f"tensor({index})" if shape == () else f"tensor([{index}])")


def test_argmax_without_dim_keepdim_keeps_every_dim():
    x = sl.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    assert x.argmax(keepdim=True).shape == (1, 1) and x.argmax(keepdim=True).item() == 3
    assert x.argmin().item() == 4 and x.argmax(1).tolist() == [1, 0]


# ---- pad: negative widths crop, at most the whole dim ---------------------------------------
@pytest.mark.parametrize("shape, widths", [
    ((1,), (-1, -1)), ((1,), (-2, 0)), ((1,), (-2, 1)), ((1,), (1, -2)),
    ((2, 1), (-1, -1)), ((3, 1), (0, 0, -2, -2)),
])
def test_pad_cropping_past_the_edge_raises(shape, widths):
    with pytest.raises(RuntimeError, match="negative padding .* would crop"):
        F.pad(sl.ones(*shape), widths)


def test_pad_cropping_up_to_the_edge():
    assert F.pad(sl.ones(1), (-1, 0)).shape == (0,)
    assert F.pad(sl.ones(3), (-2, -1)).shape == (0,)
    assert F.pad(sl.ones(1), (-1, 2)).tolist() == [0.0, 0.0]  # crop, then pad
    assert F.pad(sl.arange(4.0), (-1, 1), value=9.0).tolist() == [1.0, 2.0, 3.0, 9.0]
    x = empty(2, 3)
    F.pad(x, (-1, -1, 1, 0)).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
