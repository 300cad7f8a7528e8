"""Ready language models with recurrent twins for generation."""

from seqlib.models.base import MODEL_TYPES, PretrainedModel, from_pretrained
from seqlib.models.lstm_lm import LSTMLM, LSTMLMConfig
from seqlib.models.positional import LearnedPositionalEncoding, SinusoidalPositionalEncoding
from seqlib.models.transformer_lm import RecurrentTransformerLM, TransformerLM, TransformerLMConfig
