"""Function: a differentiable op on raw arrays, and the graph node that remembers it."""

from __future__ import annotations

import numpy

from ..backend import device_of, is_array
from .grad_mode import _GradMode


class Function:
    """A differentiable operation; subclasses define ``forward`` and ``backward``.

    ``forward(ctx, *args, **kwargs)`` receives raw NumPy/CuPy arrays in place of tensors and
    returns an array or a tuple of arrays. ``backward(ctx, *grads)`` receives one gradient
    array per output and returns one gradient (or ``None``) per positional input. The ``ctx``
    passed to both is the instance itself, which becomes the ``grad_fn`` of the outputs.
    """

    # Per-node state. Class-level defaults keep creating a node cheap: most ops run without
    # recording a graph, and those that do only set what they need.
    needs_input_grad = ()  # one bool per positional input; all False under no_grad
    _edges = ()  # per input: None | (node, output_nr) | leaf Tensor
    _saved = None  # arrays saved for backward
    _saved_versions = ()  # per saved array: (version counter, version) or None
    _outputs = ()  # (shape, dtype) per output, to materialise missing grads
    _non_differentiable = ()  # ids of output arrays that carry no gradient
    _hooks = None  # {output_nr: [hook, ...]} for non-leaf tensors
    _rank = 0  # 1 + the largest rank among input nodes (leaves are 0)
    _freed = False
    _half = False  # forward ran float16 inputs in float32: backward gets float32 gradients

    # Set on Functions whose intermediates overflow float16 or lose its 11 bits (sums of
    # squares, normalisers, long dot products): float16 inputs are computed in float32 and the
    # outputs rounded back, as PyTorch's CPU kernels accumulate half precision in float32.
    half_in_float32 = False

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
        """Drop everything backward needed (saved arrays, values stashed on ctx by forward)."""
        state = self.__dict__
        state.clear()
        state["_freed"] = True

    # ---- running the op ------------------------------------------------------------------
    @classmethod
    def apply(cls, *args, **kwargs):
        """Run ``forward`` on the arrays behind ``args`` and record the graph if needed."""
        ctx = cls()
        raw = []
        needs = []
        wants_grad = False
        enabled = _GradMode.enabled  # under no_grad nothing needs a gradient: forward saves none
        for a in args:
            if isinstance(a, Tensor):
                raw.append(a._array)
                needs.append(a._requires_grad and enabled)
                wants_grad = wants_grad or a._requires_grad
            else:
                raw.append(a)
                needs.append(False)
        ctx.needs_input_grad = tuple(needs)
        half = cls.half_in_float32 and _all_half(raw)
        if half:
            ctx._half = True
            raw = [a.astype(numpy.float32) if _is_float(a) else a for a in raw]
        try:
            result = cls.forward(ctx, *raw, **kwargs)
        except (ValueError, TypeError, IndexError) as error:
            raise _explain(cls, args, error) from error
        if half:
            result = _round_to_half(result)
        record = wants_grad and _GradMode.enabled
        if type(result) is not tuple:
            if isinstance(result, numpy.generic):  # NumPy turns 0-d results into scalars
                result = numpy.asarray(result)
            if not record:
                return _make(result)
            return _record(ctx, args, (result,))[0]
        arrays = tuple(numpy.asarray(a) if isinstance(a, numpy.generic) else a for a in result)
        if not record:
            return tuple(_make(a) for a in arrays)
        return _record(ctx, args, arrays)


def _is_float(array) -> bool:
    return is_array(array) and array.dtype.kind == "f"


_HALF = numpy.dtype(numpy.float16)


def _all_half(raw) -> bool:
    """True when the floating arrays among ``raw`` are all float16 (and there is one); stops at
    the first other float, so the usual float32 call costs one look."""
    found = False
    for a in raw:
        if _is_float(a):
            if a.dtype != _HALF:
                return False
            found = True
    return found


def _round_to_half(result):
    """float32 outputs of a forward that ran float16 inputs in float32, back to float16 (an
    output of another dtype, e.g. ``sum(dtype=float64)`` or indices, is what was asked for)."""
    if type(result) is tuple:
        return tuple(_to_half(a) for a in result)
    return _to_half(result)


def _to_half(array):
    if isinstance(array, numpy.generic):
        array = numpy.asarray(array)
    return array.astype(numpy.float16) if _is_float(array) and array.dtype == numpy.float32 \
        else array


def _record(ctx, args, arrays) -> tuple:
    """Wire ``ctx`` into the graph: edges to the inputs, outputs that point back to it."""
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
    nondiff = ctx._non_differentiable
    if len(arrays) == 1 and not nondiff:  # the common case, without generator overhead
        array = arrays[0]
        ctx._outputs = ((array.shape, array.dtype),)
        outputs = (_make(array, ctx, 0) if array.dtype.kind == "f" else _make(array),)
    else:
        ctx._outputs = tuple((a.shape, a.dtype) for a in arrays)
        outputs = tuple(
            _make(a, ctx, i) if a.dtype.kind == "f" and id(a) not in nondiff else _make(a)
            for i, a in enumerate(arrays)
        )
    if ctx._saved:
        ctx._saved_versions = _version_records(ctx._saved, args, outputs)
    return outputs


def _version_records(saved, args, outputs) -> tuple:
    """For each saved array that is an input's or output's array: (its counter, version now)."""
    records = []
    for array in saved:
        record = None
        for owner in (*args, *outputs):
            if isinstance(owner, Tensor) and owner._array is array:
                record = (owner._version, owner._version[0])
                break
        records.append(record)
    return tuple(records)


def _explain(cls, args, error: Exception) -> Exception:
    """Turn a NumPy error inside ``forward`` into one naming the op and its inputs."""
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


from .. import tensor as _tensor_module  # noqa: E402  (tensor imports ops which import us)

Tensor = _tensor_module.Tensor
_make = Tensor._make
