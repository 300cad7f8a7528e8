"""Module: the base class of layers, with PyTorch's registration, state_dict and hooks."""

from __future__ import annotations

import weakref
from collections import OrderedDict, namedtuple

from seqlib.core.autograd.grad_mode import no_grad
from seqlib.core.ops.convert import to_arguments
from seqlib.core.tensor import Tensor
from seqlib.nn.parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class RemovableHandle:
    """Returned by hook registration; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: dict, key: int, module: Module | None = None):
        self._hooks, self._key = hooks, key
        self._module = None if module is None else weakref.ref(module)  # told of the change

    def remove(self) -> None:
        """Unregister the hook (again is harmless)."""
        self._hooks.pop(self._key, None)
        module = None if self._module is None else self._module()
        if module is not None:
            module._changed()


class _Readers(weakref.WeakSet):
    """The fused steps built from a module (``seqlib.recurrent.fused``), to tell when it
    changes. A copied or unpickled module starts without: its steps are its own."""

    def __reduce__(self):
        return (_Readers, ())

    def __deepcopy__(self, memo):
        return _Readers()


class Module:
    """Base class for all layers: holds parameters, buffers and submodules by attribute name."""

    def __init__(self):
        set_ = object.__setattr__
        set_(self, "training", True)
        set_(self, "_parameters", OrderedDict())  # name -> Parameter or None
        set_(self, "_buffers", OrderedDict())  # name -> Tensor or None
        set_(self, "_non_persistent", set())  # buffer names left out of state_dict
        set_(self, "_modules", OrderedDict())  # name -> Module or None
        set_(self, "_forward_hooks", OrderedDict())
        set_(self, "_forward_pre_hooks", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"Module [{type(self).__name__}] is missing the 'forward' method")

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ---- registration ----------------------------------------------------------------
    def _check_init(self, name: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign '{name}' before Module.__init__() call (call super().__init__())"
            )

    def __setattr__(self, name: str, value) -> None:
        if self.__dict__.get("_readers"):
            self._changed()
        if isinstance(value, Parameter):
            self._check_init(name)
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._check_init(name)
            self._forget(name)
            self._modules[name] = value
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                    "(seqlib.nn.Parameter or None expected)"
                )
            self._parameters[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                    "(Tensor or None expected)"
                )
            self._buffers[name] = value
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module '{name}' "
                    "(Module or None expected)"
                )
            self._modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        self._changed()
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name: str):
        state = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in state and name in state[registry]:
                return state[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        self._changed()
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a None placeholder) under ``name``."""
        self._check_init(name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                "(seqlib.nn.Parameter or None required)"
            )
        _check_name(name, self, "parameter")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a tensor that is state but not a parameter (saved in state_dict if persistent)."""
        self._check_init(name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                "(Tensor or None required)"
            )
        _check_name(name, self, "buffer")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name``."""
        self._check_init(name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        _check_name(name, self, "module")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    # ---- traversal -----------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate=True):
        """Yield ``(name, module)`` for this module and all below it (each module once)."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                child = f"{prefix}.{name}" if prefix else name
                yield from module.named_modules(memo, child, remove_duplicate)

    def modules(self):
        """Yield this module and every module below it, each once."""
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        """Yield ``(name, module)`` for the direct submodules."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        """Yield the direct submodules."""
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate=True):
        """Yield ``(dotted_name, parameter)``; shared parameters once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        """Yield every parameter (below this module too, if ``recurse``), each once."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate=True):
        """Yield ``(dotted_name, buffer)``; shared buffers once."""
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        """Yield every buffer (below this module too, if ``recurse``)."""
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def get_submodule(self, target: str) -> Module:
        """The submodule at dotted path ``target`` ("" is this module)."""
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules:
                raise AttributeError(f"{type(module).__name__} has no submodule '{part}'")
            module = module._modules[part]
        return module

    # ---- state -------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by dotted name (detached unless keep_vars)."""
        destination = OrderedDict() if destination is None else destination
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent:
                destination[prefix + name] = buffer if keep_vars else buffer.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into this module's parameters and buffers by name.

        Args:
            state_dict: a mapping from dotted names to tensors (or arrays).
            strict: raise unless the keys match exactly.
        Returns:
            ``(missing_keys, unexpected_keys)``.
        Raises:
            RuntimeError: listing every shape mismatch (always) and every missing or
                unexpected key (when strict), with expected and found shapes.
        """
        own = self.state_dict(keep_vars=True)
        incompatible = self._check_state_dict(state_dict, strict)
        from seqlib.core.creation import as_tensor

        with no_grad():
            for key, target in own.items():
                if key in state_dict:
                    target.copy_(as_tensor(state_dict[key]))
        for module in self.modules():  # explicit, though fused steps read arrays in place
            module._changed()
        return incompatible

    def _check_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """What ``load_state_dict`` would report, without changing anything: lets a caller
        that loads several objects validate them all first (all-or-nothing loads).

        Args:
            state_dict: a mapping from dotted names to tensors (or arrays).
            strict: missing or unexpected keys are errors.
        Returns:
            ``(missing_keys, unexpected_keys)``.
        Raises:
            RuntimeError: as ``load_state_dict``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        errors = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            shape = tuple(getattr(value, "shape", ()))
            if shape != tuple(target.shape):
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {shape} from "
                    f"checkpoint, the shape in current model is {tuple(target.shape)}."
                )
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ".")
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        return IncompatibleKeys(missing, unexpected)

    # ---- modes and conversion -------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active) on this module and all below it."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
            module._changed()
        return self

    def eval(self) -> Module:
        """Set evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` on every parameter; returns self."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters (to None, or to zeros)."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.detach_().zero_()

    def apply(self, fn) -> Module:
        """Call ``fn(module)`` on every submodule (children first) and then on self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def to(self, *args, device=None, dtype=None, non_blocking=None) -> Module:
        """Move parameters and buffers to ``device`` and/or cast the floating ones to ``dtype``.

        Accepts ``to(device)``, ``to(dtype)``, ``to(device, dtype)`` and ``to(tensor)``.
        """
        device, dtype = to_arguments(args, device, dtype)

        def move(t: Tensor) -> Tensor:
            cast = dtype if dtype is not None and t.is_floating_point() else None
            return t.detach().to(device=device, dtype=cast)

        with no_grad():
            for module in self.modules():
                for param in module._parameters.values():
                    if param is not None:
                        param.data = move(param)
                        if param._grad is not None:
                            param._grad = move(param._grad)
                for name, buffer in module._buffers.items():
                    if buffer is not None:
                        module._buffers[name] = move(buffer)
                module._changed()
        return self

    def cuda(self, device=None) -> Module:
        """Move everything to CUDA device ``device`` (default 0); returns self."""
        return self.to("cuda" if device is None else f"cuda:{device}")

    def cpu(self) -> Module:
        """Move everything to the CPU; returns self."""
        return self.to("cpu")

    def float(self) -> Module:
        """Cast floating parameters and buffers to float32; returns self."""
        return self.to(dtype="float32")

    def double(self) -> Module:
        """Cast floating parameters and buffers to float64; returns self."""
        return self.to(dtype="float64")

    def half(self) -> Module:
        """Cast floating parameters and buffers to float16; returns self."""
        return self.to(dtype="float16")

    # ---- hooks -------------------------------------------------------------------------
    def register_forward_hook(self, hook) -> RemovableHandle:
        """``hook(module, args, output)`` runs after forward; a non-None return replaces output."""
        key = id(hook) ^ len(self._forward_hooks) << 32
        self._forward_hooks[key] = hook
        self._changed()
        return RemovableHandle(self._forward_hooks, key, self)

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """``hook(module, args)`` runs before forward; a non-None return replaces args."""
        key = id(hook) ^ len(self._forward_pre_hooks) << 32
        self._forward_pre_hooks[key] = hook
        self._changed()
        return RemovableHandle(self._forward_pre_hooks, key, self)

    # ---- fused steps ---------------------------------------------------------------------
    def _add_reader(self, step) -> None:
        """Call ``step.invalidate()`` when this module's attributes, submodules, parameter
        assignments, mode or hooks change (a fused step built from them is then stale)."""
        readers = self.__dict__.get("_readers")
        if readers is None:
            readers = self.__dict__["_readers"] = _Readers()
        readers.add(step)

    def _changed(self) -> None:
        """Invalidate the fused steps that read this module (see ``_add_reader``)."""
        readers = self.__dict__.get("_readers")
        if readers:
            for step in list(readers):
                step.invalidate()
            readers.clear()

    # ---- printing ----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}(" + (f"\n  {extra}" if extra else "")
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))


def _check_name(name: str, module: Module, kind: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if not name or "." in name:
        raise KeyError(f'{kind} name can\'t be empty or contain ".", got "{name}"')
    if hasattr(type(module), name):
        raise KeyError(f"attribute '{name}' already exists")
