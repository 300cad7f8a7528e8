"""DataLoader: batches from a dataset, shuffled reproducibly, optionally in worker processes."""

from __future__ import annotations

import itertools

import numpy

from seqlib.core.creation import as_tensor, randint
from seqlib.core.ops.shape import stack
from seqlib.core.tensor import Tensor
from seqlib.data.dataset import IterableDataset, TensorDataset
from seqlib.data.sampler import BatchSampler, RandomSampler, SequentialSampler
from seqlib.data.worker import WorkerPool


def default_collate(batch: list):
    """Stack samples into a batch: tensors and arrays are stacked along a new dim 0, numbers
    become a tensor, and tuples, lists and dicts are collated field by field."""
    first = batch[0]
    if isinstance(first, Tensor):
        return stack(batch)
    if isinstance(first, numpy.ndarray):
        return stack([as_tensor(x) for x in batch])
    if isinstance(first, float):
        return as_tensor(numpy.array(batch, dtype=numpy.float64))  # PyTorch: float64
    if isinstance(first, (bool, int, numpy.number)):
        return as_tensor(numpy.array(batch))
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, dict):
        return {key: default_collate([sample[key] for sample in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(sample) != len(first) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        if hasattr(first, "_fields"):  # a namedtuple keeps its type
            return type(first)(*fields)
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(
        "default_collate: batch must contain tensors, NumPy arrays, numbers, dicts or lists; "
        f"found {type(first).__name__}"
    )


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a map-style Dataset or an IterableDataset.
        batch_size: samples per batch; None yields samples one by one (no collation).
        shuffle: visit samples in a random order each epoch (map-style datasets only).
        sampler: a custom index sampler (excludes ``shuffle``).
        drop_last: drop the last, smaller batch.
        collate_fn: turns a list of samples into a batch (default ``default_collate``).
        num_workers: worker processes (0: load in the main process). Batches come back in
            order; an exception in a worker is re-raised here with its traceback. A worker
            that dies (an exit, a signal such as the OOM killer's SIGKILL) or stops (on
            ``KeyboardInterrupt``, ``SystemExit`` or an exception in ``worker_init_fn``) is
            reported at once, by worker id, with its exit code, signal or traceback.
        generator: a seeded Generator for shuffling (reproducible epochs).
        pin_memory: accepted and ignored (no pinned memory on NumPy).
        worker_init_fn: called with the worker id in each worker process once, after its
            first seeding.
        prefetch_factor: batches in flight per worker, at least 1 (default 2 with workers);
            only valid with ``num_workers > 0``, as in PyTorch.
        persistent_workers: keep the worker processes (and their copy of the dataset) alive
            from one epoch to the next instead of starting new ones; needs ``num_workers > 0``.
            Each epoch still reseeds them from ``generator``, so the batches are the same as
            without it.
        timeout: seconds to wait for a batch from the workers before raising ``RuntimeError``
            (0: wait as long as it takes). Only workers can time out: iterating with
            ``timeout > 0`` and ``num_workers=0`` raises, as in PyTorch.

    Worker processes are stopped when an epoch ends (unless persistent), when the iteration
    is abandoned, on an error, timeout or Ctrl-C (which they ignore themselves), and when the
    loader is garbage-collected; on Linux they die with a killed main process.
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool = False, sampler=None,
                 drop_last: bool = False, collate_fn=None, num_workers: int = 0,
                 generator=None, pin_memory: bool = False, worker_init_fn=None,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 timeout: float = 0):
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.num_workers, self.generator = num_workers, generator
        self.worker_init_fn, self.prefetch_factor = worker_init_fn, prefetch_factor
        self.persistent_workers, self.timeout = persistent_workers, timeout
        self.collate_fn = collate_fn or (default_collate if batch_size is not None else None)
        if num_workers < 0:
            raise ValueError(f"num_workers option should be non-negative, got {num_workers}")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing: "
                             "let num_workers > 0 to enable multiprocessing, otherwise set "
                             "prefetch_factor to None")
        if num_workers > 0:
            self.prefetch_factor = 2 if prefetch_factor is None else prefetch_factor
            if self.prefetch_factor < 1:  # 0 would load no batch at all
                raise ValueError("prefetch_factor option should be at least 1 with "
                                 f"num_workers > 0, got {prefetch_factor}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        self._pool = None  # the persistent workers, once started
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle or sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified shuffle and sampler, "
                    f"got shuffle={shuffle}, sampler={sampler}"
                )
            self.sampler = None
        else:
            if sampler is not None and shuffle:
                raise ValueError("sampler option is mutually exclusive with shuffle")
            self.sampler = sampler or (RandomSampler(dataset, generator) if shuffle
                                       else SequentialSampler(dataset))
        self.batch_sampler = (BatchSampler(self.sampler, batch_size, drop_last)
                              if batch_size is not None and self.sampler is not None else None)

    def __len__(self) -> int:
        if self._iterable:
            raise TypeError("an IterableDataset has no len()")
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)

    def _index_groups(self):
        if self.batch_sampler is not None:
            return iter(self.batch_sampler)
        return ([i] for i in self.sampler)

    def _fetch(self, indices):
        if self.collate_fn is default_collate and isinstance(self.dataset, TensorDataset):
            # the same batch as stacking rows one by one, in one indexing op per tensor
            rows = as_tensor(numpy.asarray(indices, dtype=numpy.int64))
            return tuple(t[rows] for t in self.dataset.tensors)
        samples = [self.dataset[i] for i in indices]
        if self.batch_size is None:
            return samples[0]
        return self.collate_fn(samples)

    def __iter__(self):
        if self.num_workers == 0 and self.timeout > 0:
            raise ValueError(f"timeout={self.timeout} needs num_workers > 0: the main process "
                             "loads its own batches and has nothing to wait for")
        if self._iterable:
            return self._iterate_stream()
        if self.num_workers == 0:
            return (self._fetch(indices) for indices in self._index_groups())
        return self._iterate_workers()

    def _iterate_stream(self):
        stream = iter(self.dataset)
        if self.batch_size is None:
            yield from stream
            return
        while True:
            batch = list(itertools.islice(stream, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield self.collate_fn(batch)

    def _iterate_workers(self):
        base_seed = int(randint(0, 2**62, (1,), generator=self.generator).item())
        pool = self._pool
        if pool is None or pool.closed:  # closed: a timeout or a dead worker ended it
            pool = WorkerPool(self)
            if self.persistent_workers:
                self._pool = pool
        try:
            yield from pool.run_epoch(base_seed, self._index_groups(), self.prefetch_factor,
                                      self.timeout)
        finally:
            if not self.persistent_workers:
                # idle workers stop at once; busy ones (an abandoned or failed epoch) are
                # terminated rather than waited for
                pool.close()
