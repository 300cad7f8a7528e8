"""Numerical gradient checks in float64: full (central differences) and directional."""

from __future__ import annotations

import numpy


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def _scalarize(fn, inputs, weights):
    """``sum_k <weights_k, fn(inputs)_k>``: one number whose gradient is a vector-Jacobian."""
    from .tensor import Tensor

    outputs = fn(*inputs)
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    outputs = [o for o in outputs if isinstance(o, Tensor) and o.dtype.kind == "f"]
    if weights is None:
        generator = numpy.random.default_rng(1234)
        weights = [generator.standard_normal(o.shape) for o in outputs]
    total = None
    for o, w in zip(outputs, weights):
        term = (o * Tensor._make(numpy.asarray(w, dtype=o.dtype))).sum()
        total = term if total is None else total + term
    return total, weights


def _analytic(fn, inputs, checked, weights):
    from .autograd import grad

    total, weights = _scalarize(fn, inputs, weights)
    if total is None or not total.requires_grad:
        return [numpy.zeros(inputs[i].shape) for i in checked], weights
    grads = grad(total, [inputs[i] for i in checked], allow_unused=True)
    return [numpy.zeros(inputs[i].shape) if g is None else g.numpy().astype(numpy.float64)
            for i, g in zip(checked, grads)], weights


def _value(fn, inputs, weights) -> float:
    from .autograd import no_grad

    with no_grad():
        total, _ = _scalarize(fn, inputs, weights)
    return 0.0 if total is None else float(total.item())


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              directions: int | None = None, seed: int = 0) -> bool:
    """Compare autograd's gradients of ``fn`` with central differences, in float64.

    Args:
        fn: a function of the tensors in ``inputs`` returning a tensor or tuple of tensors.
        inputs: a tuple of tensors; those with ``requires_grad`` are checked (float64 only).
        eps: the finite-difference step.
        atol, rtol: tolerances, ``|analytic - numeric| <= atol + rtol * |numeric|``.
        directions: if given, check that many random directional derivatives instead of every
            element (for large inputs: 2 function calls per direction, not per element).
        seed: seeds the random directions.
    Returns:
        True; raises ``GradcheckError`` naming the input and the worst element otherwise.
    """
    from .tensor import Tensor

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != numpy.float64:
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; gradcheck needs float64 inputs"
            )
        if inputs[i].is_cuda:
            raise TypeError(f"gradcheck: input {i} is on {inputs[i].device}; use CPU tensors")
    analytic, weights = _analytic(fn, inputs, checked, None)
    if directions is not None:
        return _directional(fn, inputs, checked, analytic, weights, eps, atol, rtol,
                            directions, seed)
    for position, i in enumerate(checked):
        array = inputs[i]._array
        numeric = numpy.zeros(array.shape)
        flat = array.reshape(-1)
        for k in range(flat.size):
            original = flat[k]
            flat[k] = original + eps
            plus = _value(fn, inputs, weights)
            flat[k] = original - eps
            minus = _value(fn, inputs, weights)
            flat[k] = original
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        _compare(analytic[position], numeric, atol, rtol, f"input {i}")
    return True


def _directional(fn, inputs, checked, analytic, weights, eps, atol, rtol, directions, seed):
    generator = numpy.random.default_rng(seed)
    for d in range(directions):
        steps = [generator.standard_normal(inputs[i].shape) for i in checked]
        expected = sum(float((a * s).sum()) for a, s in zip(analytic, steps))
        originals = [inputs[i]._array.copy() for i in checked]
        for i, s in zip(checked, steps):
            inputs[i]._array[...] += eps * s
        plus = _value(fn, inputs, weights)
        for i, s, o in zip(checked, steps, originals):
            inputs[i]._array[...] = o - eps * s
        minus = _value(fn, inputs, weights)
        for i, o in zip(checked, originals):
            inputs[i]._array[...] = o
        numeric = (plus - minus) / (2 * eps)
        _compare(numpy.array(expected), numpy.array(numeric), atol, rtol, f"direction {d}")
    return True


def _compare(analytic, numeric, atol, rtol, what: str) -> None:
    error = numpy.abs(analytic - numeric)
    bound = atol + rtol * numpy.abs(numeric)
    bad = ~(error <= bound)  # NaN counts as a mismatch
    if not bad.any():
        return
    excess = numpy.where(bad, numpy.nan_to_num(error - bound, nan=numpy.inf), -numpy.inf)
    worst = numpy.unravel_index(numpy.argmax(excess), error.shape) if error.ndim else ()
    raise GradcheckError(
        f"Jacobian mismatch for {what} at index {tuple(int(i) for i in worst)}: "
        f"analytic {analytic[worst]:.10g} vs numerical {numeric[worst]:.10g} "
        f"(atol={atol}, rtol={rtol}; {int(bad.sum())} of {error.size} "
        "elements differ)"
    )
