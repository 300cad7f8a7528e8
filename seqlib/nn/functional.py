"""``import seqlib.nn.functional as F``: core.functional and core.losses under one roof."""

from seqlib.core.functional import *  # noqa: F403
from seqlib.core.functional import __all__ as _functional
from seqlib.core.losses import (  # noqa: F401
    binary_cross_entropy_with_logits,
    cross_entropy,
    l1_loss,
    mse_loss,
    nll_loss,
)
from seqlib.core.missing import module_getattr as _module_getattr

__all__ = [*_functional, "binary_cross_entropy_with_logits", "cross_entropy", "l1_loss",
           "mse_loss", "nll_loss"]


# a PyTorch name this module lacks gets an AttributeError that says so (seqlib.core.missing)
__getattr__ = _module_getattr(__name__, "torch.nn.functional")
