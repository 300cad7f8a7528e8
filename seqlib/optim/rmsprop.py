"""RMSprop, updating exactly as ``torch.optim.RMSprop``."""

from __future__ import annotations

from seqlib.core.backend import get_array_module
from seqlib.optim.optimizer import Optimizer, implementation_options


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running RMS of recent gradients.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        alpha: smoothing constant of the squared-gradient average.
        eps: added to the denominator.
        weight_decay: L2 penalty.
        momentum: momentum factor.
        centered: normalise by the estimated variance instead of the second moment.
        capturable, foreach: accepted for compatibility with PyTorch and stored in the groups;
            they do not change the update (see ``implementation_options``).
        maximize: ascend instead of descend.
        differentiable: must be False (seqlib updates parameters outside autograd).
    """

    _non_negative = (("lr", "learning rate"), ("eps", "epsilon value"),
                     ("momentum", "momentum value"), ("weight_decay", "weight_decay value"),
                     ("alpha", "alpha value"))

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        self._check_options(defaults)
        options = implementation_options(foreach, differentiable, capturable=capturable)
        super().__init__(params, {**defaults, **options})

    def _update(self, param, grad, state, group):
        p = param._array
        xp = get_array_module(p)
        alpha = group["alpha"]
        if group["maximize"]:
            grad = -grad
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = xp.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p)
        state["step"] += 1
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg += (grad - grad_avg) * (1 - alpha)
            average = xp.sqrt(square_avg - grad_avg * grad_avg)
        else:
            average = xp.sqrt(square_avg)
        average += group["eps"]
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer *= group["momentum"]
            buffer += grad / average
            p -= group["lr"] * buffer
        else:
            p -= group["lr"] * (grad / average)
