"""Transformer encoder and decoder layers and stacks, as fast-transformers 0.4 (post-LN)."""

from __future__ import annotations

import seqlib.core.functional as F
from seqlib.bias_activation import bias_activation
from seqlib.core import dtypes
from seqlib.core.masking import FullMask, LengthMask, check_mask
from seqlib.core.tensor import Tensor
from seqlib.events import EventDispatcher, IntermediateOutput
from seqlib.nn.containers import ModuleList
from seqlib.nn.layers import Dropout, LayerNorm, Linear
from seqlib.nn.module import Module
from seqlib.residual_norm import residual_layer_norm

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}
FUSED_NAMES = {F.relu: "relu", F.gelu: "gelu"}  # the activations bias_activation computes
FUSED_DTYPES = (dtypes.float32, dtypes.float64)


def activation_function(name: str):
    """The feed-forward activation by name ("relu" or "gelu")."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def add_feed_forward(layer: Module, d_model: int, d_ff: int | None, dropout: float,
                     activation: str, norms: int, event_dispatcher) -> None:
    """Give a transformer layer (parallel or recurrent) fast-transformers' feed-forward block
    ``linear1``/``linear2`` (``d_ff`` defaults to ``4 * d_model``), ``norm1..norm<norms>``,
    ``dropout``, ``activation`` and its event dispatcher."""
    d_ff = d_ff or 4 * d_model
    layer.linear1 = Linear(d_model, d_ff)
    layer.linear2 = Linear(d_ff, d_model)
    for i in range(1, norms + 1):
        setattr(layer, f"norm{i}", LayerNorm(d_model))
    layer.dropout = Dropout(dropout)
    layer.activation = activation_function(activation)
    layer.event_dispatcher = EventDispatcher.get(event_dispatcher)


def feed_forward(layer: Module, x: Tensor, norm: Module) -> Tensor:
    """The feed-forward half of a post-LN layer: ``norm(x + FF(x))`` with
    ``FF = dropout(linear2(dropout(activation(linear1(x)))))``.

    ``dropout(activation(linear1(x)))`` runs as one ``bias_activation`` after
    ``F.linear(x, weight)`` (bias, activation and dropout in row blocks) where
    ``fused_activation`` and ``foldable_dropout`` say that computes the same thing."""
    activation = fused_activation(layer, x)
    p = foldable_dropout(layer.dropout)
    if activation is None or p is None:
        y = layer.dropout(layer.activation(layer.linear1(x)))
    else:
        linear1 = layer.linear1
        y = bias_activation(F.linear(x, linear1.weight), linear1.bias, activation, dropout=p)
    return add_norm(norm, x, layer.linear2(y), layer.dropout)


def foldable_dropout(dropout: Module) -> float | None:
    """The probability that ``bias_activation`` may apply in place of calling ``dropout``
    (0.0 for an inactive one), or None where it must be called: not a plain ``Dropout``
    without hooks, or ``p == 1``."""
    if type(dropout) is not Dropout or not _plain_call(dropout):
        return None
    if not dropout.training or dropout.p == 0.0:
        return 0.0
    return dropout.p if dropout.p < 1.0 else None


def add_norm(norm: Module, x: Tensor, y: Tensor, dropout: Module | None = None) -> Tensor:
    """``norm(x + dropout(y))``: one ``residual_layer_norm`` (row blocks, the dropout folded
    in) where ``norm`` is a plain one-dimensional LayerNorm without hooks over ``x``'s last
    dim, ``dropout`` is None or foldable (``foldable_dropout``) and ``x``, ``y`` are
    float32/float64 CPU tensors of one shape and dtype (the parameters' too); else the
    modules."""
    p = 0.0 if dropout is None else foldable_dropout(dropout)
    weight = norm.weight if type(norm) is LayerNorm else None
    if (p is not None and type(norm) is LayerNorm and _plain_call(norm)
            and not (x.is_cuda or y.is_cuda) and x.dtype in FUSED_DTYPES and x.dtype == y.dtype
            and x.shape == y.shape and norm.normalized_shape == tuple(x.shape[-1:])
            and all(param is None or param.dtype == x.dtype for param in (weight, norm.bias))):
        return residual_layer_norm(x, y, weight, norm.bias, norm.eps, dropout=p)
    return norm(x + (y if dropout is None else dropout(y)))


def fused_activation(layer: Module, x: Tensor) -> str | None:
    """The name of ``layer``'s activation when ``bias_activation`` may stand in for
    ``activation(linear1(x))``: a plain ``Linear`` with a bias and no hooks, F.relu or F.gelu,
    and a float32/float64 input on the CPU of the parameters' dtype; else None."""
    linear1 = layer.linear1
    name = FUSED_NAMES.get(layer.activation)
    if (name is None or type(linear1) is not Linear or linear1.bias is None
            or x.is_cuda or x.dtype not in FUSED_DTYPES or not _plain_call(linear1)
            or linear1.weight.dtype != x.dtype or linear1.bias.dtype != x.dtype):
        return None
    return name


def _plain_call(module: Module) -> bool:
    """Whether calling ``module`` runs just its class's ``forward`` (no hooks, no ``forward``
    set on the instance)."""
    state = module.__dict__
    return not (state["_forward_hooks"] or state["_forward_pre_hooks"] or "forward" in state)


def _full_masks(x: Tensor, attn_mask, length_mask):
    check_mask("attn_mask", attn_mask)
    check_mask("length_mask", length_mask)
    N, L = x.shape[:2]
    if attn_mask is None:
        attn_mask = FullMask(L, device=x.device)
    if length_mask is None:
        length_mask = LengthMask(x.new_full((N,), L, dtype="int64"), L)
    return attn_mask, length_mask


class _LayerStack(Module):
    """What every stack (parallel or recurrent, encoder or decoder) holds: ``layers`` (a
    ModuleList), the final ``norm`` (or None) and an event dispatcher."""

    def __init__(self, layers, norm_layer: Module | None = None, event_dispatcher=""):
        super().__init__()
        self.layers = ModuleList(layers)
        self.norm = norm_layer
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)


