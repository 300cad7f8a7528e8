"""Losses with PyTorch's semantics: cross_entropy (fused), nll, mse, l1, BCE with logits."""

from __future__ import annotations

from .autograd.function import Function
from .autograd.grad_mode import is_grad_enabled
from .backend import get_array_module
from .functional.activation import log_softmax_array
from .ops._util import select
from .tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _rows(x):
    """``(N, C, d1, ...)`` -> ``(N*d1*..., C)`` rows of class scores; ``(C,)`` -> ``(1, C)``."""
    xp = get_array_module(x)
    if x.ndim == 1:
        return x[None, :]
    return xp.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _unrows(grad_rows, shape):
    """Inverse of ``_rows`` for a gradient."""
    xp = get_array_module(grad_rows)
    if len(shape) == 1:
        return grad_rows[0]
    moved = grad_rows.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return xp.moveaxis(moved, -1, 1)


def _reduce(losses, denominator, reduction, target_shape):
    """Apply ``reduction`` to per-row losses; returns the value and d(value)/d(losses)."""
    xp = get_array_module(losses)
    if reduction == "none":
        return losses.reshape(target_shape), None
    total = losses.sum()
    if reduction == "sum":
        return xp.asarray(total, losses.dtype), 1
    with _quiet():  # no targets (or weights) to count: the mean is nan, as PyTorch's
        scale = 1 / denominator if denominator else float("inf")
        return xp.asarray(total / denominator, losses.dtype), scale


def _quiet():
    import numpy

    return numpy.errstate(divide="ignore", invalid="ignore")


def _upstream(g, scale, n_rows):
    """The gradient reaching each row's loss, shaped ``(rows, 1)``."""
    if scale is None:
        return g.reshape(n_rows, 1)
    return (g * scale).reshape(1, 1)


class ClassNLL(Function):
    """Cross-entropy or NLL with class-index targets, over rows of class scores."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction, smoothing, from_logits):
        xp = get_array_module(x)
        rows = _rows(x)
        n, classes = rows.shape
        logp = log_softmax_array(rows, 1) if from_logits else rows
        flat = target.reshape(-1)
        valid = flat != ignore_index
        safe = xp.where(valid, flat, 0)
        class_weight = weight if weight is not None else xp.ones(classes, x.dtype)
        row_weight = class_weight[safe] * valid  # w[y_n], 0 where ignored
        picked = xp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
        # an ignored row's loss is 0 even where its scores are nan (PyTorch's), not nan * 0
        losses = xp.where(valid, -picked * row_weight, 0)
        if smoothing:
            smooth = xp.where(valid, -(logp * class_weight).sum(axis=1), 0)
            losses = (1 - smoothing) * losses + (smoothing / classes) * smooth
        denominator = row_weight.sum()
        out, scale = _reduce(losses.astype(x.dtype, copy=False), denominator, reduction,
                             target.shape)
        ctx.save_for_backward(logp)
        ctx.args = (x.shape, safe, valid, row_weight, class_weight, scale, smoothing, from_logits)
        return out

    @staticmethod
    def backward(ctx, g):
        (logp,) = ctx.saved_tensors
        shape, safe, valid, row_weight, class_weight, scale, smoothing, from_logits = ctx.args
        xp = get_array_module(g)
        n, classes = logp.shape
        up = _upstream(g, scale, n).astype(logp.dtype)
        # d(-log p_y)/d(logp) is -onehot(y); through log_softmax it becomes p - onehot(y)
        grad = xp.zeros_like(logp)
        xp.put_along_axis(grad, safe[:, None], -(row_weight * (1 - smoothing))[:, None], axis=1)
        if smoothing:
            grad -= (smoothing / classes) * class_weight * valid[:, None]
        if from_logits:
            grad -= xp.exp(logp) * grad.sum(axis=1, keepdims=True)
        with _quiet():
            grad *= up
        if not bool(xp.isfinite(up).all()):  # a mean over no weight, or a nan/inf from above
            grad = select(_counted(grad, safe, valid, from_logits), grad)
        return _unrows(grad, shape), None, None, None, None, None, None


def _counted(grad, safe, valid, from_logits):
    """Where the loss depends on its input, when the gradient arriving is not finite.

    NOTE: every target ignored makes the mean 0/0 and its scale inf; a nan or inf may also
    arrive from the ops above. Ignored rows take no part in the loss, so their gradient is 0
    (PyTorch), not 0 * inf = nan; nor do nll_loss's entries off the target (PyTorch scatters
    the gradient there). Counted rows get the nan or inf: all of the row through log_softmax,
    the target entry alone for nll_loss.
    """
    if from_logits:
        return valid[:, None]
    xp = get_array_module(grad)
    at_target = xp.zeros(grad.shape, bool)
    xp.put_along_axis(at_target, safe[:, None], valid[:, None], axis=1)
    return at_target


class SoftTargetCrossEntropy(Function):
    """Cross-entropy with class-probability targets (same shape as the input)."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, target, weight, reduction, smoothing):
        xp = get_array_module(x)
        rows = _rows(x)
        n, classes = rows.shape
        logp = log_softmax_array(rows, 1)
        q = _rows(target)
        if smoothing:
            q = q * (1 - smoothing) + smoothing / classes
        class_weight = weight if weight is not None else xp.ones(classes, x.dtype)
        losses = -(logp * q * class_weight).sum(axis=1)
        target_shape = (x.shape[0],) + tuple(x.shape[2:]) if x.ndim > 1 else ()
        out, scale = _reduce(losses, n, reduction, target_shape)
        ctx.save_for_backward(logp, q)
        ctx.args = (x.shape, class_weight, scale, smoothing)
        return out

    @staticmethod
    def backward(ctx, g):
        logp, q = ctx.saved_tensors
        shape, class_weight, scale, smoothing = ctx.args
        xp = get_array_module(g)
        up = _upstream(g, scale, logp.shape[0]).astype(logp.dtype)
        weighted = q * class_weight
        gx = (xp.exp(logp) * weighted.sum(axis=1, keepdims=True) - weighted) * up
        gt = None
        if ctx.needs_input_grad[1]:
            gt = _unrows(-(1 - smoothing) * logp * class_weight * up, shape)
        return _unrows(gx, shape), gt, None, None, None


