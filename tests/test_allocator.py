"""Malloc tuning is an explicit call (``sl.utils.tune_malloc``) that makes freed NumPy arrays be
reused instead of refaulted (glibc only); importing seqlib changes nothing outside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from seqlib.core import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import resource, sys
import numpy
import seqlib
tuned = seqlib.utils.tune_malloc() if sys.argv[1] == "tune" else False
x = numpy.ones((16, 128, 512), numpy.float32)  # 4 MB, like a training step's temporaries
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    a = x * 2; b = a + x; del a; c = numpy.exp(b); del b, c
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(tuned, seqlib.core.allocator.tuned, faults)
"""

# Whether a fresh 24 MB array is mmapped (glibc's default threshold, at most 32 MB after any
# free) or comes from the heap (the tuned threshold, 32 MB): malloc's state, read through
# mallinfo2's count of mmapped blocks.
MMAP_PROBE = """
import ctypes, sys
import numpy

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
import seqlib
if sys.argv[1] == "tune":
    seqlib.utils.tune_malloc()
before = libc.mallinfo2().hblks
array = numpy.empty(24 << 20, numpy.uint8)
print(libc.mallinfo2().hblks - before)
"""

# Process-wide state a library could change when imported.
STATE_PROBE = """
import json, os, sys, threading, warnings
import numpy

def state():
    return {"environment": dict(os.environ), "warnings": [repr(f) for f in warnings.filters],
            "threads": threading.active_count(), "numpy errors": numpy.geterr(),
            "numpy print": repr(numpy.get_printoptions()),
            "numpy random": repr(numpy.random.get_state()[1][:4].tolist()),
            "switch interval": sys.getswitchinterval(),
            "recursion limit": sys.getrecursionlimit()}

before = state()
import seqlib
import seqlib.nn.functional
after = state()
print(json.dumps([before, after]))
"""

needs_glibc = pytest.mark.skipif(not allocator._glibc(), reason="glibc's malloc only")


def run(script: str, *args, **env) -> str:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("GLIBC_TUNABLES", "SEQLIB_MALLOC_TUNING")}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, env=environment, cwd=ROOT, check=True).stdout


def probe(mode: str, **env) -> tuple:
    called, tuned, faults = run(PROBE, mode, **env).split()
    return called == "True", tuned == "True", int(faults)


@needs_glibc
def test_tuning_removes_the_page_faults_of_repeated_temporaries():
    called, tuned, faults = probe("tune")
    _, imported_only, untuned_faults = probe("import")
    assert called and tuned and not imported_only
    assert faults * 10 < untuned_faults, (faults, untuned_faults)


@needs_glibc
def test_importing_seqlib_leaves_malloc_alone_and_the_call_tunes_it():
    assert run(MMAP_PROBE, "import").strip() == "1"  # glibc's default: mmapped
    assert run(MMAP_PROBE, "tune").strip() == "0"  # tuned: from the heap


@needs_glibc
def test_explicit_glibc_tunables_and_the_opt_out_win():
    assert probe("tune", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1048576")[:2] == (False,
                                                                                     False)
    assert probe("tune", SEQLIB_MALLOC_TUNING="0")[:2] == (False, False)


def test_importing_seqlib_changes_no_process_wide_state():
    before, after = json.loads(run(STATE_PROBE))
    assert before == after
