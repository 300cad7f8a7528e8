"""einops accepts seqlib tensors and gradients flow through it."""

from __future__ import annotations

import einops
import numpy
import pytest

import seqlib as sl


def test_rearrange_with_backward():
    x = sl.randn(2, 3, 4, dtype=sl.float64, requires_grad=True)
    y = einops.rearrange(x, "n l (h d) -> n h l d", h=2)
    numpy.testing.assert_array_equal(
        y.detach().numpy(), x.detach().numpy().reshape(2, 3, 2, 2).transpose(0, 2, 1, 3))
    sl.gradcheck(lambda t: einops.rearrange(t, "n l (h d) -> (n h) d l", h=2), [x])


@pytest.mark.parametrize("operation", ["sum", "mean", "max", "min", "prod"])
def test_reduce(operation):
    x = sl.randn(2, 3, 4, dtype=sl.float64, requires_grad=True)
    y = einops.reduce(x, "a b c -> a c", operation)
    expected = getattr(numpy, operation)(x.detach().numpy(), axis=1)
    numpy.testing.assert_allclose(y.detach().numpy(), expected)
    sl.gradcheck(lambda t: einops.reduce(t, "a b c -> a c", operation), [x])


def test_repeat_pack_unpack_and_einsum():
    x = sl.randn(2, 3, dtype=sl.float64, requires_grad=True)
    repeated = einops.repeat(x, "a b -> a r b", r=4)
    assert repeated.shape == (2, 4, 3)
    sl.gradcheck(lambda t: einops.repeat(t, "a b -> a r b", r=4), [x])
    packed, shapes = einops.pack([x, sl.ones(2, dtype=sl.float64)], "a *")
    assert packed.shape == (2, 4)
    first, second = einops.unpack(packed, shapes, "a *")
    assert first.shape == (2, 3) and second.shape == (2,)
    w = sl.randn(3, 5, dtype=sl.float64, requires_grad=True)
    product = einops.einsum(x, w, "a b, b c -> a c")
    numpy.testing.assert_allclose(product.detach().numpy(), x.detach().numpy() @ w.detach().numpy())
    sl.gradcheck(lambda a, b: einops.einsum(a, b, "a b, b c -> a c"), [x, w])


def test_einops_reports_bad_patterns():
    with pytest.raises(einops.EinopsError):
        einops.rearrange(sl.ones(2, 3), "a b c -> a")
