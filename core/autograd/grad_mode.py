"""Global switch for graph recording: no_grad, enable_grad, set_grad_enabled."""

from __future__ import annotations

import functools


class _GradMode:
    enabled = True  # read on every op; a class attribute is the cheapest global


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
            with type(self)() if not isinstance(self, set_grad_enabled) else self.clone():
                return function(*args, **kwargs)

        return wrapper


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
