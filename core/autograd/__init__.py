"""Define-by-run autograd: Function, backward, grad, and the grad-mode switches."""

from __future__ import annotations

from .engine import run_backward
from .function import Function
from .grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .graph import render, to_dot

__all__ = [
    "Function", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "inference_mode", "is_inference_mode_enabled", "to_dot", "render",
]


def _roots(outputs, grad_outputs, op: str) -> list:
    from ..backend import get_array_module
    from ..tensor import Tensor

    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(
            f"{op}: got {len(grad_outputs)} gradients for {len(outputs)} outputs"
        )
    roots = []
    for i, (output, gradient) in enumerate(zip(outputs, grad_outputs)):
        if not output._requires_grad:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn"
            )
        if gradient is None:
            if output.numel() != 1:
                raise RuntimeError(
                    "grad can be implicitly created only for scalar outputs "
                    f"(output {i} has shape {tuple(output.shape)}); pass gradient=..."
                )
            array = output._array
            roots.append((output, get_array_module(array).ones_like(array)))
            continue
        array = gradient._array if isinstance(gradient, Tensor) else gradient
        if tuple(array.shape) != tuple(output.shape):
            raise RuntimeError(
                f"{op}: mismatch in shape: grad_output[{i}] has a shape of "
                f"{tuple(array.shape)} and output[{i}] has a shape of {tuple(output.shape)}"
            )
        roots.append((output, array.astype(output.dtype, copy=False)))
    return roots


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate gradients of ``tensors`` into the ``.grad`` of the leaves they depend on."""
    if create_graph:
        raise NotImplementedError("backward: create_graph=True (double backward) is not supported")
    roots = _roots(tensors, grad_tensors, "backward")
    if inputs is not None:
        from ..tensor import Tensor

        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        captured = grad(tensors, inputs, grad_tensors, retain_graph=retain_graph,
                        allow_unused=True)
        for leaf, g in zip(inputs, captured):
            if g is not None:
                leaf._grad = g if leaf._grad is None else leaf._grad + g
        return
    run_backward(roots, bool(retain_graph))


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """The gradients of ``outputs`` with respect to ``inputs``, without touching ``.grad``.

    Returns:
        a tuple with one Tensor per input (``None`` for unused inputs if ``allow_unused``).
    """
    from ..tensor import Tensor

    if create_graph:
        raise NotImplementedError("grad: create_graph=True (double backward) is not supported")
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    keys = []
    for i, tensor in enumerate(inputs):
        if not tensor._requires_grad:
            raise RuntimeError(f"grad: input {i} does not require grad")
        keys.append(id(tensor) if tensor.grad_fn is None else (tensor.grad_fn, tensor._output_nr))
    captures = dict.fromkeys(keys)
    run_backward(_roots(outputs, grad_outputs, "grad"), bool(retain_graph), captures)
    results = []
    for i, key in enumerate(keys):
        value = captures[key]
        if value is None and not allow_unused:
            raise RuntimeError(
                f"One of the differentiated Tensors (input {i}) appears to not have been used in "
                "the graph. Set allow_unused=True if this is the desired behavior."
            )
        results.append(None if value is None else Tensor._make(value))
    return tuple(results)
