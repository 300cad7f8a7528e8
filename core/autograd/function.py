"""Function: a differentiable op on raw arrays, and the graph node that remembers it."""

from __future__ import annotations

import numpy

from core.autograd.grad_mode import _GradMode
from core.backend import device_of, is_array


class Function:
    """A differentiable operation; subclasses define ``forward`` and ``backward``.

    ``forward(ctx, *args, **kwargs)`` receives raw NumPy/CuPy arrays in place of tensors and
    returns an array or a tuple of arrays. ``backward(ctx, *grads)`` receives one gradient
    array per output and returns one gradient (or ``None``) per positional input. The ``ctx``
    passed to both is the instance itself, which becomes the ``grad_fn`` of the outputs.
    """

    def __init__(self):
        self.needs_input_grad = ()  # one bool per positional input
        self._edges = ()  # per input: None | (node, output_nr) | leaf Tensor
        self._saved = None  # arrays saved for backward
        self._saved_versions = ()  # per saved array: (version counter, version) or None
        self._outputs = ()  # (shape, dtype) per output, to materialise missing grads
        self._non_differentiable = ()  # ids of output arrays that carry no gradient
        self._hooks = None  # {output_nr: [hook, ...]} for non-leaf tensors
        self._rank = 0  # 1 + the largest rank among input nodes (leaves are 0)
        self._freed = False

    # ---- API for subclasses --------------------------------------------------------------
    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    def save_for_backward(self, *arrays) -> None:
        """Keep arrays for backward; in-place changes to them afterwards are detected."""
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        """The arrays given to ``save_for_backward``, after checking they were not modified."""
        if self._freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Saved intermediate values of the "
                "graph are freed when you call .backward() or autograd.grad(). Specify "
                "retain_graph=True if you need to backward through the graph a second time."
            )
        for index, record in enumerate(self._saved_versions):
            if record is not None and record[0][0] != record[1]:
                shape = tuple(self._saved[index].shape)
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: [{self._saved[index].dtype}{list(shape)}] is at "
                    f"version {record[0][0]}; expected version {record[1]} instead "
                    f"(saved by {self.name()})."
                )
        return self._saved if self._saved is not None else ()

    def mark_non_differentiable(self, *arrays) -> None:
        """Declare outputs (e.g. indices) that never carry a gradient."""
        self._non_differentiable = tuple(id(a) for a in arrays)

    def name(self) -> str:
        return type(self).__name__ + "Backward"

    def __repr__(self) -> str:
        return f"<{self.name()}>"

    @property
    def next_functions(self) -> tuple:
        """The nodes this one feeds gradients into, as PyTorch shows them."""
        return tuple(
            (edge if isinstance(edge, tuple) else (edge, 0)) if edge is not None else (None, 0)
            for edge in self._edges
        )

    def register_hook(self, output_nr: int, hook) -> None:
        if self._hooks is None:
            self._hooks = {}
        self._hooks.setdefault(output_nr, []).append(hook)

    def _release(self) -> None:
        self._saved = None
        self._saved_versions = ()
        self._freed = True
        for key in list(vars(self)):
            if not key.startswith("_") and key != "needs_input_grad":
                delattr(self, key)  # arrays stashed on ctx by forward

    # ---- running the op ------------------------------------------------------------------
    @classmethod
    def apply(cls, *args, **kwargs):
        """Run ``forward`` on the arrays behind ``args`` and record the graph if needed."""
        Tensor = _tensor_module.Tensor
        ctx = cls()
        needs = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        ctx.needs_input_grad = needs
        record = _GradMode.enabled and True in needs
        raw = [a._array if isinstance(a, Tensor) else a for a in args]
        try:
            result = cls.forward(ctx, *raw, **kwargs)
        except (ValueError, TypeError, IndexError) as error:
            raise _explain(cls, args, error) from error
        single = not isinstance(result, tuple)
        arrays = (result,) if single else result
        if True in [isinstance(a, numpy.generic) for a in arrays]:
            # NumPy turns 0-d results into scalars; tensors always hold arrays
            arrays = tuple(numpy.asarray(a) if isinstance(a, numpy.generic) else a
                           for a in arrays)
        if not record:
            outputs = tuple(Tensor._make(a) for a in arrays)
            return outputs[0] if single else outputs
        rank = 0
        edges = []
        for a in args:
            if isinstance(a, Tensor) and a._requires_grad:
                node = a.grad_fn
                if node is None:
                    edges.append(a)
                else:
                    edges.append((node, a._output_nr))
                    if node._rank > rank:
                        rank = node._rank
            else:
                edges.append(None)
        ctx._edges = tuple(edges)
        ctx._rank = rank + 1
        ctx._outputs = tuple((a.shape, a.dtype) for a in arrays)
        nondiff = ctx._non_differentiable
        outputs = tuple(
            Tensor._make(a, ctx, i)
            if a.dtype.kind == "f" and id(a) not in nondiff
            else Tensor._make(a)
            for i, a in enumerate(arrays)
        )
        if ctx._saved:
            ctx._saved_versions = _version_records(ctx._saved, args, outputs, Tensor)
        return outputs[0] if single else outputs


def _version_records(saved, args, outputs, Tensor) -> tuple:
    """For each saved array that is an input's or output's array: (its counter, version now)."""
    owners = {id(t._array): t for t in (*args, *outputs) if isinstance(t, Tensor)}
    records = []
    for array in saved:
        owner = owners.get(id(array))
        records.append(None if owner is None else (owner._version, owner._version[0]))
    return tuple(records)


def _explain(cls, args, error: Exception) -> Exception:
    """Turn a NumPy error inside ``forward`` into one naming the op and its inputs."""
    Tensor = _tensor_module.Tensor
    op = cls.__name__.lower()
    tensors = [a for a in args if isinstance(a, Tensor)]
    devices = {str(device_of(t._array)) for t in tensors if is_array(t._array)}
    if len(devices) > 1:
        return RuntimeError(
            "Expected all tensors to be on the same device, but found at least two devices, "
            f"{' and '.join(sorted(devices))}! (when checking arguments for {op})"
        )
    described = ", ".join(
        f"{type(a).__name__}(shape={tuple(a.shape)}, dtype={a.dtype})"
        if isinstance(a, Tensor)
        else repr(a)
        for a in args
    )
    return type(error)(f"{op}: {error} (inputs: {described})")


from core import tensor as _tensor_module  # noqa: E402  (tensor imports ops which import us)
