"""Array-module dispatch for kernels (NumPy or CuPy), without importing core or seqlib."""

from __future__ import annotations

import numpy

try:  # optional GPU support
    import cupy
except ImportError:  # pragma: no cover - depends on the machine
    cupy = None


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy``."""
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return numpy


def device_kind(*arrays) -> str:
    """The row of a kernel's dispatch table for these arrays: ``"cuda"`` if any is a CuPy
    array, else ``"cpu"``."""
    return "cpu" if get_array_module(*arrays) is numpy else "cuda"


def check_same_device(op: str, **arrays) -> None:
    """Raise a TypeError naming the culprit unless every array given (None skipped) is a NumPy
    array, or every one a CuPy array on one GPU: a kernel never mixes them silently."""
    places = {}
    for name, array in arrays.items():
        if array is None:
            continue
        if cupy is not None and isinstance(array, cupy.ndarray):
            places[name] = f"cuda:{array.device.id}"
        elif isinstance(array, numpy.ndarray):
            places[name] = "cpu"
        else:
            raise TypeError(
                f"{op}: {name} must be a NumPy or CuPy array, got {type(array).__name__}")
    if len(set(places.values())) > 1:
        where = ", ".join(f"{name} on {place}" for name, place in places.items())
        raise TypeError(f"{op}: all arrays must be on one device, got {where}")
