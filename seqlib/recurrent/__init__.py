"""Recurrent twins of the attention layers and transformers, for generation step by step."""

from seqlib.recurrent.attention import (
    RecurrentAttentionLayer,
    RecurrentCrossAttentionLayer,
    RecurrentCrossFullAttention,
    RecurrentCrossLinearAttention,
    RecurrentFullAttention,
    RecurrentLinearAttention,
)
from seqlib.recurrent.decayed_attention import (
    RecurrentGatedLinearAttention,
    RecurrentRetention,
)
from seqlib.recurrent.transformers import (
    RecurrentTransformerDecoder,
    RecurrentTransformerDecoderLayer,
    RecurrentTransformerEncoder,
    RecurrentTransformerEncoderLayer,
    make_mirror,
)
