"""Registries of attention types with typed parameter specs, as fast-transformers' builders
use them: each attention registers itself by name with the parameters it accepts."""

from __future__ import annotations

import difflib


class Spec:
    """The type of one builder parameter: checks a value and names what it expects."""

    def __init__(self, name: str, check):
        self.name, self.check = name, check

    def __repr__(self) -> str:
        return self.name

    def validate(self, value) -> bool:
        """True if ``value`` fits this spec."""
        return self.check(value)

    def get(self, value):
        """The value to pass on (specs may normalise it)."""
        return value


def _number(value, kinds) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)


Int = Spec("Int", lambda v: _number(v, int))
PositiveInt = Spec("Int >= 1", lambda v: _number(v, int) and v >= 1)
Float = Spec("Float", lambda v: _number(v, (int, float)))
Probability = Spec("Float in [0, 1]", lambda v: _number(v, (int, float)) and 0 <= v <= 1)
Bool = Spec("Bool", lambda v: isinstance(v, bool))
String = Spec("String", lambda v: isinstance(v, str))
Callable = Spec("Callable", callable)


class Choice(Spec):
    """One of a fixed set of values."""

    def __init__(self, choices):
        self.choices = tuple(choices)
        super().__init__(f"Choice{list(self.choices)}", lambda v: v in self.choices)


class Optional(Spec):
    """``spec`` or None, with a default used when the parameter is not given."""

    def __init__(self, spec: Spec, default=None):
        self.spec, self.default = spec, default
        super().__init__(f"Optional[{spec!r}]", lambda v: v is None or spec.validate(v))


def _is_dispatcher(value) -> bool:
    from seqlib.events import EventDispatcher

    return isinstance(value, (str, EventDispatcher))


EventDispatcherInstance = Spec("EventDispatcherInstance", _is_dispatcher)


def _is_module(value) -> bool:
    from seqlib.nn.module import Module

    return isinstance(value, Module)


AttentionInstance = Spec("AttentionInstance", _is_module)


def closest(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the nearest valid name, or ''."""
    match = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


class Registry:
    """Attention types by name: ``register(name, cls, [(parameter, spec), ...])``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes = {}
        self._parameters = {}  # parameter name -> spec, across all registered types

    def register(self, name: str, cls, parameters) -> None:
        """Make ``cls`` available under ``name``, accepting the typed ``parameters``."""
        if name in self._classes:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        self._classes[name] = (cls, [p for p, _ in parameters])
        for parameter, spec in parameters:
            if parameter in self._parameters and repr(self._parameters[parameter]) != repr(spec):
                raise ValueError(
                    f"parameter {parameter!r} of {name!r} is {spec!r} but another attention "
                    f"registered it as {self._parameters[parameter]!r}"
                )
            self._parameters[parameter] = spec

    def __contains__(self, name: str) -> bool:
        return name in self._classes

    def __getitem__(self, name: str):
        if name not in self._classes:
            raise ValueError(
                f"unknown {self.kind} {name!r}{closest(name, self._classes)}; available: "
                f"{sorted(self._classes)}"
            )
        return self._classes[name]

    @property
    def keys(self) -> list:
        return sorted(self._classes)

    @property
    def parameters(self) -> dict:
        return dict(self._parameters)

    def spec(self, parameter: str) -> Spec:
        """The registered spec of ``parameter``."""
        return self._parameters[parameter]

    def validate_parameter(self, parameter: str, value) -> None:
        """Raise a clear error unless ``value`` fits the registered spec of ``parameter``."""
        if parameter not in self._parameters:
            raise AttributeError(
                f"{parameter!r} is not a parameter of any {self.kind}"
                f"{closest(parameter, self._parameters)}; valid: {sorted(self._parameters)}"
            )
        spec = self._parameters[parameter]
        if not spec.validate(value):
            raise ValueError(
                f"{parameter}: expected {spec!r}, got {value!r} ({type(value).__name__})"
            )


AttentionRegistry = Registry("attention")
RecurrentAttentionRegistry = Registry("recurrent attention")
RecurrentCrossAttentionRegistry = Registry("recurrent cross-attention")
