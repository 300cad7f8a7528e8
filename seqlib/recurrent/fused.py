"""Fused inference steps: a recurrent module's step as one composition of array functions.

Generation calls the recurrent twin once per token at tiny batch sizes, where every seqlib op
costs far more in Python than in arithmetic. Where nothing could observe the difference (no
grad, eval mode, no hooks, no event listeners), a recurrent layer or stack runs its step on raw
arrays instead: each part hands out its ``array_function(reads)`` (the attention its update,
the layer its projections, norms and feed-forward block), built from the same array functions
its modules' Functions call (``step_maths``, ``layer_norm_rows``).

A ``FusedStep`` is an object the caller can hold (``layer.step_fn()``), valid while what it
read is unchanged:

* the parameter registered under each name it read still holds the array it read (checked by
  identity before each step: ``make_mirror``, ``.to()``, ``param.data = ...`` or writing
  ``module._parameters[name]`` directly all show), and a value changed in place in that
  array (``load_state_dict``, an optimizer step) is simply read;
* every module it read has not changed since: assigning or deleting an attribute, parameter
  or submodule, ``train()``/``eval()`` and adding or removing hooks tell the steps that read
  the module (``Module._add_reader``), which then are stale.

States are new arrays at every step: a state a caller kept is never modified.
"""

from __future__ import annotations

from itertools import repeat
from operator import attrgetter, getitem, is_

import numpy

from seqlib.core.autograd.grad_mode import is_grad_enabled
from seqlib.core.tensor import Tensor
from seqlib.nn.layers import Dropout, LayerNorm, Linear
from seqlib.nn.module import Module

_ARRAY = attrgetter("_array")
_NONES = repeat(None)
_FUSABLE_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


class Reads:
    """What a fused step read from a model: the modules (which tell the step when they
    change) and the array of each parameter (compared by identity before each step)."""

    def __init__(self):
        self.modules = {}  # id -> every module read
        self._registries, self._names = [], []  # where each Parameter read is registered
        self._arrays = []  # the array it held
        self._nones, self._none_names = [], []  # where the parameters that were None are
        self._lists, self._lengths = [], []  # submodule dicts iterated over, and their lengths
        self.listeners = []  # listener dicts of the event dispatchers that must stay silent

    def unchanged(self) -> bool:
        """Whether the Parameter registered under each name read still holds the array read
        (compared by identity: a Parameter replaced, or its ``data``, shows), each parameter
        that was None still is, and no submodule list changed length."""
        try:
            same = all(map(is_, map(_ARRAY, map(getitem, self._registries, self._names)),
                           self._arrays))
        except (KeyError, AttributeError):  # deleted since, or None now
            return False
        return (same and all(map(is_, map(getitem, self._nones, self._none_names), _NONES))
                and list(map(len, self._lists)) == self._lengths)

    def module(self, module: Module) -> bool:
        """Watch ``module``; True when nothing would run around its forward (no forward hooks,
        no ``forward`` set on the instance). Its train/eval mode is read where it matters
        (``is_identity_dropout``)."""
        self.modules[id(module)] = module
        state = module.__dict__
        return not (state["_forward_hooks"] or state["_forward_pre_hooks"] or "forward" in state)

    def get(self, module: Module, name: str):
        """``module.<name>`` (a parameter, buffer, submodule or plain attribute)."""
        self.modules[id(module)] = module
        state = module.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in state[registry]:
                return state[registry][name]
        return state[name] if name in state else getattr(module, name)

    def array(self, module: Module, name: str):
        """The array of parameter (or buffer) ``module.<name>``, or None where it is None."""
        self.modules[id(module)] = module
        state = module.__dict__
        registry = state["_parameters"] if name in state["_parameters"] else state["_buffers"]
        tensor = registry[name]
        if tensor is None:
            self._nones.append(registry)
            self._none_names.append(name)
            return None
        self._registries.append(registry)
        self._names.append(name)
        self._arrays.append(tensor._array)
        return tensor._array

    def children(self, module: Module) -> list:
        """The names of ``module``'s submodules (a ModuleList's ``"0"``, ``"1"``, ...)."""
        self.modules[id(module)] = module
        modules = module.__dict__["_modules"]
        self._lists.append(modules)  # ModuleList.__delitem__ clears it without telling
        self._lengths.append(len(modules))
        return list(modules)

    def part(self, module: Module, name: str, methods=("forward",)):
        """The array function of submodule ``module.<name>``, or None where it cannot fuse
        (a module without one, or whose class overrides one of ``methods``, which its array
        function stands for)."""
        child = self.get(module, name)
        if not isinstance(child, Module) or not self.module(child):
            return None
        if not defines_array_function(child, methods):
            return None
        return child.array_function(self)

    def silent(self, dispatcher) -> None:
        """The fused step must not run while ``dispatcher`` has listeners."""
        self.listeners.append(dispatcher._listeners)

    def arrays(self) -> list:
        """Every array read so far."""
        return self._arrays


