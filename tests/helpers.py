"""Test helpers: compare an op with its NumPy reference and gradcheck it in float64."""

from __future__ import annotations

import numpy

import seqlib as sl


def leaves(*arrays, requires_grad=True):
    """float64 tensors (integer arrays stay integer and never require grad)."""
    out = []
    for a in arrays:
        a = numpy.asarray(a)
        if a.dtype.kind == "f":
            out.append(sl.tensor(a.astype(numpy.float64), requires_grad=requires_grad))
        else:
            out.append(sl.tensor(a))
    return out


def check_op(fn, reference, *arrays, grad=True, atol=1e-10, gradcheck_atol=1e-6):
    """``fn`` on tensors equals ``reference`` on arrays; gradients match finite differences."""
    tensors = leaves(*arrays)
    result = fn(*tensors)
    expected = reference(*[numpy.asarray(a, dtype=numpy.float64)
                           if numpy.asarray(a).dtype.kind == "f" else numpy.asarray(a)
                           for a in arrays])
    results = result if isinstance(result, (tuple, list)) else (result,)
    expecteds = expected if isinstance(expected, (tuple, list)) else (expected,)
    for r, e in zip(results, expecteds):
        assert r.shape == numpy.shape(e), f"shape {r.shape} != reference {numpy.shape(e)}"
        numpy.testing.assert_allclose(r.detach().numpy(), e, atol=atol, rtol=1e-9)
    if grad and any(t.requires_grad for t in tensors):
        sl.gradcheck(fn, tensors, atol=gradcheck_atol, rtol=1e-4)
    return result


def away_from(values, points=(0.0,), gap=0.05):
    """Move values at least ``gap`` away from kinks, so finite differences are valid."""
    values = numpy.array(values, dtype=numpy.float64)
    for p in points:
        close = numpy.abs(values - p) < gap
        values[close] = p + gap * numpy.where(values[close] >= p, 1, -1) * 2
    return values


class _FakeGPUArray(numpy.ndarray):
    """A NumPy array that kernels._backend takes for a CuPy array on GPU 0 (see fake_gpu)."""

    class device:  # noqa: N801 - mirrors cupy.ndarray.device
        id = 0


def fake_gpu(monkeypatch):
    """Make ``kernels`` believe CuPy is present, for checking that mixed NumPy/CuPy inputs are
    refused on a machine without a GPU; returns a function that marks an array as on GPU 0."""
    import types

    from seqlib.kernels import _backend

    monkeypatch.setattr(_backend, "cupy", types.SimpleNamespace(ndarray=_FakeGPUArray))
    return lambda array: array.view(_FakeGPUArray)
