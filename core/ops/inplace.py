"""In-place ops: mutate the array, bump the version counter, and rebase autograd history.

Without autograd in play (``no_grad``, or nothing requires grad) an in-place op writes
straight into the array. Under autograd it runs the differentiable out-of-place op, writes
the result into the array and makes the tensor the output of that op, as PyTorch does; the
tensor's views, or the root it is a view of, follow (autograd/views.py).
"""

from __future__ import annotations

import numpy

from ..autograd import views
from ..autograd.function import Function
from ..autograd.grad_mode import _GradMode
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import unbroadcast

_UFUNCS = {"add": "add", "sub": "subtract", "mul": "multiply", "div": "true_divide",
           "pow": "power"}


def _recording(tensor: Tensor, *others) -> bool:
    if not _GradMode.enabled:
        return False
    if tensor._requires_grad or any(isinstance(o, Tensor) and o._requires_grad for o in others):
        return True
    base = tensor._base  # a view without history of a root with one: refused by the check
    return base is not None and base._requires_grad


def _check_rebase(tensor: Tensor, op: str) -> None:
    """Refuse in-place ops whose effect autograd could not follow."""
    if tensor.grad_fn is None and tensor._requires_grad:
        raise RuntimeError(
            f"{op}: a leaf Variable that requires grad is being used in an in-place operation."
        )
    if tensor._base is not None:
        views.check_view_inplace(tensor, op)


def _bump(tensor: Tensor) -> Tensor:
    tensor._version[0] += 1
    return tensor


def _write(tensor: Tensor, result: Tensor, op: str) -> Tensor:
    """Store ``result`` in ``tensor`` and make ``tensor`` the output of ``result``'s node; the
    tensor's root and views follow (see autograd/views.py)."""
    if result.shape != tensor.shape:
        raise RuntimeError(
            f"{op}: output with shape {list(tensor.shape)} doesn't match the broadcast shape "
            f"{list(result.shape)}"
        )
    _check_cast(result._array.dtype, tensor._array.dtype, op)
    _keep_original(result.grad_fn, tensor._array)
    tensor._array[...] = result._array
    _bump(tensor)
    if tensor._base is not None:
        views.write_through_view(tensor, result)
        return tensor
    had_grad = tensor._requires_grad
    views.set_history(tensor, result.grad_fn, result._output_nr)
    views.rebase_views(tensor, had_grad)
    return tensor


def _keep_original(node, array) -> None:
    """The op may have saved the array we are about to overwrite: give it a copy (PyTorch
    saves a clone of the original ``self`` for in-place ops the same way)."""
    if node is None or not node._saved:
        return
    if not any(saved is array for saved in node._saved):
        return
    node._saved_versions = tuple(
        None if saved is array else record
        for saved, record in zip(node._saved, node._saved_versions)
    )
    node._saved = tuple(saved.copy() if saved is array else saved for saved in node._saved)


def _check_cast(source, target, op: str) -> None:
    if not numpy.can_cast(source, target, casting="same_kind"):
        raise RuntimeError(
            f"{op}: result type {source} can't be cast to the desired output type {target}"
        )


def binary_(tensor: Tensor, name: str, other, alpha=1) -> Tensor:
    """``add_``, ``sub_``, ``mul_``, ``div_``, ``pow_``."""
    from . import arithmetic

    op = name + "_"
    views.check_writable(tensor, op)
    if _recording(tensor, other):
        _check_rebase(tensor, op)
        function = getattr(arithmetic, name)
        result = function(tensor, other, alpha=alpha) if alpha != 1 else function(tensor, other)
        return _write(tensor, result, op)
    array = tensor._array
    value = other._array if isinstance(other, Tensor) else other
    if alpha != 1:
        value = value * alpha
    xp = get_array_module(array)
    try:
        getattr(xp, _UFUNCS[name])(array, value, out=array, casting="same_kind")
    except (TypeError, ValueError) as error:  # NumPy's UFuncTypeError is a TypeError
        if "cast" in str(error):
            _check_cast(xp.result_type(array, value), array.dtype, op)
        raise RuntimeError(
            f"{op}: {error} (self shape {tuple(array.shape)}, other shape "
            f"{tuple(getattr(value, 'shape', ()))})"
        ) from None
    return _bump(tensor)


