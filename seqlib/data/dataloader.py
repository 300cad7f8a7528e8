"""DataLoader: batches from a dataset, shuffled reproducibly, optionally in worker processes."""

from __future__ import annotations

import itertools
import multiprocessing
import traceback

import numpy

from seqlib.core.creation import as_tensor, randint
from seqlib.core.ops.shape import stack
from seqlib.core.random import manual_seed
from seqlib.core.tensor import Tensor
from seqlib.data.dataset import IterableDataset, TensorDataset
from seqlib.data.sampler import BatchSampler, RandomSampler, SequentialSampler


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
            order; an exception in a worker is re-raised here with its traceback.
        generator: a seeded Generator for shuffling (reproducible epochs).
        pin_memory: accepted and ignored (no pinned memory on NumPy).
        worker_init_fn: called with the worker id in each worker after seeding.
        prefetch_factor: batches in flight per worker.
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool = False, sampler=None,
                 drop_last: bool = False, collate_fn=None, num_workers: int = 0,
                 generator=None, pin_memory: bool = False, worker_init_fn=None,
                 prefetch_factor: int = 2):
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.num_workers, self.generator = num_workers, generator
        self.worker_init_fn, self.prefetch_factor = worker_init_fn, prefetch_factor
        self.collate_fn = collate_fn or (default_collate if batch_size is not None else None)
        if num_workers < 0:
            raise ValueError(f"num_workers option should be non-negative, got {num_workers}")
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
        # NOTE: as in PyTorch, batch i goes to worker i % num_workers through that worker's own
        # queue, so which worker (and which worker seed) loads a batch is reproducible. fork
        # shares the dataset without pickling it.
        base_seed = int(randint(0, 2**62, (1,), generator=self.generator).item())
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        queues = [context.Queue() for _ in range(self.num_workers)]
        workers = [
            context.Process(target=_worker_loop, daemon=True,
                            args=(self, worker_id, base_seed, queue, results))
            for worker_id, queue in enumerate(queues)
        ]
        for worker in workers:
            worker.start()
        try:
            groups = enumerate(self._index_groups())
            sent = 0
            for batch_index, indices in itertools.islice(
                    groups, self.num_workers * self.prefetch_factor):
                queues[batch_index % self.num_workers].put((batch_index, indices))
                sent += 1
            done, waiting = 0, {}
            while done < sent:
                while done not in waiting:
                    batch_index, result = results.get()
                    waiting[batch_index] = result
                result = waiting.pop(done)
                done += 1
                for batch_index, indices in itertools.islice(groups, 1):
                    queues[batch_index % self.num_workers].put((batch_index, indices))
                    sent += 1
                if isinstance(result, _WorkerError):
                    raise result.exception_type(result.message)
                yield result
        finally:
            for queue in queues:
                queue.put(None)
            for worker in workers:
                worker.join(timeout=5)
                if worker.is_alive():
                    worker.terminate()


class _WorkerError:
    """An exception raised in a worker, carried back with its formatted traceback."""

    def __init__(self, error: BaseException, worker_id: int):
        self.exception_type = type(error) if _can_build(type(error)) else RuntimeError
        self.message = (
            f"Caught {type(error).__name__} in DataLoader worker process {worker_id}.\n"
            f"Original {traceback.format_exc()}"
        )


def _can_build(exception_type) -> bool:
    try:
        exception_type("message")
    except Exception:
        return False
    return True


def _worker_loop(loader, worker_id, base_seed, queue, results) -> None:
    """Load the batches sent to this worker until told to stop (``None``)."""
    manual_seed(base_seed + worker_id)
    if loader.worker_init_fn is not None:
        loader.worker_init_fn(worker_id)
    while True:
        task = queue.get()
        if task is None:
            return
        batch_index, indices = task
        try:
            results.put((batch_index, loader._fetch(indices)))
        except Exception as error:  # re-raised in the main process
            results.put((batch_index, _WorkerError(error, worker_id)))
