"""Work: the handle of a collective in flight, waited for with a deadline, never forever."""

from __future__ import annotations

import os
import time

SPIN_SECONDS = 1e-3  # how long a wait polls flat out ...
YIELD_SECONDS = 0.05  # ... and then yielding the core between polls, before it sleeps
_yield_core = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))  # Windows has none


class DistributedTimeout(RuntimeError):
    """A collective did not complete in time: a rank is stuck, slower than the timeout, or did
    not call the same collectives in the same order."""


class Work:
    """A collective started by a backend; ``wait()`` returns once it is complete.

    Args:
        what: the collective's name, for messages (``"all_reduce"``).
        poll: ``poll() -> bool``, True once the collective is complete (it may also push the
            communication forward: MPI progresses non-blocking collectives inside its calls).
        finish: called once, after completion (copy back, scale, ...), or None.
        timeout: seconds ``wait()`` waits by default.
        on_timeout: called before ``DistributedTimeout`` is raised (e.g. to abort a
            communicator), or None.
    """

    def __init__(self, what: str, poll, finish=None, timeout: float = 1800.0, on_timeout=None):
        self.what, self._poll, self._finish = what, poll, finish
        self.timeout, self._on_timeout = timeout, on_timeout
        self._done = False

    def is_completed(self) -> bool:
        """Whether the collective is complete (its result in place), without blocking."""
        if not self._done and self._poll():
            self._complete()
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the collective is complete; returns True (as PyTorch's ``Work.wait``).

        Raises:
            DistributedTimeout: after ``timeout`` seconds (default: the process group's).
        """
        if self._done:
            return True
        limit = self.timeout if timeout is None else timeout
        start = time.monotonic()
        while not self._poll():
            elapsed = time.monotonic() - start
            if elapsed > limit:
                if self._on_timeout is not None:
                    self._on_timeout()
                raise DistributedTimeout(
                    f"{self.what} did not complete within {limit:g} s: another rank is stuck, "
                    "has exited, or called different collectives (every rank must call the "
                    "same collectives in the same order)")
            # MPI moves a collective on only inside its calls, so poll without sleeping, as
            # MPI's own blocking calls do (a sleep costs ~60 us of timer slack per poll): at
            # first flat out, then yielding the core to other processes on it (more ranks than
            # cores); a long wait (a slower rank) polls every tenth of the time waited, <= 1 ms
            if elapsed < SPIN_SECONDS:
                continue
            if elapsed < YIELD_SECONDS:
                _yield_core()
            else:
                time.sleep(min(elapsed / 10, 1e-3))
        self._complete()
        return True

    def then(self, step) -> Work:
        """Run ``step()`` once the collective is complete (at once if it is); returns self."""
        if self._done:
            step()
            return self
        previous = self._finish
        self._finish = step if previous is None else (lambda: (previous(), step()))
        return self

    def _complete(self) -> None:
        self._done = True
        if self._finish is not None:
            finish, self._finish = self._finish, None
            finish()


def completed(what: str, finish=None) -> Work:
    """A Work that is already complete (single-process collectives)."""
    work = Work(what, lambda: True, finish)
    work._complete()
    return work
