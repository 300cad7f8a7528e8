"""Parameter: a leaf tensor that a Module registers as trainable."""

from __future__ import annotations

from seqlib.core.tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a module parameter: assigning it to a Module attribute registers it.

    Args:
        data: the initial values (shares memory with a given tensor).
        requires_grad: whether the parameter is trained (default True).
    """

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        from seqlib.core.creation import as_tensor, empty

        source = empty(0) if data is None else as_tensor(data)
        self = object.__new__(cls)
        Tensor._init(self, source._array)
        self.requires_grad = requires_grad
        return self

    def __init__(self, data=None, requires_grad: bool = True):
        pass  # everything happens in __new__

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce__(self):
        return (Parameter, (Tensor._make(self._array), self._requires_grad))
