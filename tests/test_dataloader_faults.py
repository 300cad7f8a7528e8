"""seqlib.data: a DataLoader with workers never hangs and never leaves a process behind.

Every failure of a worker (an exit, a signal, an exception that is not an ``Exception``, a
failing ``worker_init_fn``) is raised in the main process within seconds, naming the worker and
what happened; leaving an epoch early, a Ctrl-C and the death of the main process stop the
workers. Each test runs under a wall-clock guard (``signal.alarm`` or a subprocess timeout), so a
regression fails instead of hanging CI.
"""

from __future__ import annotations

import signal

import pytest

import seqlib as sl
from seqlib.data import DataLoader, TensorDataset

GUARD_SECONDS = 30


@pytest.fixture(autouse=True)
def _wall_clock_guard():
    """Fail a test that runs past its guard instead of letting a stuck loader hang CI."""
    def expire(signum, frame):
        raise TimeoutError(f"a DataLoader test ran past its {GUARD_SECONDS} s wall-clock guard")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(GUARD_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ---- prefetch_factor --------------------------------------------------------------------
def test_prefetch_factor_is_validated_as_in_torch():
    dataset = TensorDataset(sl.arange(10))
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified in "
                                         "multiprocessing"):
        DataLoader(dataset, prefetch_factor=2)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"prefetch_factor option should be at least 1 "
                                             f"with num_workers > 0, got {bad}"):
            DataLoader(dataset, num_workers=2, prefetch_factor=bad)
    assert DataLoader(dataset).prefetch_factor is None
    assert DataLoader(dataset, num_workers=2).prefetch_factor == 2
    loader = DataLoader(dataset, batch_size=3, num_workers=2, prefetch_factor=1)
    assert [batch[0].tolist() for batch in loader] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
