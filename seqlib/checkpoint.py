"""Training checkpoints: model, optimizer, scheduler, step and RNG state in one file, so a
resumed run continues exactly where it stopped; and ``DeferredInterrupt``, so that Ctrl-C saves
the state of a step boundary rather than of whatever line the loop was on."""

from __future__ import annotations

import os
import signal
import threading

from seqlib import distributed
from seqlib.core.creation import tensor
from seqlib.core.random import Generator, default_generator
from seqlib.nn.module import IncompatibleKeys
from seqlib.serialization import load, save


def _group() -> tuple:
    """``(rank, world_size)`` of the process group, ``(0, 1)`` without one."""
    if not distributed.is_initialized():
        return 0, 1
    return distributed.get_rank(), distributed.get_world_size()


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

    In a process group (``seqlib.distributed``) every rank calls it: rank 0 writes the file,
    with its model, optimizer, scheduler and ``extra`` (the same on every rank under
    ``DistributedDataParallel``) and the generator states of every rank (``rng_ranks``); the
    others wait until the file is complete.
    """
    rank, size = _group()
    rng = {"default": default_generator.get_state(),
           **{name: g.get_state() for name, g in (generators or {}).items()}}
    if size > 1:  # every rank's generators, so that each continues its own streams
        everyone = [None] * size
        distributed.all_gather_object(everyone, {name: t.numpy() for name, t in rng.items()})
    if rank == 0:
        state = {"step": step, "rng": rng, "extra": extra}
        if size > 1:
            state["rng_ranks"] = {str(r): {name: tensor(array) for name, array in states.items()}
                                  for r, states in enumerate(everyone) if r}
        for name, owner in (("model", model), ("optimizer", optimizer),
                            ("scheduler", scheduler)):
            if owner is not None:
                state[name] = owner.state_dict()
        save(state, path)
    if size > 1:
        distributed.barrier()  # nobody reads it before it is complete


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

    In a process group every rank calls it and reads the file (on a filesystem they share):
    all get rank 0's model, optimizer and scheduler, and each its own generator states as
    ``save_checkpoint`` gathered them (a rank the checkpoint has none for, after a change of
    world size, keeps its generators as they are). Ranks that read different steps (a stale
    copy of the file) raise a ValueError.
    """
    state = load(path, map_location)
    rank, size = _group()
    if size > 1:
        steps = [None] * size
        distributed.all_gather_object(steps, state.get("step") if isinstance(state, dict)
                                      else None)
        if len(set(steps)) > 1:
            raise ValueError(f"load_checkpoint: the ranks read different checkpoints from {path} "
                             f"(steps {steps}): the file must be the same for every rank")
    if not isinstance(state, dict) or not isinstance(state.get("rng"), dict):
        raise ValueError(f"load_checkpoint: {path} is not a checkpoint written by save_checkpoint")
    owners = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    missing = [name for name, owner in owners.items() if owner is not None and name not in state]
    missing += [f"generator {name!r}" for name in (generators or {}) if name not in state["rng"]]
    rng = state["rng"] if rank == 0 else state.get("rng_ranks", {}).get(str(rank))
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
        for name in ("default", *(generators or {})) if rng is not None else ():
            Generator._decode_state(rng.get(name))
    except (ValueError, RuntimeError, TypeError) as error:
        raise ValueError(f"load_checkpoint: {path} does not fit ({error}); nothing was "
                         "restored") from error
    # ... then change everything
    for name, owner in owners.items():
        if owner is not None:
            owner.load_state_dict(state[name], **({"strict": strict} if name == "model" else {}))
    if rng is not None:
        default_generator.set_state(rng["default"])
        for name, generator in (generators or {}).items():
            generator.set_state(rng[name])
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
