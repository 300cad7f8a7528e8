"""Feature maps for linear attention: phi(x) such that phi(q) . phi(k) replaces exp(q . k)."""

from __future__ import annotations

import core.functional as F
from core.tensor import Tensor
from seqlib.nn.module import Module


class FeatureMap(Module):
    """Base class: maps queries and keys ``(..., query_dims)`` to features.

    Args:
        query_dims: the size of queries and keys.
    """

    def __init__(self, query_dims: int):
        super().__init__()
        self.query_dims = query_dims

    def new_feature_map(self, device) -> None:
        """Draw new random parameters (random feature maps); deterministic maps do nothing."""
        raise NotImplementedError

    def forward_queries(self, x: Tensor) -> Tensor:
        return self(x)

    def forward_keys(self, x: Tensor) -> Tensor:
        return self(x)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def factory(cls, *args, **kwargs):
        """A function ``query_dims -> feature map`` that attentions call with their dimension."""

        def build(query_dims: int):
            return cls(query_dims, *args, **kwargs)

        return build


class ActivationFunctionFeatureMap(FeatureMap):
    """``phi(x) = activation_function(x)`` elementwise.

    Args:
        query_dims: the size of queries and keys.
        activation_function: a function of a tensor.
    """

    def __init__(self, query_dims: int, activation_function):
        super().__init__(query_dims)
        self.activation_function = activation_function

    def new_feature_map(self, device) -> None:
        return

    def forward(self, x: Tensor) -> Tensor:
        return self.activation_function(x)


def _elu_plus_one(x: Tensor) -> Tensor:
    return F.elu(x) + 1


elu_feature_map = ActivationFunctionFeatureMap.factory(_elu_plus_one)
"""``phi(x) = elu(x) + 1``, the default of linear attention (Katharopoulos et al., 2020)."""
