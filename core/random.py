"""Seeded random number generators (PCG64), with PyTorch's Generator/manual_seed API."""

from __future__ import annotations

import json

import numpy


class Generator:
    """A random number generator; ``Generator().manual_seed(0)`` gives reproducible draws.

    Numbers are drawn on the CPU and moved to the tensor's device, so the same seed gives the
    same values on every device.

    Args:
        device: accepted for PyTorch compatibility; draws happen on the CPU.
    """

    def __init__(self, device="cpu"):
        self.device = device
        self._seed = int(numpy.random.SeedSequence().entropy % (2**63))
        self._rng = numpy.random.Generator(numpy.random.PCG64(self._seed))

    def manual_seed(self, seed: int) -> Generator:
        """Reset the generator to the stream of ``seed``; returns itself."""
        if isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)):
            raise TypeError(f"manual_seed: seed must be an int, got {seed!r}")
        self._seed = int(seed) % (2**64)
        self._rng = numpy.random.Generator(numpy.random.PCG64(self._seed))
        return self

    def seed(self) -> int:
        """Re-seed from fresh entropy and return the new seed."""
        self.manual_seed(int(numpy.random.SeedSequence().entropy % (2**63)))
        return self._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        """The full state as a uint8 tensor (restorable with ``set_state``, saveable)."""
        from .creation import tensor

        state = {"seed": self._seed, "bit_generator": self._rng.bit_generator.state}
        encoded = json.dumps(state).encode()
        return tensor(numpy.frombuffer(encoded, numpy.uint8).copy())

    def set_state(self, state) -> Generator:
        """Restore a state from ``get_state`` (a state that does not decode changes nothing).

        Raises:
            ValueError: if ``state`` is not a Generator state.
        """
        seed, bit_state = self._decode_state(state)
        self._rng.bit_generator.state = bit_state
        self._seed = seed
        return self

    @staticmethod
    def _decode_state(state) -> tuple:
        """``(seed, bit_generator_state)`` decoded from a ``get_state`` tensor.

        Raises:
            ValueError: if ``state`` is not a Generator state.
        """
        try:
            array = state.numpy() if hasattr(state, "numpy") else numpy.asarray(state)
            decoded = json.loads(bytes(array.astype(numpy.uint8)).decode())
            numpy.random.PCG64().state = decoded["bit_generator"]  # validates the format
            return decoded["seed"], decoded["bit_generator"]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"set_state: not a Generator state ({error})") from error

    @property
    def numpy_generator(self) -> numpy.random.Generator:
        """The underlying ``numpy.random.Generator``."""
        return self._rng


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (used when no ``generator=`` is given).

    Args:
        seed: an int.
    Returns:
        the default Generator.
    """
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Re-seed the default generator from fresh entropy.

    Returns:
        the new seed of the default Generator (drawn from fresh entropy).
    """
    return default_generator.seed()


def initial_seed() -> int:
    """The default generator's seed.

    Returns:
        the seed the default Generator was last seeded with.
    """
    return default_generator.initial_seed()


def get_rng_state():
    """The default generator's state.

    Returns:
        the default Generator's state as a uint8 tensor.
    """
    return default_generator.get_state()


def set_rng_state(state) -> None:
    """Restore the default generator's state.

    Args:
        state: a tensor from ``get_rng_state``.
    Returns:
        None.
    """
    default_generator.set_state(state)


def rng(generator: Generator | None) -> numpy.random.Generator:
    """The NumPy generator to draw from."""
    if generator is None:
        return default_generator._rng
    if not isinstance(generator, Generator):
        raise TypeError(f"generator: expected a Generator, got {type(generator).__name__}")
    return generator._rng
