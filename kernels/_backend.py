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
