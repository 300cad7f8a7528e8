"""An einops backend, so ``einops.rearrange/reduce/repeat/pack/unpack/einsum`` take tensors.

einops finds backends by subclassing ``AbstractBackend``; defining the class is enough.
Every method maps to a differentiable seqlib op, so gradients flow through einops calls.
"""

from __future__ import annotations

from einops._backends import AbstractBackend


class SeqlibBackend(AbstractBackend):
    framework_name = "seqlib.core"  # einops activates a backend once this module name is imported

    def __init__(self):
        from . import creation, ops
        from .tensor import Tensor

        self.Tensor = Tensor
        self.creation = creation
        self.ops = ops

    def is_appropriate_type(self, tensor) -> bool:
        return isinstance(tensor, self.Tensor)

    def from_numpy(self, x):
        return self.creation.tensor(x)

    def to_numpy(self, x):
        return x.detach().numpy(force=True)

    def arange(self, start, stop):
        return self.creation.arange(start, stop)

    def reduce(self, x, operation, axes):
        if operation in ("min", "max"):
            return x.amin(dim=tuple(axes)) if operation == "min" else x.amax(dim=tuple(axes))
        if operation in ("sum", "mean", "prod", "any", "all"):
            return getattr(x, operation)(dim=tuple(axes))
        raise NotImplementedError(f"einops: unknown reduction {operation!r}")

    def transpose(self, x, axes):
        return x.permute(*axes)

    def stack_on_zeroth_dimension(self, tensors: list):
        return self.ops.shape.stack(tensors)

    def add_axis(self, x, new_position):
        return x.unsqueeze(new_position)

    def tile(self, x, repeats):
        return x.repeat(*repeats)

    def concat(self, tensors, axis: int):
        return self.ops.shape.cat(tensors, dim=axis)

    def is_float_type(self, x) -> bool:
        return x.is_floating_point()

    def einsum(self, pattern, *x):
        return self.ops.linalg.einsum(pattern, *x)
