"""Datasets: map-style, iterable, tensors, subsets, random splits, token windows."""

from __future__ import annotations

import math

from seqlib.core.creation import as_tensor, randperm
from seqlib.core.tensor import Tensor


class Dataset:
    """A map-style dataset: ``dataset[i]`` for ``0 <= i < len(dataset)``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


class IterableDataset:
    """A dataset that is a stream: iterate over it; it has no indices."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class TensorDataset(Dataset):
    """Samples are the i-th rows of each tensor.

    Args:
        *tensors: tensors with the same size in dim 0.
    """

    def __init__(self, *tensors: Tensor):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) != 1:
            raise ValueError(f"Size mismatch between tensors: first dims are {sizes}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``.

    Args:
        dataset: a map-style dataset.
        indices: a sequence of indices into it.
    """

    def __init__(self, dataset: Dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index):
        if isinstance(index, list):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset: Dataset, lengths, generator=None) -> list:
    """Split into non-overlapping random subsets.

    Args:
        dataset: a map-style dataset.
        lengths: sizes summing to ``len(dataset)``, or fractions summing to 1 (remainders go
            round-robin to the first subsets, as PyTorch).
        generator: a seeded Generator.
    Returns:
        a list of Subsets.
    """
    total = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1 and any(
            isinstance(x, float) for x in lengths):
        counts = [int(math.floor(total * fraction)) for fraction in lengths]
        for i in range(total - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != total:
        raise ValueError(
            f"Sum of input lengths ({sum(lengths)}) does not equal the length of the input "
            f"dataset ({total})!"
        )
    order = randperm(total, generator=generator).tolist()
    subsets, start = [], 0
    for n in lengths:
        subsets.append(Subset(dataset, order[start : start + n]))
        start += n
    return subsets


class TokenWindowDataset(Dataset):
    """Next-token windows of a token stream for language modelling.

    Sample ``i`` is ``(tokens[s : s + block_size], tokens[s + 1 : s + block_size + 1])`` with
    ``s = i * stride``.

    Args:
        tokens: a 1-D integer tensor, array or list.
        block_size: the window length.
        stride: the step between windows (default ``block_size``: no overlap).
    """

    def __init__(self, tokens, block_size: int, stride: int | None = None):
        self.tokens = as_tensor(tokens)
        if self.tokens.ndim != 1 or self.tokens.dtype.kind not in "iu":
            raise ValueError(
                f"TokenWindowDataset: tokens must be 1-D integers, got shape "
                f"{tuple(self.tokens.shape)} and dtype {self.tokens.dtype}"
            )
        if block_size < 1:
            raise ValueError(f"TokenWindowDataset: block_size must be >= 1, got {block_size}")
        self.block_size = block_size
        self.stride = block_size if stride is None else stride
        if self.stride < 1:
            raise ValueError(f"TokenWindowDataset: stride must be >= 1, got {self.stride}")
        if len(self.tokens) < block_size + 1:
            raise ValueError(
                f"TokenWindowDataset: {len(self.tokens)} tokens are too few for one window of "
                f"{block_size} + 1"
            )

    def __len__(self) -> int:
        return (len(self.tokens) - self.block_size - 1) // self.stride + 1

    def shard(self, num_replicas: int | None = None, rank: int | None = None):
        """This rank's contiguous part of the windows, for one dataset per rank.

        The windows are cut into ``num_replicas`` runs of ``len(self) // num_replicas`` (the
        few left over are dropped, so every rank has as many batches as the others) and rank
        ``rank`` gets the ``rank``-th run, as a TokenWindowDataset over only the tokens it
        reads. For shuffled epochs over all windows, use a ``DistributedSampler`` instead.

        Args:
            num_replicas, rank: default to the process group's world size and rank.
        Returns:
            a TokenWindowDataset with the same ``block_size`` and ``stride``.
        """
        if num_replicas is None or rank is None:
            from seqlib.distributed import get_rank, get_world_size

            num_replicas = get_world_size() if num_replicas is None else num_replicas
            rank = get_rank() if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"shard: rank {rank} is not in [0, {num_replicas - 1}]")
        count = len(self) // num_replicas
        if count == 0:
            raise ValueError(f"shard: {len(self)} windows are too few for {num_replicas} ranks")
        start = rank * count * self.stride
        stop = start + (count - 1) * self.stride + self.block_size + 1
        return TokenWindowDataset(self.tokens[start:stop], self.block_size, self.stride)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} is out of range for {len(self)} windows")
        start = (index % len(self)) * self.stride
        window = self.tokens[start : start + self.block_size + 1]
        return window[:-1], window[1:]
