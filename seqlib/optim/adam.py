"""Adam and AdamW, updating exactly as PyTorch's single-tensor implementations."""

from __future__ import annotations

import math

from seqlib.core.backend import get_array_module
from seqlib.kernels.adam import adam_step_cuda
from seqlib.optim.optimizer import Optimizer, implementation_options


class Adam(Optimizer):
    """Adam (Kingma & Ba) with optional L2 weight decay and AMSGrad.

    .. math::
        m = \\beta_1 m + (1-\\beta_1) g;\\quad v = \\beta_2 v + (1-\\beta_2) g^2;\\quad
        p \\leftarrow p - \\frac{\\eta}{1-\\beta_1^t}\\,
        \\frac{m}{\\sqrt{v}/\\sqrt{1-\\beta_2^t} + \\epsilon}

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient (AdamW decays the weights instead).
        amsgrad: use the running maximum of the second moment.
        maximize: ascend instead of descend.
        foreach, fused, capturable: accepted for compatibility with PyTorch and stored in the
            groups; they do not change the update (see ``implementation_options``).
        differentiable: must be False (seqlib updates parameters outside autograd).
    """

    decoupled = False

    _non_negative = (("lr", "learning rate"), ("eps", "epsilon value"),
                     ("weight_decay", "weight_decay value"))

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        self._check_options(dict(lr=lr, eps=eps, betas=betas, weight_decay=weight_decay))
        options = implementation_options(foreach, differentiable, capturable=capturable,
                                         fused=fused)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, **options))

    def _update(self, param, grad, state, group):
        p = param._array
        xp = get_array_module(p)
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p)
        state["step"] += 1
        step = state["step"]
        if xp.__name__ == "cupy" and not group["amsgrad"] and grad.dtype == p.dtype:
            adam_step_cuda(p, grad, state["exp_avg"], state["exp_avg_sq"], lr=lr, beta1=beta1,
                           beta2=beta2, eps=eps, weight_decay=group["weight_decay"],
                           decoupled=self.decoupled, maximize=group["maximize"], step=step)
            return
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"]:
            if self.decoupled:
                p *= 1 - lr * group["weight_decay"]
            else:
                grad = grad + group["weight_decay"] * p
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (grad - exp_avg) * (1 - beta1)  # lerp, as PyTorch
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        second = exp_avg_sq
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        denominator = xp.sqrt(second) / bias_correction2_sqrt + eps
        p -= (lr / bias_correction1) * (exp_avg / denominator)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * wd`` first.

    Args: as ``Adam``, with ``weight_decay`` defaulting to 1e-2.
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused)
