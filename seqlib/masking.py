"""``seqlib.masking``: attention masks (``from seqlib.masking import LengthMask``)."""

from seqlib.core.masking import BaseMask, FullMask, LengthMask, TriangularCausalMask

__all__ = ["BaseMask", "FullMask", "LengthMask", "TriangularCausalMask"]
