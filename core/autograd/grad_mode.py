"""Global switch for graph recording: no_grad, enable_grad, set_grad_enabled, inference_mode."""

from __future__ import annotations

import functools
import threading


class _GradModeState(threading.local):
    """Per thread, as in PyTorch: ``no_grad`` in one thread leaves the others recording, and a
    new thread starts with recording on."""

    enabled = True  # read on every op
    inference = False  # inside inference_mode(); only is_inference_mode_enabled reads it


_GradMode = _GradModeState()


def is_grad_enabled() -> bool:
    """True when operations record a graph for backward.

    Returns:
        a bool.
    """
    return _GradMode.enabled


class _GradModeContext:
    """Base for the context managers below; instances also work as decorators."""

    mode: bool

    def __enter__(self):
        self._previous = _GradMode.enabled
        _GradMode.enabled = self.mode
        return self

    def __exit__(self, *exc_info):
        _GradMode.enabled = self._previous
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self.clone():  # a fresh context per call: calls may nest or recurse
                return function(*args, **kwargs)

        return wrapper

    def clone(self) -> _GradModeContext:
        return type(self)()


class no_grad(_GradModeContext):
    """Disable graph recording inside a ``with`` block or a decorated function."""

    mode = False


class enable_grad(_GradModeContext):
    """Enable graph recording inside a ``with`` block or a decorated function."""

    mode = True


class set_grad_enabled(_GradModeContext):
    """Set graph recording on or off; takes effect at once, like PyTorch, and as a context."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._previous = _GradMode.enabled
        _GradMode.enabled = self.mode

    def __enter__(self):
        return self

    def clone(self) -> _GradModeContext:
        return enable_grad() if self.mode else no_grad()


class inference_mode(_GradModeContext):
    """Disable graph recording (``inference_mode(False)``: enable it) inside a ``with`` block
    or a decorated function; ``@inference_mode`` also works without parentheses.

    seqlib's inference mode is ``no_grad``: PyTorch's also skips version counting and marks
    the tensors created inside as inference tensors that autograd refuses later; here those
    tensors are ordinary tensors without a history, and in-place ops still count versions.

    Args:
        mode: True to enter inference mode, False to leave it (recording on) in the block.
    """

    def __new__(cls, mode=True):
        if callable(mode):  # @inference_mode, no parentheses: decorate at once
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode: bool = True):
        self.inference = bool(mode)
        self.mode = not self.inference

    def __enter__(self):
        self._previous_inference = _GradMode.inference
        _GradMode.inference = self.inference
        return super().__enter__()

    def __exit__(self, *exc_info):
        _GradMode.inference = self._previous_inference
        return super().__exit__(*exc_info)

    def clone(self) -> _GradModeContext:
        return inference_mode(self.inference)


def is_inference_mode_enabled() -> bool:
    """True inside ``inference_mode()``.

    Returns:
        a bool.
    """
    return _GradMode.inference
