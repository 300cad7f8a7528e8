"""Nonsense gets a clear error, never a silent result or a crash deep inside NumPy."""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl


@pytest.mark.parametrize("op", ["//", "%"])
@pytest.mark.parametrize("divisor", [0, "tensor"])
def test_integer_division_by_zero_raises_as_pytorch(op, divisor):
    a = sl.tensor([5, 7])
    b = sl.tensor([0, 2]) if divisor == "tensor" else divisor
    with pytest.raises(ZeroDivisionError, match="division or modulo by zero"):
        a // b if op == "//" else a % b
    with pytest.raises(RuntimeError):  # PyTorch raises a RuntimeError: both catch it
        a // b if op == "//" else a % b
    assert (a // 2).tolist() == [2, 3] and (a % sl.tensor([2, 4])).tolist() == [1, 3]
    assert sl.div(a, 2, rounding_mode="trunc").tolist() == [2, 3]
    with numpy.errstate(divide="ignore"):  # floats divide by zero to inf, as in PyTorch
        assert (sl.tensor([1.0]) // 0).tolist() == [float("inf")]
