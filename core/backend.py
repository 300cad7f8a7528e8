"""The one place that knows about CuPy: optional import, array modules and devices."""

from __future__ import annotations

import numpy

try:  # CuPy is optional; everything runs on NumPy without it.
    import cupy
except ImportError:  # pragma: no cover - depends on the machine
    cupy = None


def cuda_is_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA device."""
    return cupy is not None and bool(cupy.is_available())


def cuda_device_count() -> int:
    """Number of CUDA devices CuPy sees (0 without CuPy or a GPU)."""
    if not cuda_is_available():
        return 0
    return int(cupy.cuda.runtime.getDeviceCount())


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy`` (as Chainer does)."""
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return numpy


def is_array(obj) -> bool:
    """True for NumPy and CuPy ndarrays."""
    return isinstance(obj, numpy.ndarray) or (cupy is not None and isinstance(obj, cupy.ndarray))


class Device:
    """Where a tensor lives: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:1")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec: str | Device = "cpu", index: int | None = None):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device: expected a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, number = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:<index>', got {spec!r}")
        if number:
            if not number.isdigit():
                raise ValueError(f"device: bad device index in {spec!r}")
            index = int(number)
        if kind == "cpu" and index not in (None, 0):
            raise ValueError(f"device: the CPU has no index, got {spec!r}")
        self.type = kind
        self.index = (index or 0) if kind == "cuda" else None

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except (TypeError, ValueError):
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self) -> str:
        if self.type == "cpu":
            return "device(type='cpu')"
        return f"device(type='cuda', index={self.index})"


CPU = Device("cpu")


def device_of(array) -> Device:
    """The Device an ndarray lives on."""
    if isinstance(array, numpy.ndarray):
        return CPU
    return Device("cuda", array.device.id)


def module_for(device: Device):
    """The array module (numpy or cupy) for a device, with a clear error if CUDA is missing."""
    if device.type == "cpu":
        return numpy
    if not cuda_is_available():
        raise RuntimeError(
            f"device {device}: CUDA is not available (CuPy is "
            f"{'installed but sees no GPU' if cupy is not None else 'not installed'}; "
            "on a machine with an NVIDIA GPU, install seqlib's extra '.[gpu-cuda13]' or "
            "'.[gpu-cuda12]' for its CUDA major version)"
        )
    if device.index >= cuda_device_count():
        raise RuntimeError(
            f"device {device}: only {cuda_device_count()} CUDA device(s) are visible"
        )
    return cupy


def move_array(array, device: Device, dtype=None, copy: bool = False):
    """Return ``array`` on ``device`` (and in ``dtype``), copying only when needed or asked."""
    xp = module_for(device)
    if xp is numpy:
        if not isinstance(array, numpy.ndarray):
            array = array.get()
            copy = False
        return numpy.array(array, dtype=dtype, copy=True) if copy else numpy.asarray(array, dtype)
    with cupy.cuda.Device(device.index):
        return cupy.array(array, dtype=dtype, copy=copy or not isinstance(array, cupy.ndarray))


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` with repeated indices accumulated, on NumPy or CuPy."""
    if isinstance(target, numpy.ndarray):
        numpy.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)
