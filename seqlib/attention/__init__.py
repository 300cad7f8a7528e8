"""Attention layers and the attention implementations (each registers itself by name)."""

from seqlib.attention.attention_layer import AttentionLayer
from seqlib.attention.causal_linear_attention import CausalLinearAttention
from seqlib.attention.causal_retention import CausalRetention
from seqlib.attention.conditional_full_attention import ConditionalFullAttention
from seqlib.attention.exact_topk_attention import ExactTopKAttention
from seqlib.attention.full_attention import FullAttention
from seqlib.attention.gated_linear_attention import GatedCausalLinearAttention
from seqlib.attention.linear_attention import LinearAttention
from seqlib.attention.local_attention import LocalAttention