class TransformerEncoderLayer(Module):
    """Self-attention then a feed-forward block, each added to its input and normalised.

    Args:
        attention: an AttentionLayer.
        d_model: the feature size.
        d_ff: the feed-forward size (default ``4 * d_model``).
        dropout: dropout after attention and in the feed-forward block.
        activation: "relu" or "gelu".
        event_dispatcher: an EventDispatcher or its key.
    Shape:
        ``x (N, L, d_model)`` -> ``(N, L, d_model)``.
    """

    def __init__(self, attention: Module, d_model: int, d_ff: int | None = None,
                 dropout: float = 0.1, activation: str = "relu", event_dispatcher=""):
        super().__init__()
        self.attention = attention
        add_feed_forward(self, d_model, d_ff, dropout, activation, 2, event_dispatcher)

    def forward(self, x: Tensor, attn_mask=None, length_mask=None) -> Tensor:
        attn_mask, length_mask = _full_masks(x, attn_mask, length_mask)
        attended = self.attention(x, x, x, attn_mask=attn_mask, query_lengths=length_mask,
                                  key_lengths=length_mask)
        return feed_forward(self, add_norm(self.norm1, x, attended, self.dropout), self.norm2)


class TransformerEncoder(_LayerStack):
    """A stack of encoder layers with an optional final norm.

    Args:
        layers: the TransformerEncoderLayers.
        norm_layer: applied after the last layer (or None).
        event_dispatcher: an EventDispatcher or its key.
    """

    def forward(self, x: Tensor, attn_mask=None, length_mask=None) -> Tensor:
        attn_mask, length_mask = _full_masks(x, attn_mask, length_mask)
        for layer in self.layers:
            x = layer(x, attn_mask=attn_mask, length_mask=length_mask)
            if self.event_dispatcher.listening:
                self.event_dispatcher.dispatch(IntermediateOutput(layer, x))
        if self.norm is not None:
            x = self.norm(x)
        return x


class TransformerDecoderLayer(Module):
    """Self-attention, cross-attention to a memory, then a feed-forward block (post-LN).

    Args:
        self_attention, cross_attention: AttentionLayers.
        d_model, d_ff, dropout, activation, event_dispatcher: as for the encoder layer.
    Shape:
        ``x (N, L, d_model)``, ``memory (N, S, d_model)`` -> ``(N, L, d_model)``.
    """

    def __init__(self, self_attention: Module, cross_attention: Module, d_model: int,
                 d_ff: int | None = None, dropout: float = 0.1, activation: str = "relu",
                 event_dispatcher=""):
        super().__init__()
        self.self_attention = self_attention
        self.cross_attention = cross_attention
        add_feed_forward(self, d_model, d_ff, dropout, activation, 3, event_dispatcher)

    def forward(self, x: Tensor, memory: Tensor, x_mask=None, x_length_mask=None,
                memory_mask=None, memory_length_mask=None) -> Tensor:
        N, L = x.shape[:2]
        S = memory.shape[1]
        x_mask, x_length_mask = _full_masks(x, x_mask, x_length_mask)
        check_mask("memory_mask", memory_mask)
        check_mask("memory_length_mask", memory_length_mask)
        if memory_mask is None:
            memory_mask = FullMask(L, S, device=x.device)
        if memory_length_mask is None:
            memory_length_mask = LengthMask(x.new_full((N,), S, dtype="int64"), S)
        x = add_norm(self.norm1, x, self.self_attention(
            x, x, x, attn_mask=x_mask, query_lengths=x_length_mask, key_lengths=x_length_mask),
            self.dropout)
        x = add_norm(self.norm2, x, self.cross_attention(
            x, memory, memory, attn_mask=memory_mask, query_lengths=x_length_mask,
            key_lengths=memory_length_mask), self.dropout)
        return feed_forward(self, x, self.norm3)


class TransformerDecoder(_LayerStack):
    """A stack of decoder layers with an optional final norm.

    Args:
        layers: the TransformerDecoderLayers.
        norm_layer: applied after the last layer (or None).
        event_dispatcher: an EventDispatcher or its key.
    """

    def forward(self, x: Tensor, memory: Tensor, x_mask=None, x_length_mask=None,
                memory_mask=None, memory_length_mask=None) -> Tensor:
        for layer in self.layers:
            x = layer(x, memory, x_mask=x_mask, x_length_mask=x_length_mask,
                      memory_mask=memory_mask, memory_length_mask=memory_length_mask)
            if self.event_dispatcher.listening:
                self.event_dispatcher.dispatch(IntermediateOutput(layer, x))
        if self.norm is not None:
            x = self.norm(x)
        return x
