"""Differentiable tensor ops, one family per module."""

from . import (  # noqa: F401
    arithmetic,
    compare,
    convert,
    indexing,
    inplace,
    linalg,
    pointwise,
    reduce,
    sampling,
    scatter,
    shape,
    sorting,
)
