"""Moving between dtypes and devices, and copying; all differentiable."""

from __future__ import annotations

from .. import dtypes
from ..autograd.function import Function
from ..backend import Device, device_of, move_array
from ..tensor import Tensor


class Cast(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype), None


class ToDevice(Function):
    @staticmethod
    def forward(ctx, x, device, dtype):
        ctx.source = (device_of(x), x.dtype)
        return move_array(x, device, dtype, copy=True)

    @staticmethod
    def backward(ctx, g):
        device, dtype = ctx.source
        return move_array(g, device, dtype), None, None


class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return g


def clone(input: Tensor) -> Tensor:
    """A copy with its own memory, C-contiguous; gradients flow back to ``input``."""
    return Clone.apply(input)


def to(input: Tensor, *args, dtype=None, device=None, copy: bool = False, non_blocking=None):
    """Convert to another device and/or dtype, returning ``input`` itself if nothing changes.

    Accepts ``to(device)``, ``to(dtype)``, ``to(device, dtype)`` and ``to(other_tensor)``,
    as PyTorch does.
    """
    for arg in args:
        if isinstance(arg, Tensor):
            device, dtype = arg.device, arg.dtype
        elif isinstance(arg, (str, Device)):
            device = arg
        else:
            dtype = arg
    target_dtype = dtypes.as_dtype(dtype, "to") if dtype is not None else input._array.dtype
    target_device = Device(device) if device is not None else input.device
    if target_device != input.device:
        return ToDevice.apply(input, target_device, target_dtype)
    if target_dtype != input._array.dtype:
        return Cast.apply(input, target_dtype)
    return clone(input) if copy else input
