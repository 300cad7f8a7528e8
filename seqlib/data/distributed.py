"""DistributedSampler: each rank its own part of every epoch (PyTorch's semantics)."""

from __future__ import annotations

import math

from seqlib.core.creation import randperm
from seqlib.core.random import Generator
from seqlib.data.sampler import Sampler


class DistributedSampler(Sampler):
    """The indices of one rank: every ``num_replicas``-th index of the epoch's order, from
    ``rank`` on.

    All ranks draw the same permutation (from ``seed + epoch``) and take disjoint strides of
    it, so together they visit the dataset once per epoch. Unless ``drop_last``, the order is
    padded with its own first indices to a multiple of ``num_replicas`` (a few samples are
    seen twice); with ``drop_last`` the tail is dropped instead. Every rank gets the same
    number of indices either way, so no rank waits for a batch that never comes.

    Args:
        dataset: a map-style dataset.
        num_replicas: the number of ranks (default: the process group's world size).
        rank: this rank (default: the process group's).
        shuffle: a new permutation each epoch (else ``0, 1, 2, ...``).
        seed: the seed of the permutations; the same on every rank.
        drop_last: drop the tail instead of padding.

    Call ``set_epoch(epoch)`` before each epoch's ``DataLoader`` iteration, or every epoch
    repeats the first one's order.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if num_replicas is None or rank is None:
            from seqlib.distributed import get_rank, get_world_size

            num_replicas = get_world_size() if num_replicas is None else num_replicas
            rank = get_rank() if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas should be a positive integer, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        size = len(dataset)
        if drop_last and size % num_replicas:
            self.num_samples = math.ceil((size - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(size / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        size = len(self.dataset)
        if self.shuffle:
            generator = Generator().manual_seed(self.seed + self.epoch)
            order = randperm(size, generator=generator).tolist()
        else:
            order = list(range(size))
        if self.drop_last:
            order = order[: self.total_size]
        elif order:
            padding = self.total_size - len(order)
            order += (order * math.ceil(padding / len(order)))[:padding]
        return iter(order[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order from the next iteration on (the same on every rank)."""
        self.epoch = epoch
