"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from seqlib.optim.optimizer import Optimizer, implementation_options, required


class SGD(Optimizer):
    """SGD, updating exactly as ``torch.optim.SGD``.

    .. math::
        g = \\nabla + \\lambda p;\\quad b = \\mu b + (1 - \\tau) g;\\quad
        p \\leftarrow p - \\eta\\,(g + \\mu b \\text{ if nesterov else } b)

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum: momentum factor.
        dampening: dampening of the momentum.
        weight_decay: L2 penalty.
        nesterov: use Nesterov momentum (needs momentum > 0 and no dampening).
        maximize: ascend instead of descend.
        foreach, fused: accepted for compatibility with PyTorch and stored in the groups; they
            do not change the update (see ``implementation_options``).
        differentiable: must be False (seqlib updates parameters outside autograd).
    """

    _non_negative = (("lr", "learning rate"), ("momentum", "momentum value"),
                     ("weight_decay", "weight_decay value"))
    _not_nan = (("dampening", "dampening value"),)  # PyTorch takes any dampening

    def __init__(self, params, lr=required, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        self._check_options(defaults)
        options = implementation_options(foreach, differentiable, fused=fused)
        super().__init__(params, {**defaults, **options})

    @classmethod
    def _check_options(cls, options: dict) -> None:
        super()._check_options(options)
        if options.get("nesterov") and (options.get("momentum", 0) <= 0
                                        or options.get("dampening", 0) != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _update(self, param, grad, state, group):
        p = param._array
        d_p = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            d_p = d_p + group["weight_decay"] * p
        momentum = group["momentum"]
        if momentum:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = d_p.copy()
            else:
                buffer *= momentum
                buffer += (1 - group["dampening"]) * d_p
            d_p = d_p + momentum * buffer if group["nesterov"] else buffer
        p -= group["lr"] * d_p
