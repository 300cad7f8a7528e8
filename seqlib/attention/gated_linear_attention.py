"""Gated causal linear attention: the past fades by a gate computed from the input, per
position and head (Gated Linear Attention, Yang et al. 2023, with a scalar gate per head)."""

from __future__ import annotations

import math

import seqlib.core.functional as F
from seqlib.attention.causal_linear_attention import _match_length
from seqlib.attention_registry import (
    AttentionRegistry,
    EventDispatcherInstance,
    Float,
    Int,
    Optional,
)
from seqlib.core.tensor import Tensor
from seqlib.decayed_product import decayed_dot_product, log_sigmoid
from seqlib.events import EventDispatcher
from seqlib.nn.layers import Linear
from seqlib.nn.module import Module

NORM_EPS = 1e-5  # of the per-head LayerNorm on the output


class GatedAttentionBase(Module):
    """What the parallel gated attention and its recurrent twin share: the gate's parameters
    (``gate_projection``, so the twin loads the parallel model's state_dict) and how they
    make the log decays, the query scale and the output norm.

    Args:
        query_dimensions: the size E of queries and keys per head.
        gate_temperature: ``tau`` in ``log alpha = log_sigmoid(k . w + b) / tau``.
        event_dispatcher: an EventDispatcher or its key.
    """

    def __init__(self, query_dimensions: int, gate_temperature: float = 16.0,
                 event_dispatcher=""):
        super().__init__()
        if not gate_temperature > 0:
            raise ValueError(f"{type(self).__name__}: gate_temperature must be > 0, got "
                             f"{gate_temperature!r}")
        self.gate_projection = Linear(query_dimensions, 1)
        self.gate_temperature = float(gate_temperature)
        self.scale = 1 / math.sqrt(query_dimensions)
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)

    def log_decays(self, keys: Tensor) -> Tensor:
        """``log alpha`` ``(...)`` of keys ``(..., E)``: each head's gate from its own key."""
        return log_sigmoid(self.gate_projection(keys)[..., 0]) * (1 / self.gate_temperature)

    @staticmethod
    def normalized(heads: Tensor) -> Tensor:
        """The per-head LayerNorm of the output ``(..., M)``, without affine parameters (the
        out projection that follows would absorb them)."""
        return F.layer_norm(heads, heads.shape[-1], eps=NORM_EPS)


class GatedCausalLinearAttention(GatedAttentionBase):
    """Causal linear attention with a data-dependent decay: a gate per position and head.

    .. math::
        \\alpha_{t} = \\sigma(k_t \\cdot w + b)^{1/\\tau}, \\quad
        S_t = \\alpha_t S_{t-1} + k_t^T v_t, \\quad
        V'_t = \\mathrm{LayerNorm}(q_t S_t / \\sqrt{E})

    As GLA: no feature map, no normaliser, queries scaled by ``1/sqrt(E)``, a norm per head on
    the output, and GLA's gate temperature (``tau = 16`` keeps the initial decays near 1,
    ``sigmoid(0)^(1/16) = 0.96``; gates near 0 still forget everything). Choices of seqlib's:
    one gate per head (a scalar, not GLA's per-key-dimension vector: the chunked kernel stays
    GEMMs with exact, overflow-free decays), computed from the head's projected key (the inner
    attention sees projected inputs, and ``k = x W_k + b_k`` makes ``sigmoid(k . w + b)`` a
    low-rank function of the input, like GLA's ``x W_1 W_2``; ``gate_projection`` is shared by
    the heads, whose keys differ), no output gate.

    Args: as ``GatedAttentionBase``.
    Shape:
        queries ``(N, L, H, E)``, keys ``(N, S, H, E)``, values ``(N, S, H, M)`` ->
        ``(N, L, H, M)``; keys/values are cut or zero-padded to L. The attention mask must be
        lower triangular.
    """

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, attn_mask, query_lengths,
                key_lengths) -> Tensor:
        if not attn_mask.lower_triangular:
            raise RuntimeError("GatedCausalLinearAttention only supports full lower triangular "
                               "masks (TriangularCausalMask)")
        if key_lengths is not None and not key_lengths.all_ones:  # padding adds nothing
            keys = keys * key_lengths.float_matrix.to(keys.dtype)[:, :, None, None]
        keys, values = _match_length(keys, values, queries.shape[1])
        log_decay = self.log_decays(keys)  # (N, L, H); padded positions come after the rest
        heads = decayed_dot_product((queries * self.scale).permute(0, 2, 1, 3),
                                    keys.permute(0, 2, 1, 3), values.permute(0, 2, 1, 3),
                                    log_decay.permute(0, 2, 1))  # (N, H, L, M)
        return self.normalized(heads.permute(0, 2, 1, 3).contiguous())


GATED_PARAMETERS = [
    ("query_dimensions", Int),
    ("gate_temperature", Optional(Float, 16.0)),
    ("event_dispatcher", Optional(EventDispatcherInstance, "")),
]
AttentionRegistry.register("causal-gated-linear", GatedCausalLinearAttention, GATED_PARAMETERS)
