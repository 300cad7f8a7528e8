"""``seqlib.autograd``: Function, backward, grad, grad modes, graph pictures (from core)."""

from seqlib.core.autograd import *  # noqa: F403
from seqlib.core.autograd import __all__  # noqa: F401
