"""Training checkpoints: model, optimizer, scheduler, step and RNG state in one file, so a
resumed run continues exactly where it stopped; and ``DeferredInterrupt``, so that Ctrl-C saves
the state of a step boundary rather than of whatever line the loop was on."""

from __future__ import annotations

import os
import signal
import threading

from seqlib.core.random import Generator, default_generator
from seqlib.nn.module import IncompatibleKeys
from seqlib.serialization import load, save


def save_checkpoint(path, *, model=None, optimizer=None, scheduler=None, step: int = 0,
                    generators: dict | None = None, **extra) -> None:
    """Write everything needed to resume training to ``path`` (atomically).

    Args:
        path: the checkpoint file.
        model, optimizer, scheduler: objects with ``state_dict()`` (any may be None).
        step: the training step reached.
        generators: named Generators to restore too (e.g. the DataLoader's); the default
            generator is always saved.
        **extra: more values to store (numbers, strings, tensors, nested dicts of them).
    """
    state = {
        "step": step,
        "rng": {"default": default_generator.get_state(),
                **{name: g.get_state() for name, g in (generators or {}).items()}},
        "extra": extra,
    }
    for name, owner in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
        if owner is not None:
            state[name] = owner.state_dict()
    save(state, path)


def load_checkpoint(path, *, model=None, optimizer=None, scheduler=None,
                    generators: dict | None = None, map_location=None, strict: bool = True):
    """Restore what ``save_checkpoint`` wrote into the given objects, all or nothing: every
    requested part is checked before any of them changes, so a checkpoint that does not fit
    leaves the model, optimizer, scheduler and generators as they were.

    Args:
        path: the checkpoint file.
        model, optimizer, scheduler: objects to restore (those given must be in the file).
        generators: named Generators to restore (names as when saving).
        map_location: as for ``seqlib.load``.
        strict: passed to ``model.load_state_dict``.
    Returns:
        the loaded checkpoint dict (``step``, ``extra``, and the raw states), with
        ``incompatible_keys``: the model's ``(missing_keys, unexpected_keys)`` as
        ``load_state_dict`` returns them (empty unless ``strict=False``).
    Raises:
        ValueError: the file is not a checkpoint, or lacks a requested part, or a part does
            not fit its object (the message names the file and the part).
    """
    state = load(path, map_location)
    if not isinstance(state, dict) or not isinstance(state.get("rng"), dict):
        raise ValueError(f"load_checkpoint: {path} is not a checkpoint written by save_checkpoint")
    owners = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    missing = [name for name, owner in owners.items() if owner is not None and name not in state]
    missing += [f"generator {name!r}" for name in (generators or {}) if name not in state["rng"]]
    if missing:
        raise ValueError(f"load_checkpoint: {path} holds no {', '.join(missing)} state; "
                         "nothing was restored")
    incompatible = IncompatibleKeys([], [])
    try:  # check everything first ...
        if model is not None:
            incompatible = model._check_state_dict(state["model"], strict)
        if optimizer is not None:
            optimizer._check_state_dict(state["optimizer"])
        if scheduler is not None and hasattr(scheduler, "_check_state_dict"):
            scheduler._check_state_dict(state["scheduler"])
        for name in ("default", *(generators or {})):
            Generator._decode_state(state["rng"][name])
    except (ValueError, RuntimeError, TypeError) as error:
        raise ValueError(f"load_checkpoint: {path} does not fit ({error}); nothing was "
                         "restored") from error
    # ... then change everything
    for name, owner in owners.items():
        if owner is not None:
            owner.load_state_dict(state[name], **({"strict": strict} if name == "model" else {}))
    default_generator.set_state(state["rng"]["default"])
    for name, generator in (generators or {}).items():
        generator.set_state(state["rng"][name])
    state["incompatible_keys"] = incompatible
    return state

NOTICE = "\nstopping at the end of this step (Ctrl-\\ quits at once, without finishing it)\n"


class DeferredInterrupt:
    """Inside ``with DeferredInterrupt() as interrupt:``, Ctrl-C (SIGINT) and SIGTERM only set
    ``interrupt.requested``; the loop checks it where its state is consistent (a step boundary),
    saves a checkpoint and stops. More signals while it finishes the step or saves change
    nothing; the previous handlers come back when the block ends.

    Outside the main thread, where Python cannot install handlers, nothing is deferred.

    Args:
        signals: the signals to defer.
        notice: written to stderr when the first of them arrives ("" for nothing); the
            default says how to quit at once: Ctrl-\\ sends SIGQUIT, which is not deferred.
    Example::

        with DeferredInterrupt() as interrupt:
            while step < steps and not interrupt.requested:
                ...  # one step
            save_checkpoint(...)  # a signal here waits too: the file is complete
    """

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM), notice: str = NOTICE):
        self.signals = tuple(signals)
        self.notice = notice
        self.requested = 0  # the number of the first signal received; 0: none
        self._previous = {}  # signal number -> the handler to restore

    def __enter__(self) -> DeferredInterrupt:
        self.requested = 0
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exception) -> None:
        for number, handler in self._previous.items():
            # NOTE: None means a handler installed outside Python; the default is the nearest
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def _handle(self, number: int, frame) -> None:
        if not self.requested and self.notice:
            # os.write, not print: a handler that prints while the loop prints raises
            # "reentrant call" in the buffered stream
            os.write(2, self.notice.encode(errors="replace"))
        self.requested = self.requested or number
