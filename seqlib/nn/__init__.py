"""Neural-network building blocks. ``seqlib.nn.functional`` is the functional API (``F``)."""

from seqlib.nn import functional  # noqa: F401
