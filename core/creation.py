"""Creating tensors: from data, filled, ranges, and random."""

from __future__ import annotations

import numpy

from . import dtypes
from .backend import CPU, Device, device_of, is_array, move_array
from .ops._util import parse_size
from .random import Generator, rng
from .tensor import Tensor


def _finish(array, device, requires_grad: bool) -> Tensor:
    if device is not None:
        target = Device(device)
        if target != (CPU if isinstance(array, numpy.ndarray) else device_of(array)):
            array = move_array(array, target)
    out = Tensor._make(array)
    if requires_grad:
        out.requires_grad = True
    return out


def _infer_dtype(data, array) -> numpy.dtype:
    """PyTorch's choice for data given as Python numbers: floats -> default dtype."""
    if is_array(data) or isinstance(data, numpy.generic):
        return array.dtype
    kind = array.dtype.kind
    if kind == "f":
        return dtypes.get_default_dtype()
    if kind in "iu":
        return dtypes.int64
    if kind == "b":
        return dtypes.bool
    raise TypeError(f"tensor: could not infer a dtype for data of NumPy dtype {array.dtype}")


def _to_array(data, dtype, copy: bool):
    if isinstance(data, Tensor):
        data = data._array
    elif isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flat(data)):
        data = _nested_arrays(data)
    if is_array(data) and not isinstance(data, numpy.ndarray):  # CuPy stays on its device
        array = data.astype(dtype or data.dtype, copy=copy)
        return array
    try:
        array = numpy.array(data, copy=copy) if copy else numpy.asarray(data)
    except ValueError as error:
        raise ValueError(f"tensor: could not convert data to a tensor ({error})") from None
    if array.dtype.kind in "OUSV":
        raise TypeError(f"tensor: could not convert data of type {type(data).__name__} to a tensor")
    target = dtypes.as_dtype(dtype) if dtype is not None else _infer_dtype(data, array)
    return array.astype(target, copy=False)


def _flat(data):
    for x in data:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


def _nested_arrays(data):
    return [_nested_arrays(x) if isinstance(x, (list, tuple)) else
            (x.item() if isinstance(x, Tensor) else x) for x in data]


def tensor(data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (list, number, NumPy/CuPy array or Tensor).

    Args:
        data: a number, (nested) list, NumPy/CuPy array or Tensor.
        dtype: defaults to the data's (Python floats: the default dtype).
        device: "cpu" or "cuda[:i]".
        requires_grad: make it a leaf that records gradients.
    Returns:
        a new tensor.
    """
    return _finish(_to_array(data, dtype, copy=True), device, requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with an array or tensor when nothing changes.

    Args:
        data: as for ``tensor``.
        dtype, device: as for ``tensor``.
    Returns:
        a tensor, sharing memory when possible.
    """
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype)
    return _finish(_to_array(data, dtype, copy=False), device, False)


def from_numpy(array: numpy.ndarray) -> Tensor:
    """A CPU tensor sharing memory with a NumPy array (writes show in both).

    Args:
        array: a numpy.ndarray.
    Returns:
        a CPU tensor of the same shape.
    """
    if not isinstance(array, numpy.ndarray):
        raise TypeError(f"from_numpy: expected numpy.ndarray, got {type(array).__name__}")
    dtypes.as_dtype(array.dtype, "from_numpy")
    return Tensor._make(array)


def _module(device):
    from .backend import module_for

    return module_for(Device(device)) if device is not None else numpy


def _dtype(dtype, default=None):
    if dtype is None:
        return default if default is not None else dtypes.get_default_dtype()
    return dtypes.as_dtype(dtype)


def _filled(size, fill, dtype, device, requires_grad, op):
    shape = parse_size(size, op)
    if any(n < 0 for n in shape):
        raise RuntimeError(f"{op}: negative dimension in size {list(shape)}")
    xp = _module(device)
    if xp is numpy:
        array = numpy.full(shape, fill, dtype) if fill is not None else numpy.empty(shape, dtype)
        return _finish(array, None, requires_grad)
    with _on(device):
        array = xp.full(shape, fill, dtype) if fill is not None else xp.empty(shape, dtype)
    return _finish(array, None, requires_grad)