def defines_array_function(module: Module, methods=("forward",),
                            name: str = "array_function") -> bool:
    """Whether ``module``'s ``array_function`` (or the method called ``name``) computes what
    its ``methods`` do: it does unless a subclass overrides one of them below the class that
    defines it."""
    for cls in type(module).__mro__:
        if name in vars(cls):
            return True
        if any(method in vars(cls) for method in methods):
            return False
    return False


def linear_arrays(reads: Reads, module: Module, name: str):
    """``(weight, bias)`` of the plain ``Linear`` at ``module.<name>``, or None."""
    linear = reads.get(module, name)
    if type(linear) is not Linear or not reads.module(linear):
        return None
    return reads.array(linear, "weight"), reads.array(linear, "bias")


def layer_norm_arrays(reads: Reads, module: Module, name: str):
    """``(weight, bias, eps)`` of the plain one-dimensional ``LayerNorm`` at
    ``module.<name>``, or None."""
    norm = reads.get(module, name)
    if (type(norm) is not LayerNorm or not reads.module(norm)
            or len(reads.get(norm, "normalized_shape")) != 1):
        return None
    return reads.array(norm, "weight"), reads.array(norm, "bias"), reads.get(norm, "eps")


def is_identity_dropout(reads: Reads, module: Module, name: str) -> bool:
    """Whether ``module.<name>`` is a plain ``Dropout`` in eval mode (the identity)."""
    dropout = reads.get(module, name)
    return (type(dropout) is Dropout and reads.module(dropout)
            and not reads.get(dropout, "training"))


class FusedStep:
    """The inference step of a recurrent module on raw arrays, valid while what it read is.

    ``step(x, state)`` returns ``(y, state)`` exactly as ``module(x, state)`` would, or None
    where the module must run instead: gradients are recorded, an event listener listens, the
    module cannot fuse, the step is stale (``valid()`` is False: ask the module for a new one)
    or the input is unusual (another dtype, device or rank, a state of another shape: the
    module path then raises its own, clearer error).

    Args:
        module: a module with an ``array_function(reads)``.
    """

    def __init__(self, module: Module):
        self.module = module
        self.reads = Reads()  # everything the step depends on
        self._stale = False
        function = None
        if self.reads.module(module) and defines_array_function(module):
            function = module.array_function(self.reads)
        arrays = self.reads.arrays()
        self._like = arrays[0] if arrays else None  # inputs must match its dtype and device
        if self._like is None or not _uniform(arrays):
            function = None
        self.function = function  # (x array, state) -> (y array, state), or None
        self._listeners = self.reads.listeners  # dicts that must stay empty for it to run
        self._unchanged = self.reads.unchanged
        for read in self.reads.modules.values():
            read._add_reader(self)

    def invalidate(self) -> None:
        """Mark the step stale (a module it read has changed)."""
        self._stale = True

    def __reduce__(self):  # a copied or unpickled module builds its own step
        return (type(None), ())

    def __deepcopy__(self, memo):
        return None

    @property
    def fusable(self) -> bool:
        """Whether this step can run at all (False: the module's parts cannot be fused)."""
        return self.function is not None

    def valid(self) -> bool:
        """Whether everything the step read is unchanged (see the module's docstring)."""
        return not self._stale and self._unchanged()

    def __call__(self, x: Tensor, state=None):
        if not self.valid():
            return None
        return self.run(x, state)

    def run(self, x: Tensor, state=None):
        """``__call__`` without the validity check: for the module, which just checked it."""
        if (self.function is None or is_grad_enabled() or any(self._listeners)
                or not isinstance(x, Tensor)):
            return None
        a = x._array
        like = self._like
        if (a.ndim != 2 or type(a) is not type(like)
                or (a.dtype is not like.dtype and a.dtype != like.dtype)
                or (type(a) is not numpy.ndarray and a.device != like.device)):
            return None
        result = self.function(a, state)
        if result is None:
            return None
        return Tensor._make(result[0]), result[1]


def _uniform(arrays) -> bool:
    """One array type, one device and one fusable dtype (float32 or float64) for all."""
    first = arrays[0]
    if first.dtype not in _FUSABLE_DTYPES:
        return False
    on_cpu = type(first) is numpy.ndarray
    return all(type(a) is type(first) and a.dtype == first.dtype
               and (on_cpu or a.device == first.device) for a in arrays)


def step_fn(module: Module) -> FusedStep:
    """``module``'s fused step: the one it holds while valid, else a new one it then holds."""
    step = module.__dict__.get("_fused_step")
    if step is None or not step.valid():
        step = FusedStep(module)
        module.__dict__["_fused_step"] = step  # a plain attribute: no parameter, no submodule
    return step
