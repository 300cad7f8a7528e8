"""Attention layers and the attention implementations (each registers itself by name)."""

from seqlib.attention.attention_layer import AttentionLayer
from seqlib.attention.causal_linear_attention import CausalLinearAttention
from seqlib.attention.full_attention import FullAttention
from seqlib.attention.linear_attention import LinearAttention
