"""Builders of transformer encoders and decoders, parallel and recurrent, with
fast-transformers' parameters and defaults. Parameters the transformer builder does not know
go to its attention builder(s), so ``from_kwargs(attention_type="linear", feature_map=...)``
works in one call."""

from __future__ import annotations

from seqlib.attention import AttentionLayer
from seqlib.attention_registry import (
    Bool,
    Choice,
    EventDispatcherInstance,
    PositiveInt,
    Probability,
    closest,
)
from seqlib.builders.attention_builders import (
    AttentionBuilder,
    RecurrentAttentionBuilder,
    RecurrentCrossAttentionBuilder,
)
from seqlib.builders.base import BaseBuilder
from seqlib.nn.layers import LayerNorm
from seqlib.recurrent import (
    RecurrentAttentionLayer,
    RecurrentCrossAttentionLayer,
    RecurrentTransformerDecoder,
    RecurrentTransformerDecoderLayer,
    RecurrentTransformerEncoder,
    RecurrentTransformerEncoderLayer,
)
from seqlib.transformers import (
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

# name -> (spec, default), fast-transformers 0.4's transformer parameters
FIELDS = {
    "n_layers": (PositiveInt, 4),
    "n_heads": (PositiveInt, 4),
    "feed_forward_dimensions": (PositiveInt, 1024),
    "query_dimensions": (PositiveInt, 64),
    "value_dimensions": (PositiveInt, 64),
    "dropout": (Probability, 0.1),
    "activation": (Choice(["relu", "gelu"]), "relu"),
    "final_normalization": (Bool, True),
    "event_dispatcher": (EventDispatcherInstance, ""),
}


class BaseTransformerBuilder(BaseBuilder):
    """Typed transformer parameters plus named attention builders that receive the rest."""

    fields = FIELDS
    attention_fields = {}  # attention-type field -> name of the attention builder it selects

    def __init__(self):
        object.__setattr__(self, "_values", {name: d for name, (_, d) in self.fields.items()})
        for field in self.attention_fields:
            self._values[field] = "full"
        object.__setattr__(self, "_explicit", set())

    def _attention_builders(self) -> list:
        return [getattr(self, name) for name in dict.fromkeys(self.attention_fields.values())]

    def _accepts(self, name: str) -> bool:
        return (name in self.fields or name in self.attention_fields
                or any(b._accepts(name) for b in self._attention_builders()))

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        elif name in self.fields:
            spec = self.fields[name][0]
            if not spec.validate(value):
                raise ValueError(
                    f"{name}: expected {spec!r}, got {value!r} ({type(value).__name__})"
                )
            self._values[name] = value
            self._explicit.add(name)
        elif name in self.attention_fields:
            getattr(self, self.attention_fields[name]).validate_attention_type(value)
            self._values[name] = value
        else:
            targets = [b for b in self._attention_builders() if b._accepts(name)]
            if not targets:
                valid = sorted({*self.fields, *self.attention_fields,
                                *(p for b in self._attention_builders()
                                  for p in b._registry.parameters)})
                raise AttributeError(
                    f"{type(self).__name__} has no parameter {name!r}{closest(name, valid)}; "
                    f"valid parameters: {valid}"
                )
            for builder in targets:
                setattr(builder, name, value)

    def __getattr__(self, name: str):
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__} has no parameter {name!r}")

    def _attention(self, builder_name: str, type_field: str):
        """Build one attention; the transformer's query_dimensions and event dispatcher reach it
        unless set on the attention builder itself (fast-transformers 0.4 fails without)."""
        defaults = {"query_dimensions": self.query_dimensions,
                    "event_dispatcher": self.event_dispatcher}
        return getattr(self, builder_name).get(self._values[type_field], defaults)

    @property
    def model_dimensions(self) -> int:
        return self.value_dimensions * self.n_heads

    def _final_norm(self):
        return LayerNorm(self.model_dimensions) if self.final_normalization else None


class _EncoderBuilder(BaseTransformerBuilder):
    attention_fields = {"attention_type": "attention"}
    encoder, layer, attention_layer, attention_builder = None, None, None, None

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "attention", type(self).attention_builder())

    def get(self):
        """The encoder described by the parameters."""
        d = self.model_dimensions
        layers = [
            self.layer(
                self.attention_layer(self._attention("attention", "attention_type"), d,
                                     self.n_heads, d_keys=self.query_dimensions,
                                     d_values=self.value_dimensions,
                                     event_dispatcher=self.event_dispatcher),
                d, self.feed_forward_dimensions, self.dropout, self.activation,
                event_dispatcher=self.event_dispatcher)
            for _ in range(self.n_layers)
        ]
        return self.encoder(layers, self._final_norm(), event_dispatcher=self.event_dispatcher)


class TransformerEncoderBuilder(_EncoderBuilder):
    """Builds a TransformerEncoder (default attention "full")."""

    encoder, layer, attention_layer = TransformerEncoder, TransformerEncoderLayer, AttentionLayer
    attention_builder = AttentionBuilder


class RecurrentEncoderBuilder(_EncoderBuilder):
    """Builds the RecurrentTransformerEncoder twin of TransformerEncoderBuilder."""

    encoder, layer = RecurrentTransformerEncoder, RecurrentTransformerEncoderLayer
    attention_layer, attention_builder = RecurrentAttentionLayer, RecurrentAttentionBuilder


class _DecoderBuilder(BaseTransformerBuilder):
    attention_fields = {"self_attention_type": "self_attention",
                        "cross_attention_type": "cross_attention"}
    decoder = layer = self_layer = cross_layer = self_builder = cross_builder = None

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "self_attention", type(self).self_builder())
        object.__setattr__(self, "cross_attention", type(self).cross_builder())

    def get(self):
        """The decoder described by the parameters."""
        d = self.model_dimensions

        def attention_layer(cls, builder, field):
            return cls(self._attention(builder, field), d, self.n_heads,
                       d_keys=self.query_dimensions, d_values=self.value_dimensions,
                       event_dispatcher=self.event_dispatcher)

        layers = [
            self.layer(attention_layer(self.self_layer, "self_attention", "self_attention_type"),
                       attention_layer(self.cross_layer, "cross_attention",
                                       "cross_attention_type"),
                       d, self.feed_forward_dimensions, self.dropout, self.activation,
                       event_dispatcher=self.event_dispatcher)
            for _ in range(self.n_layers)
        ]
        return self.decoder(layers, self._final_norm(), event_dispatcher=self.event_dispatcher)


class TransformerDecoderBuilder(_DecoderBuilder):
    """Builds a TransformerDecoder (self and cross attention default to "full")."""

    decoder, layer = TransformerDecoder, TransformerDecoderLayer
    self_layer = cross_layer = AttentionLayer
    self_builder = cross_builder = AttentionBuilder


class RecurrentDecoderBuilder(_DecoderBuilder):
    """Builds the RecurrentTransformerDecoder twin of TransformerDecoderBuilder."""

    decoder, layer = RecurrentTransformerDecoder, RecurrentTransformerDecoderLayer
    self_layer, cross_layer = RecurrentAttentionLayer, RecurrentCrossAttentionLayer
    self_builder, cross_builder = RecurrentAttentionBuilder, RecurrentCrossAttentionBuilder
