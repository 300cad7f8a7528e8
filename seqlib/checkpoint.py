"""Training checkpoints: model, optimizer, scheduler, step and RNG state in one file, so a
resumed run continues exactly where it stopped."""

from __future__ import annotations

from seqlib.core.random import default_generator
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
    """Restore what ``save_checkpoint`` wrote into the given objects.

    Args:
        path: the checkpoint file.
        model, optimizer, scheduler: objects to restore (those given must be in the file).
        generators: named Generators to restore (names as when saving).
        map_location: as for ``seqlib.load``.
        strict: passed to ``model.load_state_dict``.
    Returns:
        the loaded checkpoint dict (``step``, ``extra``, and the raw states).
    """
    state = load(path, map_location)
    if not isinstance(state, dict) or "rng" not in state:
        raise ValueError(f"load_checkpoint: {path} is not a checkpoint written by save_checkpoint")
    for name, owner in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
        if owner is None:
            continue
        if name not in state:
            raise KeyError(f"load_checkpoint: {path} holds no {name} state")
        if name == "model":
            owner.load_state_dict(state[name], strict=strict)
        else:
            owner.load_state_dict(state[name])
    default_generator.set_state(state["rng"]["default"])
    for name, generator in (generators or {}).items():
        if name not in state["rng"]:
            raise KeyError(f"load_checkpoint: {path} holds no state for generator {name!r}")
        generator.set_state(state["rng"][name])
    return state
