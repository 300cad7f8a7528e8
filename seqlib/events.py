"""Events: let users look inside a model (attention matrices, Q/K/V, intermediate outputs)
without editing it, as in fast-transformers. Dispatch costs nothing when nobody listens."""

from __future__ import annotations

from collections import OrderedDict


class Event:
    """Something a module reports; ``source`` is the module."""

    def __init__(self, source):
        self.source = source


class AttentionEvent(Event):
    """An attention matrix ``(N, H, L, S)`` (or ``(N, H, S)`` for a recurrent step)."""

    def __init__(self, source, attention_matrix):
        super().__init__(source)
        self.attention_matrix = attention_matrix


class QKVEvent(Event):
    """The projected queries, keys and values of an attention layer."""

    def __init__(self, source, queries, keys, values):
        super().__init__(source)
        self.queries, self.keys, self.values = queries, keys, values


class IntermediateOutput(Event):
    """The output ``x`` of a layer inside a stack."""

    def __init__(self, source, x):
        super().__init__(source)
        self.x = x


class EventFilter:
    """A predicate on events; combine with ``&``, ``|`` and ``~``."""

    def __init__(self, predicate):
        self.predicate = predicate

    def __call__(self, event) -> bool:
        return bool(self.predicate(event))

    def __and__(self, other):
        other = _as_filter(other)
        return EventFilter(lambda event: self(event) and other(event))

    def __rand__(self, other):
        return _as_filter(other) & self

    def __or__(self, other):
        other = _as_filter(other)
        return EventFilter(lambda event: self(event) or other(event))

    def __ror__(self, other):
        return _as_filter(other) | self

    def __invert__(self):
        return EventFilter(lambda event: not self(event))


def _as_filter(value) -> EventFilter:
    if isinstance(value, EventFilter):
        return value
    if isinstance(value, type) and issubclass(value, Event):
        return event_class(value)
    if callable(value):
        return EventFilter(value)
    raise TypeError(f"cannot use {value!r} as an event filter")


def event_class(cls) -> EventFilter:
    """Events that are instances of ``cls``."""
    return EventFilter(lambda event: isinstance(event, cls))


def from_layer(layer) -> EventFilter:
    """Events whose source is ``layer``."""
    return EventFilter(lambda event: event.source is layer)


def layer_name_contains(model, name: str) -> EventFilter:
    """Events from submodules of ``model`` whose dotted name contains ``name``."""
    modules = {id(module) for full, module in model.named_modules() if name in full}
    return EventFilter(lambda event: id(event.source) in modules)


class EventDispatcher:
    """Calls handlers for the events they listen to.

    ``EventDispatcher.get(key)`` returns a shared dispatcher per key ("" is the default one);
    modules take an ``event_dispatcher`` argument that is a dispatcher or such a key.
    """

    _dispatchers = {}

    def __init__(self):
        self._listeners = OrderedDict()  # handler -> filter

    def listen(self, event_filter, event_handler) -> None:
        """Call ``event_handler(event)`` for events that pass ``event_filter`` (a filter, an
        Event subclass or a predicate)."""
        self._listeners[event_handler] = _as_filter(event_filter)

    def remove(self, event_handler) -> None:
        """Stop calling ``event_handler``."""
        self._listeners.pop(event_handler, None)

    def clear(self) -> None:
        """Remove every listener."""
        self._listeners.clear()

    def dispatch(self, event) -> None:
        """Deliver ``event`` to every handler whose filter accepts it."""
        for handler, event_filter in list(self._listeners.items()):
            if event_filter(event):
                handler(event)

    @property
    def listening(self) -> bool:
        """True if anyone listens (modules skip building events otherwise)."""
        return bool(self._listeners)

    @classmethod
    def get(cls, key="") -> EventDispatcher:
        """The dispatcher for ``key`` (created on first use), or ``key`` itself if it is one."""
        if isinstance(key, EventDispatcher):
            return key
        if not isinstance(key, str):
            raise TypeError(f"event_dispatcher must be an EventDispatcher or a str, got {key!r}")
        if key not in cls._dispatchers:
            cls._dispatchers[key] = cls()
        return cls._dispatchers[key]
