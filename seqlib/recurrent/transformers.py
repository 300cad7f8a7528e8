"""Recurrent transformer layers and stacks: one position per call, ``(y, state) = f(x, state)``.

Their parameters have the same names as the parallel models', so
``recurrent.load_state_dict(parallel.state_dict())`` (or ``make_mirror``) connects the two.
"""

from __future__ import annotations

from seqlib.core.autograd.grad_mode import is_grad_enabled
from seqlib.core.functional.normalization import layer_norm_rows
from seqlib.core.tensor import Tensor
from seqlib.nn.module import Module
from seqlib.recurrent import fused
from seqlib.recurrent.attention import check_step_input
from seqlib.recurrent.step_maths import array_activation, feed_forward_rows
from seqlib.transformers import _LayerStack, add_feed_forward, feed_forward


class RecurrentTransformerEncoderLayer(Module):
    """The recurrent twin of TransformerEncoderLayer.

    Args: as ``TransformerEncoderLayer`` with a RecurrentAttentionLayer.
    Shape:
        ``x (N, d_model)`` -> ``((N, d_model), state)``.
    """

    def __init__(self, attention: Module, d_model: int, d_ff: int | None = None,
                 dropout: float = 0.1, activation: str = "relu", event_dispatcher=""):
        super().__init__()
        self.attention = attention
        add_feed_forward(self, d_model, d_ff, dropout, activation, 2, event_dispatcher)

    def forward(self, x: Tensor, state=None):
        if not is_grad_enabled():
            step = fused.step_fn(self).run(x, state)
            if step is not None:
                return step
        check_step_input(self, x, self.linear1.in_features)
        attended, state = self.attention(x, x, x, state)
        x = x + self.dropout(attended)
        return feed_forward(self, self.norm1(x), self.norm2), state

    def step_fn(self) -> fused.FusedStep:
        """This layer's fused inference step (``step(x, state)``; see ``FusedStep``)."""
        return fused.step_fn(self)

    def array_function(self, reads):
        """The layer's step on arrays, ``(x (N, d_model), state) -> (y, state)``, or None."""
        attention = reads.part(self, "attention")
        linear1 = fused.linear_arrays(reads, self, "linear1")
        linear2 = fused.linear_arrays(reads, self, "linear2")
        norm1 = fused.layer_norm_arrays(reads, self, "norm1")
        norm2 = fused.layer_norm_arrays(reads, self, "norm2")
        activation = array_activation(reads.get(self, "activation"))
        if (any(part is None for part in (attention, linear1, linear2, norm1, norm2))
                or not fused.is_identity_dropout(reads, self, "dropout")):
            return None

        d_model = linear1[0].shape[1]

        def step(x, state):
            if x.shape[1] != d_model:  # the module raises the error
                return None
            attended = attention(x, state)
            if attended is None:
                return None
            h, state = attended
            h += x
            h = layer_norm_rows(h, *norm1, in_place=True)[0]
            y = feed_forward_rows(h, linear1, activation, linear2)
            y += h
            return layer_norm_rows(y, *norm2, in_place=True)[0], state

        return step


class RecurrentTransformerEncoder(_LayerStack):
    """A stack of recurrent encoder layers; the state is a list with one entry per layer."""

    def forward(self, x: Tensor, state=None):
        if not is_grad_enabled():
            step = fused.step_fn(self).run(x, state)
            if step is not None:
                return step
        if len(self.layers):
            check_step_input(self, x, self.layers[0].linear1.in_features)
        state = _layer_states(state, len(self.layers))
        for i, layer in enumerate(self.layers):
            x, state[i] = layer(x, state[i])
        if self.norm is not None:
            x = self.norm(x)
        return x, state

    def step_fn(self) -> fused.FusedStep:
        """The whole stack's fused inference step (``step(x, state)``; see ``FusedStep``)."""
        return fused.step_fn(self)

    def array_function(self, reads):
        """The stack's step on arrays, ``(x (N, d_model), state) -> (y, state)``, or None."""
        layers = reads.get(self, "layers")
        steps = [reads.part(layers, name) for name in reads.children(layers)]
        norm = None
        if reads.get(self, "norm") is not None:
            norm = fused.layer_norm_arrays(reads, self, "norm")
            if norm is None:
                return None
        if not steps or any(step is None for step in steps):
            return None

        def step(x, state):
            if state is not None and not (isinstance(state, (list, tuple))
                                          and len(state) == len(steps)):
                return None
            new_state = []
            for i, layer_step in enumerate(steps):
                result = layer_step(x, None if state is None else state[i])
                if result is None:
                    return None
                x, layer_state = result
                new_state.append(layer_state)
            if norm is not None:
                x = layer_norm_rows(x, *norm, in_place=True)[0]
            return x, new_state

        return step


def _layer_states(state, count: int) -> list:
    if state is None:
        return [None] * count
    if len(state) != count:
        raise ValueError(f"the state has {len(state)} entries, expected one per layer ({count})")
    return list(state)


class RecurrentTransformerDecoderLayer(Module):
    """The recurrent twin of TransformerDecoderLayer.

    State: ``[self_attention_state, cross_attention_state]``.
    Shape:
        ``x (N, d_model)``, ``memory (N, S, d_model)`` -> ``((N, d_model), state)``.
    """

    def __init__(self, self_attention: Module, cross_attention: Module, d_model: int,
                 d_ff: int | None = None, dropout: float = 0.1, activation: str = "relu",
                 event_dispatcher=""):
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        add_feed_forward(self, d_model, d_ff, dropout, activation, 3, event_dispatcher)

    def forward(self, x: Tensor, memory: Tensor, memory_length_mask=None, state=None):
        self_state, cross_state = state if state is not None else (None, None)
        attended, self_state = self.self_attention(x, x, x, self_state)
        x = self.norm1(x + self.dropout(attended))
        attended, cross_state = self.cross_attention(x, memory, memory, memory_length_mask,
                                                     cross_state)
        x = self.norm2(x + self.dropout(attended))
        return feed_forward(self, x, self.norm3), [self_state, cross_state]


class RecurrentTransformerDecoder(_LayerStack):
    """A stack of recurrent decoder layers; the state holds one entry per layer."""

    def forward(self, x: Tensor, memory: Tensor, memory_length_mask=None, state=None):
        state = _layer_states(state, len(self.layers))
        for i, layer in enumerate(self.layers):
            x, state[i] = layer(x, memory, memory_length_mask, state[i])
        if self.norm is not None:
            x = self.norm(x)
        return x, state


def make_mirror(source: Module, target: Module) -> None:
    """Make ``target`` use ``source``'s parameters and buffers (the same tensor objects), so
    training one updates the other. Their names and shapes must match."""
    source_params = dict(source.named_parameters(remove_duplicate=False))
    target_params = dict(target.named_parameters(remove_duplicate=False))
    if source_params.keys() != target_params.keys():
        missing = sorted(source_params.keys() ^ target_params.keys())
        raise ValueError(f"make_mirror: the models' parameter names differ: {missing}")
    for name, param in source_params.items():
        if param.shape != target_params[name].shape:
            raise ValueError(
                f"make_mirror: {name} has shape {tuple(param.shape)} in the source and "
                f"{tuple(target_params[name].shape)} in the target"
            )
        *path, leaf = name.split(".")
        owner = target.get_submodule(".".join(path))
        owner._parameters[leaf] = param
        owner._changed()  # its fused steps also see the new Parameter by identity
