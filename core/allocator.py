"""Keep glibc's malloc from handing NumPy's freed arrays back to the OS at once.

By default glibc maps arrays above a (dynamically adjusted) threshold with mmap and trims
freed memory at the top of the heap above 128 KB, so a training loop that allocates and frees
the same few-MB temporaries every step refaults every page each time: 60 steps of
``examples/train_lm.py`` took 1.2 million minor page faults and 4 s of system time, and ran
15% slower than with the settings below (49 thousand faults, 0.3 s), at the same peak memory.
Arrays below 32 MB then come from the heap, and up to 256 MB of freed memory is kept for reuse.

The settings are process-wide (every library's allocations), so nothing applies them on
import: a program opts in by calling ``tune()`` (``seqlib.utils.tune_malloc()``), as the
examples and benchmarks do. Linux with glibc only. ``SEQLIB_MALLOC_TUNING=0`` turns the call
into a no-op; nothing is changed when ``GLIBC_TUNABLES`` already sets malloc options (those
win).
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 << 20

tuned = False  # whether tune() changed malloc's settings in this process


def _glibc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError):
        return False


def tune() -> bool:
    """Apply the settings unless turned off or not on glibc; returns whether they are applied.
    Calling it again changes nothing."""
    global tuned
    if tuned:
        return True
    if os.environ.get("SEQLIB_MALLOC_TUNING", "1").strip() == "0":
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or not _glibc():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return tuned
