"""Process-wide settings that a program opts into (importing seqlib applies none of them), and
``data`` where PyTorch users look for it (``sl.utils.data`` is ``sl.data``)."""

from __future__ import annotations

from seqlib import data  # noqa: F401 - torch.utils.data's place
from seqlib.core import allocator


def tune_malloc() -> bool:
    """Tune glibc's malloc for NumPy's large temporaries (whole process; see below).

    Freed arrays below 32 MB are then reused from the heap instead of being returned to the
    OS and refaulted page by page on the next step (about 15% of a CPU training step, see
    ``seqlib/core/allocator.py``), and up to 256 MB of freed memory is kept. The setting
    affects every allocation of the process, so it is an explicit call, made early in a
    training or benchmark script; calling it again changes nothing.

    Linux with glibc only; a no-op elsewhere, when ``SEQLIB_MALLOC_TUNING=0`` is set, or when
    ``GLIBC_TUNABLES`` already sets malloc options (those win).

    Returns:
        whether the settings are in effect.
    """
    return allocator.tune()
