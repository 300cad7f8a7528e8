"""seqlib: small, readable, fast LSTMs and linear-attention transformers.

``import seqlib as sl`` gives the whole API: tensors and autograd (from ``core``),
``sl.nn``, ``sl.nn.functional``, ``sl.masking``, ``sl.losses``, ``sl.autograd``, ...
"""

from seqlib import (
    _source_tree,  # noqa: F401 - first: makes seqlib.core resolvable
    attention,
    builders,
    data,
    distributed,
    events,
    feature_maps,
    masking,
    models,
    nn,
    optim,
    recurrent,
    text,
    tokenizers,
    transformers,
    utils,
)
from seqlib.checkpoint import load_checkpoint, save_checkpoint
from seqlib.core import *  # noqa: F403 - seqlib re-exports the core API by design
from seqlib.core import autograd, cuda, dtypes, functional, losses  # noqa: F401
from seqlib.core.missing import module_getattr as _module_getattr
from seqlib.generation import generate
from seqlib.serialization import load, save
from seqlib.streamers import TextIteratorStreamer, TextStreamer

__version__ = "0.1.0"


# a PyTorch name this module lacks gets an AttributeError that says so (seqlib.core.missing)
__getattr__ = _module_getattr(__name__, "torch")
