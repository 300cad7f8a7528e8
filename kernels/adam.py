"""One Adam/AdamW step for one parameter on the GPU, as a single elementwise kernel.

On a GPU the step is bound by launches, not arithmetic: written as array expressions it is
about fourteen CuPy kernels per parameter (11 us of host time each on an H100), one kernel here.
The arithmetic is PyTorch's single-tensor Adam, in the same order as ``seqlib.optim.Adam``'s
array code (the CPU path).
"""

from __future__ import annotations

import math

from ._backend import cupy

_kernel = None


def _adam_kernel():
    global _kernel
    if _kernel is None:
        _kernel = cupy.ElementwiseKernel(
            "T grad, T sign, T l2, T decay, T one_minus_beta1, T beta2, T step_size, "
            "T bias_correction2_sqrt, T eps",
            "T p, T exp_avg, T exp_avg_sq",
            """
            T g = sign * grad;
            g = g + l2 * p;          // Adam's L2 penalty (0 for AdamW), on the old weights
            p = p * decay;           // AdamW's decoupled decay (1 for Adam)
            exp_avg = exp_avg + (g - exp_avg) * one_minus_beta1;
            exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g;
            p = p - step_size * (exp_avg / (sqrt(exp_avg_sq) / bias_correction2_sqrt + eps));
            """,
            "seqlib_adam_step",
        )
    return _kernel


def adam_step_cuda(p, grad, exp_avg, exp_avg_sq, *, lr: float, beta1: float, beta2: float,
                   eps: float, weight_decay: float, decoupled: bool, maximize: bool,
                   step: int) -> None:
    """Update CuPy arrays ``p, exp_avg, exp_avg_sq`` in place for step number ``step`` (>= 1)
    with gradient ``grad`` (AMSGrad is not handled here)."""
    dtype = p.dtype.type
    _adam_kernel()(
        grad, dtype(-1.0 if maximize else 1.0),
        dtype(0.0 if decoupled else weight_decay),
        dtype(1.0 - lr * weight_decay if decoupled else 1.0),
        dtype(1.0 - beta1), dtype(beta2), dtype(lr / (1.0 - beta1**step)),
        dtype(math.sqrt(1.0 - beta2**step)), dtype(eps),
        p, exp_avg, exp_avg_sq,
    )
