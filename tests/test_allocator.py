"""core.allocator: freed NumPy arrays are reused instead of refaulted (glibc only)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from seqlib.core import allocator

PROBE = """
import resource, sys
import numpy
import seqlib.core.allocator
x = numpy.ones((16, 128, 512), numpy.float32)  # 4 MB, like a training step's temporaries
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    a = x * 2; b = a + x; del a; c = numpy.exp(b); del b, c
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(seqlib.core.allocator.tuned, faults)
"""

needs_glibc = pytest.mark.skipif(not allocator._glibc(), reason="glibc's malloc only")


def probe(**env) -> tuple:
    environment = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    environment.update(env)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=environment, cwd=root, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@needs_glibc
def test_tuning_removes_the_page_faults_of_repeated_temporaries():
    tuned, faults = probe()
    untuned, untuned_faults = probe(SEQLIB_MALLOC_TUNING="0")
    assert tuned and not untuned
    assert faults * 10 < untuned_faults, (faults, untuned_faults)


@needs_glibc
def test_explicit_glibc_tunables_win():
    tuned, _ = probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=1048576")
    assert not tuned
