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


def to_arguments(args: tuple, device=None, dtype=None) -> tuple:
    """``(device, dtype)`` from the arguments of PyTorch's ``to``, shared by ``Tensor.to`` and
    ``Module.to``: ``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or ``to(other_tensor)``
    (its device and dtype) in ``args``, or ``device=`` / ``dtype=``. Returns a ``Device`` and a
    dtype, each None where not given."""
    for arg in args:
        if isinstance(arg, Tensor):
            device, dtype = arg.device, arg.dtype
        elif isinstance(arg, (str, Device)):
            device = arg
        else:
            dtype = arg
    return (None if device is None else Device(device),
            None if dtype is None else dtypes.as_dtype(dtype, "to"))


def to(input: Tensor, *args, dtype=None, device=None, copy: bool = False, non_blocking=None):
    """Convert to another device and/or dtype, returning ``input`` itself if nothing changes.

    Accepts ``to(device)``, ``to(dtype)``, ``to(device, dtype)`` and ``to(other_tensor)``,
    as PyTorch does.
    """
    device, dtype = to_arguments(args, device, dtype)
    target_dtype = input._array.dtype if dtype is None else dtype
    target_device = input.device if device is None else device
    if target_device != input.device:
        return ToDevice.apply(input, target_device, target_dtype)
    if target_dtype != input._array.dtype:
        return Cast.apply(input, target_dtype)
    return clone(input) if copy else input


# PyTorch's legacy type names, which ``Tensor.type()`` prints and parses.
_TYPE_NAMES = {
    dtypes.float32: "FloatTensor", dtypes.float64: "DoubleTensor", dtypes.float16: "HalfTensor",
    dtypes.uint8: "ByteTensor", dtypes.int8: "CharTensor", dtypes.int16: "ShortTensor",
    dtypes.int32: "IntTensor", dtypes.int64: "LongTensor", dtypes.bool: "BoolTensor",
}
_TYPES = {name: dtype for dtype, name in _TYPE_NAMES.items()}


def tensor_type(input: Tensor, dtype=None, non_blocking: bool = False):
    """``Tensor.type()``: the type name, or a conversion to a dtype or a named type.

    Names are PyTorch's with seqlib's prefix, ``"seqlib.FloatTensor"`` or
    ``"seqlib.cuda.LongTensor"``; a name with the ``"torch."`` prefix is understood too.

    Args:
        input: a tensor.
        dtype: None for the name; a dtype, or a type name (which also picks CPU or CUDA).
        non_blocking: accepted for PyTorch compatibility.
    Returns:
        the name as a string, or ``input`` converted (``input`` itself if nothing changes).
    """
    if dtype is None:
        device = "cuda." if input.is_cuda else ""
        return f"seqlib.{device}{_TYPE_NAMES[input._array.dtype]}"
    if not isinstance(dtype, str):
        return to(input, dtypes.as_dtype(dtype, "type"))
    prefix, _, name = dtype.rpartition(".")
    if prefix not in ("seqlib", "torch", "seqlib.cuda", "torch.cuda") or name not in _TYPES:
        raise ValueError(
            f"type: invalid type {dtype!r}; expected a dtype or a name like "
            f"'seqlib.FloatTensor' or 'seqlib.cuda.LongTensor' (or 'torch.' ones), with one of "
            f"{', '.join(_TYPES)}"
        )
    on_cuda = prefix.endswith(".cuda")
    device = (input.device if input.is_cuda else "cuda") if on_cuda else "cpu"
    return to(input, device, _TYPES[name])
