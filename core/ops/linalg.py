"""matmul (batched, broadcasting, 1-D cases as NumPy), bmm and einsum, with their gradients."""

from __future__ import annotations

import math
import string

from ..autograd.function import Function
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import unbroadcast


class MatMul(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        # NOTE: 1-D operands are promoted to matrices (a: row, b: column) and back.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g[..., None] if b.ndim == 1 else g  # restore the m axis, then the n axis
        if a.ndim == 1:
            g2 = g2[..., None, :]
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            if b2.ndim == 2 and a2.ndim > 2:  # weight-like b: one big GEMM, no batch of them
                k, m = a2.shape[-1], g2.shape[-1]
                rows = math.prod(a2.shape[:-1])  # not -1, which is ambiguous when k or m is 0
                gb = a2.reshape(rows, k).T @ g2.reshape(rows, m)
            else:
                gb = unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with NumPy's rules: batched, broadcasting, and 1-D vectors.

    Args:
        input: ``(*, n, k)`` or ``(k,)``.
        other: ``(*, k, m)`` or ``(k,)``; batch dims broadcast.
    Returns:
        ``(*, n, m)`` with vector dims dropped.
    """
    from .arithmetic import _wrap, promote

    input, other = promote(_wrap(input), _wrap(other))
    if input.ndim == 0 or other.ndim == 0:
        raise RuntimeError(
            f"matmul: both arguments need at least 1 dimension, got shapes "
            f"{tuple(input.shape)} and {tuple(other.shape)}"
        )
    k_left = input.shape[-1]
    k_right = other.shape[0] if other.ndim == 1 else other.shape[-2]
    if k_left != k_right:
        raise RuntimeError(
            f"matmul: shapes {tuple(input.shape)} and {tuple(other.shape)} cannot be multiplied "
            f"({k_left} != {k_right})"
        )
    return MatMul.apply(input, other)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched matrix product of two 3-D tensors with the same batch size (no broadcasting).

    Args:
        input: ``(B, n, k)``.
        mat2: ``(B, k, m)``.
    Returns:
        ``(B, n, m)``.
    """
    for argument, value in (("input", input), ("mat2", mat2)):
        if not isinstance(value, Tensor) or value.ndim != 3:
            got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value)
            raise RuntimeError(f"bmm: {argument} must be a 3-D tensor, got {got}")
    batch, _, k = input.shape
    if tuple(mat2.shape[:2]) != (batch, k):
        raise RuntimeError(
            f"bmm: expected mat2 to start with (batch, k) = {(batch, k)} to match input of "
            f"shape {tuple(input.shape)}, got shape {tuple(mat2.shape)}"
        )
    return matmul(input, mat2)


class Einsum(Function):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, *operands, inputs, output):
        ctx.save_for_backward(*operands)
        ctx.spec = (inputs, output)
        equation = ",".join(inputs) + "->" + output
        out = get_array_module(*operands).einsum(equation, *operands, optimize=len(inputs) > 2)
        # NOTE: NumPy returns a view of the operand when nothing is summed ("ij->ji",
        # "ii->i"); an untracked view would let an in-place write to the result reach the
        # input behind autograd's back, so the result is always a new tensor.
        return out if out.flags.owndata else out.copy()

    @staticmethod
    def backward(ctx, g):
        operands = ctx.saved_tensors
        inputs, output = ctx.spec
        xp = get_array_module(g)
        grads = []
        for i, target in enumerate(inputs):
            if not ctx.needs_input_grad[i]:
                grads.append(None)
                continue
            others = [s for j, s in enumerate(inputs) if j != i]
            present = set(output).union(*others)
            kept = "".join(c for c in target if c in present)
            equation = ",".join([output, *others]) + "->" + kept
            grad = xp.einsum(equation, g, *[o for j, o in enumerate(operands) if j != i],
                             optimize=len(inputs) > 1)
            if kept != target:  # letters summed only inside this operand: size 1 for now
                grad = grad.reshape([grad.shape[kept.index(c)] if c in kept else 1
                                     for c in target])
            # NOTE: a size-1 dim of this operand that broadcast against the others (batch dims
            # under "...") is summed back to size 1; then the letters summed only inside this
            # operand broadcast back to their size
            shape = operands[i].shape
            grad = unbroadcast(grad, shape)
            grads.append(grad if grad.shape == shape else xp.broadcast_to(grad, shape))
        return tuple(grads)


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation, e.g. ``einsum("nlhd,nshd->nhls", q, k)``; ``...`` is supported.

    Args:
        equation: subscripts, e.g. "ij,jk->ik" (implicit output and ``...`` allowed).
        operands: the tensors (or one list of them).
    Returns:
        the contraction.
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    inputs, output = _parse_einsum(equation, [o.ndim for o in operands])
    for i, (spec, operand) in enumerate(zip(inputs, operands)):
        if len(set(spec)) != len(spec) and operand.requires_grad:
            raise NotImplementedError(
                f"einsum: gradients through a repeated index within one operand (operand {i}: "
                f"'{spec}') are not supported"
            )
    return Einsum.apply(*operands, inputs=tuple(inputs), output=output)


def _parse_einsum(equation: str, ndims: list) -> tuple:
    """Explicit per-operand subscripts and output, with ``...`` spelled out as letters."""
    equation = equation.replace(" ", "")
    left, arrow, output = equation.partition("->")
    inputs = left.split(",")
    if len(inputs) != len(ndims):
        raise ValueError(
            f"einsum: the equation has {len(inputs)} operands but {len(ndims)} were given"
        )
    used = set(equation)
    spare = [c for c in string.ascii_letters if c not in used]
    ellipsis_dims = 0
    for spec, ndim in zip(inputs, ndims):
        if "..." in spec:
            ellipsis_dims = max(ellipsis_dims, ndim - (len(spec) - 3))
    broadcast = "".join(spare[:ellipsis_dims])
    expanded = []
    for spec, ndim in zip(inputs, ndims):
        if "..." in spec:
            count = ndim - (len(spec) - 3)
            spec = spec.replace("...", broadcast[ellipsis_dims - count :])
        if len(spec) != ndim:
            raise ValueError(
                f"einsum: subscripts '{spec}' do not match an operand with {ndim} dimensions"
            )
        expanded.append(spec)
    if arrow:
        output = output.replace("...", broadcast)
    else:
        counts = {}
        for spec in expanded:
            for c in spec:
                counts[c] = counts.get(c, 0) + 1
        output = broadcast + "".join(
            sorted(c for c, n in counts.items() if n == 1 and c not in broadcast)
        )
    return expanded, output
