"""``seqlib.autograd``: Function, backward, grad, grad modes, graph pictures (from core)."""

from core.autograd import *  # noqa: F403
from core.autograd import __all__  # noqa: F401