def _check_class_input(input, target, weight, op):
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have at least 1 dimension (the classes)")
    classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    if weight is not None and tuple(weight.shape) != (classes,):
        raise RuntimeError(
            f"{op}: weight must have shape ({classes},) (one per class), got {tuple(weight.shape)}"
        )
    if target.dtype.kind in "iu":
        expected = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(
                f"{op}: expected target of shape {expected} for input of shape "
                f"{tuple(input.shape)}, got {tuple(target.shape)}"
            )
    return classes


def _constant(value, name: str, op: str):
    """The raw array of an optional weight tensor, which must not require grad (PyTorch)."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(value).__name__}")
    if value.requires_grad and is_grad_enabled():
        raise NotImplementedError(
            f"{op}: the derivative for '{name}' is not implemented; pass {name}.detach()"
        )
    return value._array


def _check_targets(target, classes, ignore_index, op):
    array = target._array
    valid = array[array != ignore_index]
    if valid.size and (int(valid.min()) < 0 or int(valid.max()) >= classes):
        bad = int(valid.min()) if int(valid.min()) < 0 else int(valid.max())
        raise IndexError(f"{op}: Target {bad} is out of bounds (input has {classes} classes)")


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between logits and targets, as ``torch.nn.functional.cross_entropy``.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N)``, ``(N, d1, ...)`` or ``()`` (int), or class
            probabilities shaped like ``input`` (float).
        weight: ``(C,)`` per-class weights; the mean divides by the summed target weights.
        ignore_index: targets equal to it add nothing and do not count in the mean.
        reduction: "none" (per element, shaped like the target), "mean" or "sum".
        label_smoothing: in ``[0, 1]``; mixes the target with the uniform distribution.
    Returns:
        the loss (a scalar unless ``reduction="none"``).
    """
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    classes = _check_class_input(input, target, weight, "cross_entropy")
    weight_array = _constant(weight, "weight", "cross_entropy")
    if target.dtype.kind == "f":
        if target.shape != input.shape:
            raise ValueError(
                f"cross_entropy: probability targets must have the input's shape "
                f"{tuple(input.shape)}, got {tuple(target.shape)}"
            )
        return SoftTargetCrossEntropy.apply(input, target, weight_array, reduction,
                                            label_smoothing)
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must be int64 class indices or float "
                        f"probabilities, got {target.dtype}")
    _check_targets(target, classes, ignore_index, "cross_entropy")
    return ClassNLL.apply(input, target._array, weight_array, ignore_index, reduction,
                          label_smoothing, True)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` at class indices ``target``.

    Shapes and options as ``cross_entropy`` with class-index targets.

    Args:
        input: log-probabilities ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: int class indices ``(N)``, ``(N, d1, ...)`` or ``()``.
        weight: ``(C,)`` per-class weights.
        ignore_index: targets to skip.
        reduction: "none", "mean" or "sum".
    Returns:
        the loss (a scalar unless ``reduction="none"``).
    """
    _check_reduction(reduction, "nll_loss")
    classes = _check_class_input(input, target, weight, "nll_loss")
    if target.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must be an integer tensor, got {target.dtype}")
    _check_targets(target, classes, ignore_index, "nll_loss")
    weight_array = _constant(weight, "weight", "nll_loss")
    return ClassNLL.apply(input, target._array, weight_array, ignore_index, reduction, 0.0,
                          False)


def _reduced(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _check_same_shape(input, target, op):
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: target must be a Tensor, got {type(target).__name__}")
    if input.shape != target.shape:
        raise ValueError(
            f"{op}: target size {tuple(target.shape)} must be the same as input size "
            f"{tuple(input.shape)}"
        )


class MSE(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, input, target, reduction):
        difference = input - target
        ctx.save_for_backward(difference)
        ctx.reduction = reduction
        squares = difference * difference
        if reduction == "none":
            return squares
        total = squares.sum()
        if reduction == "sum":
            return total
        # the mean of no elements is nan, as PyTorch's (and without a 0/0 warning)
        return total / squares.size if squares.size else total * float("nan")

    @staticmethod
    def backward(ctx, g):
        (difference,) = ctx.saved_tensors
        scale = 2 / difference.size if ctx.reduction == "mean" and difference.size else 2
        grad = difference * (g * scale)
        return (grad if ctx.needs_input_grad[0] else None,
                -grad if ctx.needs_input_grad[1] else None, None)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)**2``, reduced (one fused op).

    Args:
        input: any shape ``(*)``.
        target: same shape.
        reduction: "none", "mean" or "sum".
    Returns:
        the loss (``(*)`` for "none").
    """
    _check_reduction(reduction, "mse_loss")
    _check_same_shape(input, target, "mse_loss")
    if input.dtype != target.dtype:
        raise RuntimeError(
            f"mse_loss: expected input and target of the same dtype, got {input.dtype} and "
            f"{target.dtype}"
        )
    return MSE.apply(input, target, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``|input - target|``, reduced.

    Args:
        input: any shape ``(*)``.
        target: same shape.
        reduction: "none", "mean" or "sum".
    Returns:
        the loss (``(*)`` for "none").
    """
    _check_reduction(reduction, "l1_loss")
    _check_same_shape(input, target, "l1_loss")
    return _reduced((input - target).abs(), reduction)


class BCEWithLogits(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, target, weight, pos_weight):
        xp = get_array_module(x)
        # log(1 + exp(-|x|)) + max(-x, 0) is log(1 + exp(-x)) without overflow
        softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
        log_weight = 1 + (pos_weight - 1) * target if pos_weight is not None else 1
        losses = (1 - target) * x + log_weight * softplus_neg
        if weight is not None:
            losses = losses * weight
        ctx.save_for_backward(x, target)
        ctx.args = (weight, pos_weight)
        return losses

    @staticmethod
    def backward(ctx, g):
        x, target = ctx.saved_tensors
        weight, pos_weight = ctx.args
        xp = get_array_module(x)
        sigmoid = xp.tanh(x * 0.5) * 0.5 + 0.5
        if pos_weight is not None:
            log_weight = 1 + (pos_weight - 1) * target
            gx = (1 - target) - log_weight * (1 - sigmoid)
        else:
            gx = sigmoid - target
        gt = None
        if ctx.needs_input_grad[1]:
            softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
            gt = -x + (pos_weight - 1) * softplus_neg if pos_weight is not None else -x
        if weight is not None:
            gx = gx * weight
            gt = gt * weight if gt is not None else None
        return g * gx, (g * gt if gt is not None else None), None, None


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross-entropy on logits, stable for any magnitude.

    Args:
        input: logits of any shape.
        target: probabilities in ``[0, 1]``, same shape.
        weight: rescales each element's loss (broadcast to the input).
        reduction: "none", "mean" or "sum".
        pos_weight: weight of positive examples per class (broadcast over the last dim).
    """
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    _check_same_shape(input, target, "binary_cross_entropy_with_logits")
    op = "binary_cross_entropy_with_logits"
    weight_array = _constant(weight, "weight", op)
    pos_array = _constant(pos_weight, "pos_weight", op)
    losses = BCEWithLogits.apply(input, target, weight_array, pos_array)
    if losses.shape != input.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: weight/pos_weight do not broadcast to the "
            f"input's shape {tuple(input.shape)}"
        )
    return _reduced(losses, reduction)
