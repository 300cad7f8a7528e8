"""Type promotion against PyTorch's rules (``torch.result_type``), for every dtype pair and
every mix of dimensioned tensors, 0-d tensors and Python scalars."""

from __future__ import annotations

import itertools

import numpy
import pytest

import seqlib as sl

# PyTorch's promote_types table (c10/core/ScalarType.cpp), restricted to seqlib's dtypes.
CODES = {"u1": "uint8", "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
         "f2": "float16", "f4": "float32", "f8": "float64", "b1": "bool"}
TABLE = """
      u1  i1  i2  i4  i8  f2  f4  f8  b1
u1    u1  i2  i2  i4  i8  f2  f4  f8  u1
i1    i2  i1  i2  i4  i8  f2  f4  f8  i1
i2    i2  i2  i2  i4  i8  f2  f4  f8  i2
i4    i4  i4  i4  i4  i8  f2  f4  f8  i4
i8    i8  i8  i8  i8  i8  f2  f4  f8  i8
f2    f2  f2  f2  f2  f2  f2  f4  f8  f2
f4    f4  f4  f4  f4  f4  f4  f4  f8  f4
f8    f8  f8  f8  f8  f8  f8  f8  f8  f8
b1    u1  i1  i2  i4  i8  f2  f4  f8  b1
"""


def _promote_types_table() -> dict:
    header, *rows = [line.split() for line in TABLE.strip().splitlines()]
    return {(CODES[row[0]], CODES[col]): CODES[entry]
            for row in rows for col, entry in zip(header, row[1:])}


PROMOTE = _promote_types_table()
DTYPES = list(CODES.values())


def _category(dtype: str) -> int:
    return 0 if dtype == "bool" else 2 if dtype.startswith("float") else 1


def _combine(higher, lower):
    """PyTorch's combine_categories: ``higher`` (a more dimensioned class) wins unless
    ``lower`` is of a higher category. None means no operand of that class."""
    if higher is None:
        return lower
    if lower is None:
        return higher
    if _category(higher) == 2:
        return higher
    if higher == "bool" or _category(lower) == 2:
        return PROMOTE[(higher, lower)]
    return higher


def reference(operands) -> str:
    """``torch.result_type`` of operands given as (class, dtype): class 'dim' (a tensor with
    dimensions), '0d' (a 0-d tensor) or 'scalar' (a Python bool/int/float: bool/int64/the
    default float dtype)."""
    results = {}
    for kind, dtype in operands:
        results[kind] = dtype if kind not in results else PROMOTE[(results[kind], dtype)]
    return _combine(results.get("dim"), _combine(results.get("0d"), results.get("scalar")))


def make(kind: str, dtype: str):
    if kind == "dim":
        return sl.ones(3, dtype=getattr(sl, dtype))
    return sl.ones((), dtype=getattr(sl, dtype))


@pytest.mark.parametrize("kinds", [("dim", "dim"), ("dim", "0d"), ("0d", "dim"), ("0d", "0d")])
@pytest.mark.parametrize("left, right", list(itertools.product(DTYPES, DTYPES)))
def test_tensor_tensor_promotion(kinds, left, right):
    a, b = make(kinds[0], left), make(kinds[1], right)
    expected = reference([(kinds[0], left), (kinds[1], right)])
    for result in (a + b, a * b, sl.where(sl.ones((), dtype=sl.bool), a, b)):
        assert result.dtype == numpy.dtype(expected), (kinds, left, right)
    assert (a + b).shape == numpy.broadcast_shapes(a.shape, b.shape)
    assert (a + b).tolist() == numpy.full((a + b).shape, 2 if expected != "bool" else 1).tolist()


SCALARS = {"bool": True, "int64": 2, "float32": 2.5}


@pytest.mark.parametrize("kind", ["dim", "0d"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scalar_dtype", list(SCALARS))
def test_tensor_scalar_promotion(kind, dtype, scalar_dtype):
    tensor, scalar = make(kind, dtype), SCALARS[scalar_dtype]
    expected = reference([(kind, dtype), ("scalar", scalar_dtype)])
    assert (tensor * scalar).dtype == numpy.dtype(expected)
    assert (scalar * tensor).dtype == numpy.dtype(expected)


def test_issue_examples():
    assert (sl.ones(3) + sl.tensor(1.0, dtype=sl.float64)).dtype == sl.float32
    assert (sl.ones(3, dtype=sl.int32) + sl.tensor(1)).dtype == sl.int32
    # a higher category still wins, and in-place ops keep their dtype
    assert (sl.ones(3, dtype=sl.int32) + sl.tensor(1.5, dtype=sl.float64)).dtype == sl.float64
    x = sl.ones(3, dtype=sl.float16)
    x.add_(sl.tensor(1e-3, dtype=sl.float64))
    assert x.dtype == sl.float16


def test_gradient_through_a_promoted_0d_tensor_keeps_its_dtype():
    x = sl.ones(3, requires_grad=True)
    w = sl.tensor(2.0, dtype=sl.float64, requires_grad=True)
    (x * w).sum().backward()
    assert x.grad.dtype == sl.float32 and x.grad.tolist() == [2.0, 2.0, 2.0]
    assert w.grad.dtype == sl.float64 and w.grad.item() == 3.0