def _on(device):
    from .backend import cupy

    return cupy.cuda.Device(Device(device).index)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``.

    Args:
        size: ints, or one tuple/list.
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        a tensor of ``size``.
    """
    return _filled(size, 0, _dtype(dtype), device, requires_grad, "zeros")


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ones.

    Args:
        size: ints, or one tuple/list.
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        a tensor of ``size``.
    """
    return _filled(size, 1, _dtype(dtype), device, requires_grad, "ones")


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """An uninitialised tensor.

    Args:
        size: ints, or one tuple/list.
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        a tensor of ``size``.
    """
    return _filled(size, None, _dtype(dtype), device, requires_grad, "empty")


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor filled with ``fill_value`` (its dtype inferred from the value if not given).

    Args:
        size: a tuple of ints.
        fill_value: the value.
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        a tensor of ``size``.
    """
    if dtype is None:
        dtype = _infer_dtype(fill_value, numpy.asarray(fill_value))
    return _filled((size,), fill_value, _dtype(dtype), device, requires_grad, "full")


def _like(input: Tensor, dtype, device):
    return (dtype if dtype is not None else input.dtype,
            device if device is not None else input.device)


def zeros_like(input: Tensor, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Zeros shaped like ``input``.

    Args:
        input: the tensor whose shape (and dtype, device) to copy.
        dtype, device, requires_grad: overrides.
    Returns:
        a tensor shaped like ``input``.
    """
    dtype, device = _like(input, dtype, device)
    return zeros(input.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(input: Tensor, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Ones shaped like ``input``.

    Args:
        input: the tensor whose shape (and dtype, device) to copy.
        dtype, device, requires_grad: overrides.
    Returns:
        a tensor shaped like ``input``.
    """
    dtype, device = _like(input, dtype, device)
    return ones(input.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def empty_like(input: Tensor, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """An uninitialised tensor shaped like ``input``.

    Args:
        input: the tensor whose shape (and dtype, device) to copy.
        dtype, device, requires_grad: overrides.
    Returns:
        a tensor shaped like ``input``.
    """
    dtype, device = _like(input, dtype, device)
    return empty(input.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(input: Tensor, fill_value, *, dtype=None, device=None, requires_grad=False):
    """A tensor shaped like ``input`` filled with ``fill_value``.

    Args:
        input: the tensor whose shape (and dtype, device) to copy.
        fill_value: the value.
        dtype, device, requires_grad: overrides.
    Returns:
        a tensor shaped like ``input``.
    """
    dtype, device = _like(input, dtype, device)
    return full(input.shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``[start, end)`` in steps of ``step``; int64 for integer arguments, else default float.

    Args:
        start: first value (or the end, if ``end`` is None).
        end: exclusive end.
        step: nonzero step.
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        a 1-D tensor.
    """
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(
            f"arange: upper bound and larger bound inconsistent with step sign "
            f"(start={start}, end={end}, step={step})"
        )
    integral = all(isinstance(v, (int, numpy.integer)) for v in (start, end, step))
    dtype = _dtype(dtype, dtypes.int64 if integral else None)
    array = numpy.arange(start, end, step, dtype=numpy.float64 if not integral else None)
    return _finish(array.astype(dtype), device, requires_grad)


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive.

    Args:
        start, end: the first and last values.
        steps: how many values.
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        ``(steps,)``.
    """
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    array = numpy.linspace(start, end, steps).astype(_dtype(dtype))
    return _finish(array, device, requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """The ``n x m`` identity matrix.

    Args:
        n: rows.
        m: columns (default n).
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        ``(n, m)``.
    """
    return _finish(numpy.eye(n, m, dtype=_dtype(dtype)), device, requires_grad)


# ---- random ------------------------------------------------------------------------------


def _random(draw, size, dtype, device, requires_grad, op):
    shape = parse_size(size, op)
    return _finish(draw(shape).astype(dtype, copy=False), device, requires_grad)


def rand(*size, generator: Generator | None = None, dtype=None, device=None,
         requires_grad=False) -> Tensor:
    """Uniform samples from ``[0, 1)``.

    Args:
        size: ints, or one tuple/list.
        generator: a seeded Generator (default: the global one).
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        a tensor of ``size``.
    """
    dtype = _dtype(dtype)
    draw_dtype = dtype if dtype in (dtypes.float32, dtypes.float64) else numpy.float64
    return _random(lambda s: rng(generator).random(s, dtype=draw_dtype), size, dtype, device,
                   requires_grad, "rand")


def randn(*size, generator: Generator | None = None, dtype=None, device=None,
          requires_grad=False) -> Tensor:
    """Standard normal samples.

    Args:
        size: ints, or one tuple/list.
        generator: a seeded Generator (default: the global one).
        dtype, device, requires_grad: as for ``tensor``.
    Returns:
        a tensor of ``size``.
    """
    dtype = _dtype(dtype)
    draw_dtype = dtype if dtype in (dtypes.float32, dtypes.float64) else numpy.float64
    return _random(lambda s: rng(generator).standard_normal(s, dtype=draw_dtype), size, dtype,
                   device, requires_grad, "randn")


def randint(low: int, high: int | None = None, size=None, *, generator=None, dtype=None,
            device=None) -> Tensor:
    """Integers uniform in ``[low, high)``: ``randint(10, (3,))`` or ``randint(2, 10, (3,))``.

    Args:
        low: inclusive lower bound (or the upper bound, if ``high`` is None).
        high: exclusive upper bound.
        size: a tuple.
        generator, dtype, device: as for ``rand``.
    Returns:
        an int64 tensor of ``size``.
    """
    if size is None:
        if high is None or not isinstance(high, (tuple, list)):
            raise TypeError("randint: missing the 'size' argument")
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    if high <= low:
        raise RuntimeError(f"randint: expected low < high, got low={low}, high={high}")
    dtype = _dtype(dtype, dtypes.int64)
    return _random(lambda s: rng(generator).integers(low, high, s), (size,), dtype, device,
                   False, "randint")


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None):
    """Normal samples: tensors ``mean``/``std`` (elementwise) or numbers with a ``size``.

    Args:
        mean: a number or tensor.
        std: a number or tensor (non-negative).
        size: required when both are numbers.
        generator, dtype, device: as for ``rand``.
    Returns:
        samples of the broadcast shape (or ``size``).
    """
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        like = mean if isinstance(mean, Tensor) else std
        noise = randn(*numpy.broadcast_shapes(
            tuple(getattr(mean, "shape", ())), tuple(getattr(std, "shape", ()))),
            generator=generator, dtype=like.dtype, device=like.device)
        return (noise * std + mean).detach()
    if size is None:
        raise TypeError("normal: with number mean and std, 'size' is required")
    if std < 0:
        raise RuntimeError(f"normal: expected std >= 0.0, got {std}")
    return randn(*parse_size((size,), "normal"), generator=generator, dtype=dtype,
                 device=device) * std + mean


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of ``0..n-1``.

    Args:
        n: the length.
        generator, dtype, device: as for ``rand``.
    Returns:
        ``(n,)`` int64.
    """
    return _finish(rng(generator).permutation(n).astype(_dtype(dtype, dtypes.int64)), device,
                   False)


def rand_like(input: Tensor, *, generator=None, dtype=None, device=None) -> Tensor:
    """Uniform samples shaped like ``input``.

    Args:
        input: the tensor whose shape (and dtype, device) to copy.
        generator, dtype, device: as for ``rand``.
    Returns:
        a tensor shaped like ``input``.
    """
    dtype, device = _like(input, dtype, device)
    return rand(input.shape, generator=generator, dtype=dtype, device=device)


def randn_like(input: Tensor, *, generator=None, dtype=None, device=None) -> Tensor:
    """Normal samples shaped like ``input``.

    Args:
        input: the tensor whose shape (and dtype, device) to copy.
        generator, dtype, device: as for ``rand``.
    Returns:
        a tensor shaped like ``input``.
    """
    dtype, device = _like(input, dtype, device)
    return randn(input.shape, generator=generator, dtype=dtype, device=device)
