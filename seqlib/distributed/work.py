"""Work: the handle of a collective in flight, waited for with a deadline, never forever."""

from __future__ import annotations

import time


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
            # yield the core for the first 100 us (the usual wait on one machine), then poll
            # every tenth of the time waited so far (at most 1 ms): at most 10% late
            time.sleep(0.0 if elapsed < 1e-4 else min(elapsed / 10, 1e-3))
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