def unary_(tensor: Tensor, function, *args, **kwargs) -> Tensor:
    """The in-place twin of any out-of-place op ``function(tensor, *args, **kwargs)``."""
    op = function.__name__ + "_"
    views.check_writable(tensor, op)
    if _recording(tensor, *args, *kwargs.values()):
        _check_rebase(tensor, op)
        return _write(tensor, function(tensor, *args, **kwargs), op)
    result = function(tensor.detach(), *args, **kwargs)
    _check_cast(result._array.dtype, tensor._array.dtype, op)
    tensor._array[...] = result._array
    return _bump(tensor)


class Overwrite(Function):
    """``out = source`` broadcast to ``x``'s shape; ``x`` keeps its place in the graph with a
    zero gradient (PyTorch's CopyBackwards and FillBackward)."""

    @staticmethod
    def forward(ctx, x, source):
        ctx.source_shape = getattr(source, "shape", ())
        out = get_array_module(x).empty_like(x)
        out[...] = source
        return out

    @staticmethod
    def backward(ctx, g):
        gx = get_array_module(g).zeros_like(g) if ctx.needs_input_grad[0] else None
        gsource = unbroadcast(g, ctx.source_shape) if ctx.needs_input_grad[1] else None
        return gx, gsource


def fill_(tensor: Tensor, value) -> Tensor:
    """Set every element to ``value`` (a number or a 0-d tensor)."""
    views.check_writable(tensor, "fill_")
    if _recording(tensor, value):
        _check_rebase(tensor, "fill_")
        return _write(tensor, Overwrite.apply(tensor, value), "fill_")
    tensor._array[...] = value._array if isinstance(value, Tensor) else value
    return _bump(tensor)


def copy_(tensor: Tensor, source: Tensor) -> Tensor:
    """Copy ``source`` (broadcast, cast, and moved across devices as needed) into ``tensor``."""
    from .convert import to

    if not isinstance(source, Tensor):
        raise TypeError(f"copy_: source must be a Tensor, got {type(source).__name__}")
    if not _broadcasts_to(source.shape, tensor.shape):
        raise RuntimeError(
            f"copy_: source of shape {tuple(source.shape)} can't be broadcast to "
            f"{tuple(tensor.shape)}"
        )
    moved = to(source, tensor.device, tensor.dtype)
    views.check_writable(tensor, "copy_")
    if _recording(tensor, source):
        _check_rebase(tensor, "copy_")
        return _write(tensor, Overwrite.apply(tensor, moved), "copy_")
    tensor._array[...] = moved._array
    return _bump(tensor)


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    try:
        return numpy.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def setitem_(tensor: Tensor, index, value) -> None:
    """``tensor[index] = value`` (value: number or tensor, broadcast to the selection)."""
    from .indexing import split_index

    basic, advanced = split_index(index, get_array_module(tensor._array), tensor._array.ndim)
    views.check_writable(tensor, "__setitem__")
    if _recording(tensor, value):
        _check_rebase(tensor, "__setitem__")
        _write(tensor, SetItem.apply(tensor, basic, advanced, value), "__setitem__")
        return
    array = value._array if isinstance(value, Tensor) else value
    try:
        _assign(tensor._array, basic, advanced, array)
    except (ValueError, IndexError) as error:
        raise type(error)(
            f"__setitem__: {error} (tensor shape {tuple(tensor.shape)}, value shape "
            f"{tuple(getattr(value, 'shape', ()))})"
        ) from None
    _bump(tensor)


def _assign(array, basic: tuple, advanced, value) -> None:
    """``array[basic][advanced] = value`` (see ``indexing.split_index``)."""
    if advanced is None:
        array[basic] = value
    else:  # array[basic] is a view: the write reaches array
        (array[basic] if basic else array)[advanced] = value


class SetItem(Function):
    @staticmethod
    def forward(ctx, x, basic, advanced, value):
        ctx.args = (basic, advanced, getattr(value, "shape", ()))
        out = x.copy()
        _assign(out, basic, advanced, value)
        return out

    @staticmethod
    def backward(ctx, g):
        from .indexing import index_array

        basic, advanced, value_shape = ctx.args
        gx = g.copy()
        _assign(gx, basic, advanced, 0)
        gv = None
        if ctx.needs_input_grad[3]:
            gv = unbroadcast(index_array(g, basic, advanced), value_shape)
        return gx, None, None, gv
