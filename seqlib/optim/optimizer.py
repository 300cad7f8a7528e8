"""Optimizer base class: parameter groups, per-parameter state, state_dict round trips."""

from __future__ import annotations

import copy
import math
import numbers
from collections import defaultdict

from seqlib.core.backend import get_array_module
from seqlib.core.tensor import Tensor


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base of all optimizers.

    Args:
        params: an iterable of tensors, or of dicts (parameter groups) with a ``"params"``
            entry and per-group options.
        defaults: the default options of every group.
    """

    # (option, how PyTorch's messages name it): numbers >= 0, and numbers that are not NaN
    _non_negative: tuple = ()
    _not_nan: tuple = ()

    @classmethod
    def _check_options(cls, options: dict) -> None:
        """Raise as PyTorch does for the options in ``options`` out of their range, with
        PyTorch's messages (``Invalid learning rate: -1``), and also for NaN, which PyTorch
        lets through in places (``SGD(lr=nan)``) and which turns every parameter into NaN;
        a value that is not a number at all gets a TypeError naming the option."""
        for name, label in cls._non_negative + cls._not_nan:
            value = options.get(name, required)
            if value is required:  # SGD's lr when it is not given
                continue
            _check_number(name, label, value)
            least = 0.0 if (name, label) in cls._non_negative else -math.inf
            if not value >= least:  # NaN fails this too
                raise ValueError(f"Invalid {label}: {value}")
        if "betas" in options:
            betas = options["betas"]
            if not isinstance(betas, (tuple, list)):
                raise TypeError(f"Invalid betas: {betas!r} (expected a pair (beta1, beta2), "
                                f"got {type(betas).__name__})")
            if len(betas) != 2:
                raise ValueError(f"Invalid betas: {betas!r} (expected a pair (beta1, beta2))")
            for i, beta in enumerate(betas):
                _check_number(f"betas[{i}]", f"beta parameter at index {i}", beta)
                if not 0.0 <= beta < 1.0:
                    raise ValueError(f"Invalid beta parameter at index {i}: {beta}")

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.state = defaultdict(dict)  # parameter -> its state dict
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {type(params).__name__}"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (missing ones from defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one is {type(p)}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            group.setdefault(name, default)
        self._check_options(group)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if existing & {id(p) for p in group["params"]}:
            raise ValueError("some parameters appear in more than one parameter group")
        if len({id(p) for p in group["params"]}) != len(group["params"]):
            raise ValueError("a parameter group contains the same parameter twice")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized parameters, as PyTorch: to None (the default:
        nothing is written, and the next backward stores its gradients without adding), or
        with ``set_to_none=False`` to zeros in place, the gradient first taken out of any graph
        (``detach_``, so it no longer requires grad)."""
        for group in self.param_groups:
            for p in group["params"]:
                grad = p._grad
                if grad is None:
                    continue
                if set_to_none:
                    p._grad = None
                    continue
                if grad.grad_fn is not None or grad._requires_grad:
                    grad.detach_()
                grad._array[...] = 0
                grad._version[0] += 1

    def step(self, closure=None):
        """Update the parameters once; ``closure`` re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            from seqlib.core.autograd.grad_mode import enable_grad

            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p._grad is not None:
                    self._update(p, p._grad._array, self.state[p], group)
                    p._version[0] += 1
        return loss

    def _update(self, param: Tensor, grad, state: dict, group: dict) -> None:
        raise NotImplementedError

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{options, "params": [indices]}]}``."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = {
                        k: (Tensor._make(v.copy()) if hasattr(v, "shape") else v)
                        for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state from ``state_dict()`` (tensors moved to each parameter's device).

        Everything is checked before anything changes: a state dict that does not fit leaves
        the optimizer as it was.
        """
        by_index = self._check_state_dict(state_dict)
        for saved, own in zip(state_dict["param_groups"], self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    own[key] = copy.deepcopy(value)
        self.state = defaultdict(dict)
        for key, values in state_dict["state"].items():
            p = by_index[int(key)]
            self.state[p] = {name: _state_value(value, p) for name, value in values.items()}

    def _check_state_dict(self, state_dict) -> dict:
        """Raise ValueError unless ``state_dict`` fits this optimizer; returns the saved index
        -> parameter map."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError("loaded optimizer state dict must be a dict with 'state' and "
                             f"'param_groups', got {type(state_dict).__name__}")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(groups)} parameter groups, the optimizer has "
                f"{len(self.param_groups)}"
            )
        by_index = {}
        for saved, own in zip(groups, self.param_groups):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size "
                    f"of optimizer's group ({len(saved['params'])} vs {len(own['params'])})"
                )
            by_index.update(zip(saved["params"], own["params"]))
        for key, values in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                raise ValueError(f"loaded state dict has state for parameter {key}, which is in "
                                 "none of its parameter groups")
            for name, value in values.items():
                shape = tuple(getattr(value, "shape", ()))
                if shape and shape != tuple(p.shape):
                    raise ValueError(f"loaded state dict's {name!r} for parameter {key} has "
                                     f"shape {shape}, the parameter {tuple(p.shape)}")
        return by_index

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _check_number(name: str, label: str, value) -> None:
    """A TypeError naming the option unless ``value`` is a real number (not a bool, nor a
    Tensor: seqlib's optimizers take plain numbers)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"Invalid {label}: {value!r} ({name} must be a real number, got "
                        f"{type(value).__name__})")


def implementation_options(foreach: bool | None = None, differentiable: bool = False,
                           **others) -> dict:
    """PyTorch's choice-of-implementation options, checked as PyTorch checks them.

    In PyTorch ``foreach`` and ``fused`` pick between kernels that compute the same update, and
    ``capturable`` keeps the step count on the GPU for CUDA graphs. seqlib has one
    implementation per optimizer (Adam's GPU path is already one fused kernel per parameter),
    so these are accepted and stored in the parameter groups, like PyTorch, and change nothing.
    ``differentiable=True`` (an update autograd can see through) is refused: seqlib updates
    the parameters' arrays outside autograd.

    Args:
        foreach, differentiable: as in PyTorch.
        **others: the optimizer's other such options (``fused``, ``capturable``).
    Returns:
        the options to add to the optimizer's defaults.
    """
    fused = others.get("fused")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if fused and differentiable:
        raise RuntimeError("`fused` does not support `differentiable`")
    if differentiable:
        raise NotImplementedError("differentiable=True is not supported: seqlib's optimizers "
                                  "update the parameters outside autograd")
    return dict(foreach=foreach, differentiable=differentiable, **others)


def _state_value(value, param: Tensor):
    """A saved state entry as an array like the parameter's (floats in the parameter's dtype)."""
    if not hasattr(value, "shape"):
        return value
    array = value._array if isinstance(value, Tensor) else value
    xp = get_array_module(param._array)
    array = xp.asarray(array.get() if hasattr(array, "get") and xp.__name__ == "numpy" else array)
    if array.dtype.kind == "f":
        array = array.astype(param.dtype, copy=True)
    return array
