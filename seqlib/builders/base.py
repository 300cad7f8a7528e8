"""Builder basics: attribute bags with typed fields, built from kwargs, dicts or namespaces."""

from __future__ import annotations

from seqlib.attention_registry import closest


class BaseBuilder:
    """Set parameters as attributes, then call ``get()``."""

    def _accepts(self, name: str) -> bool:
        raise NotImplementedError

    @classmethod
    def from_kwargs(cls, strict: bool = True, **kwargs):
        """A builder with the given parameters; unknown names raise unless ``strict=False``."""
        return cls.from_dictionary(kwargs, strict)

    @classmethod
    def from_dictionary(cls, dictionary: dict, strict: bool = True):
        """A builder with the parameters in ``dictionary``."""
        builder = cls()
        for name, value in dictionary.items():
            if not strict and not builder._accepts(name):
                continue
            setattr(builder, name, value)
        return builder

    @classmethod
    def from_namespace(cls, args, strict: bool = False):
        """A builder from an ``argparse.Namespace``; other arguments are skipped unless strict."""
        return cls.from_dictionary(vars(args), strict)

    def get(self):
        """Build the object described by the parameters set so far."""
        raise NotImplementedError


class AttentionBuilderBase(BaseBuilder):
    """Builds attentions registered in ``registry`` from the parameters set on it.

    ``get("conditional-full:local")`` composes: each attention to the left receives the one to
    its right as its ``attention`` parameter.
    """

    def __init__(self, registry):
        object.__setattr__(self, "_registry", registry)
        object.__setattr__(self, "_parameters", {})

    def _accepts(self, name: str) -> bool:
        return name in self._registry.parameters

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        self._registry.validate_parameter(name, value)
        self._parameters[name] = value

    def __getattr__(self, name: str):
        parameters = self.__dict__.get("_parameters", {})
        if name in parameters:
            return parameters[name]
        registry = self.__dict__.get("_registry")
        if registry is not None and name in registry.parameters:
            spec = registry.spec(name)
            return getattr(spec, "default", None)
        raise AttributeError(
            f"{name!r} is not an attention parameter{closest(name, registry.parameters)}"
        )

    @property
    def available_attentions(self) -> list:
        return self._registry.keys

    def validate_attention_type(self, attention_type: str) -> None:
        """Raise, naming the valid types, unless every part of ``attention_type`` is registered."""
        if not isinstance(attention_type, str):
            raise ValueError(f"attention_type must be a str, got {attention_type!r}")
        for name in attention_type.split(":"):
            self._registry[name]  # raises naming the valid types

    def get(self, attention_type: str, defaults: dict | None = None):
        """Construct the attention ``attention_type`` (e.g. "full", "conditional-full:local").

        ``defaults`` fill parameters that were not set on this builder (a transformer builder
        passes its query_dimensions and event dispatcher this way)."""
        self.validate_attention_type(attention_type)
        defaults = defaults or {}
        attention = None
        for name in reversed(attention_type.split(":")):
            cls, parameters = self._registry[name]
            arguments = {}
            for parameter in parameters:
                if parameter == "attention":
                    arguments[parameter] = attention
                    continue
                fallback = defaults.get(parameter, getattr(self._registry.spec(parameter),
                                                           "default", None))
                value = self._parameters.get(parameter, fallback)
                if value is None and not hasattr(self._registry.spec(parameter), "default"):
                    raise ValueError(
                        f"attention {name!r} needs the parameter {parameter!r} "
                        f"({self._registry.spec(parameter)!r}); set it on the builder"
                    )
                arguments[parameter] = value
            attention = cls(**arguments)
        return attention
