"""DataLoader worker processes: batches loaded in parallel, handed back in order, shut down
surely (on completion, error, timeout, abandonment and garbage collection)."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import time
import traceback
import weakref

from seqlib.core.random import manual_seed

# How often a waiting main process checks that its workers are alive, and a waiting worker that
# its main process is (PyTorch's MP_STATUS_CHECK_INTERVAL).
STATUS_CHECK_INTERVAL = 5.0


class WorkerPool:
    """``loader.num_workers`` processes that load ``loader``'s batches, epoch after epoch.

    Args:
        loader: the DataLoader; each worker gets a fork-time copy of it (and its dataset), so
            the dataset is never pickled.
    """

    def __init__(self, loader):
        context = multiprocessing.get_context("fork")
        self.results = context.Queue()  # (epoch, batch index, batch or WorkerError)
        self.tasks = [context.Queue() for _ in range(loader.num_workers)]  # one per worker
        self.workers = [
            context.Process(target=_worker_loop, daemon=True,
                            args=(loader, worker_id, tasks, self.results, os.getpid()))
            for worker_id, tasks in enumerate(self.tasks)
        ]
        for worker in self.workers:
            worker.start()
        self.epoch = 0  # epochs started; results of older ones are dropped on arrival
        self._finalizer = weakref.finalize(self, stop_workers, self.workers, self.tasks,
                                           os.getpid(), 1.0)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self, grace: float) -> None:
        """Stop the workers: ask them, wait up to ``grace`` seconds, then terminate them."""
        detached = self._finalizer.detach()
        if detached is not None:
            _, _, (workers, tasks, owner, _), _ = detached
            stop_workers(workers, tasks, owner, grace)

    def run_epoch(self, base_seed: int, index_groups, prefetch_factor: int, timeout: float):
        """Yield the batches for ``index_groups`` (lists of dataset indices), in order.

        Each worker first reseeds from ``base_seed`` (``base_seed + worker_id``), so an epoch
        draws the same random numbers whether the workers are new or persistent.

        Args:
            base_seed: this epoch's seed.
            index_groups: an iterable of index lists, one per batch.
            prefetch_factor: batches in flight per worker.
            timeout: seconds to wait for any one batch (0: no limit).
        """
        # NOTE: as in PyTorch, batch i goes to worker i % num_workers through that worker's own
        # queue, so which worker (and which worker seed) loads a batch is reproducible.
        self.epoch += 1
        epoch, num_workers = self.epoch, len(self.workers)
        for tasks in self.tasks:
            tasks.put(("seed", epoch, base_seed))
        groups = enumerate(index_groups)
        sent = 0
        for batch_index, indices in itertools.islice(groups, num_workers * prefetch_factor):
            self.tasks[batch_index % num_workers].put(("batch", epoch, (batch_index, indices)))
            sent += 1
        done, waiting = 0, {}
        while done < sent:
            while done not in waiting:
                batch_epoch, batch_index, result = self._next_result(timeout)
                if batch_epoch == epoch:
                    waiting[batch_index] = result
            result = waiting.pop(done)
            done += 1
            for batch_index, indices in itertools.islice(groups, 1):
                self.tasks[batch_index % num_workers].put(("batch", epoch, (batch_index, indices)))
                sent += 1
            if isinstance(result, WorkerError):
                raise result.exception_type(result.message)
            yield result
            if self.epoch != epoch:
                raise RuntimeError("this DataLoader iterator was abandoned: a newer epoch "
                                   "started on the same persistent workers")

    def _next_result(self, timeout: float):
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            wait = STATUS_CHECK_INTERVAL
            if deadline is not None:
                wait = max(min(wait, deadline - time.monotonic()), 0.0)
            try:
                return self.results.get(timeout=wait)
            except queue.Empty:
                pass
            dead = [str(worker.pid) for worker in self.workers if not worker.is_alive()]
            if dead:
                self.close(grace=0.0)
                raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(dead)}) exited "
                                   "unexpectedly")
            if deadline is not None and time.monotonic() >= deadline:
                self.close(grace=0.0)  # a worker is stuck: these workers are not reusable
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds")


def stop_workers(workers: list, tasks: list, owner: int, grace: float) -> None:
    """Tell each worker to stop, wait up to ``grace`` seconds, terminate (then kill) the rest,
    and reap them all, so no process outlives its pool.

    Only the process ``owner`` that started them does this: a forked worker of another loader
    holds a copy of this pool, and must not stop it when the copy is collected.
    """
    if os.getpid() != owner:
        return
    for task_queue in tasks:
        task_queue.put(None)
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(max(deadline - time.monotonic(), 0.0))
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
            worker.join(1.0)
        if worker.is_alive():  # SIGTERM ignored or handled by user code
            worker.kill()
            worker.join()
    for task_queue in tasks:
        task_queue.cancel_join_thread()  # never block this process's exit on a dead reader
        task_queue.close()


class WorkerError:
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


def _worker_loop(loader, worker_id: int, tasks, results, parent_pid: int) -> None:
    """Load the batches sent to this worker until told to stop (``None``) or orphaned."""
    # at exit, do not wait to flush results to a main process that stopped reading them
    results.cancel_join_thread()
    initialized = False
    while True:
        try:
            task = tasks.get(timeout=STATUS_CHECK_INTERVAL)
        except queue.Empty:
            if os.getppid() != parent_pid:  # the main process died without stopping us
                return
            continue
        if task is None:
            return
        kind, epoch, payload = task
        if kind == "seed":
            manual_seed(payload + worker_id)
            if not initialized and loader.worker_init_fn is not None:
                loader.worker_init_fn(worker_id)  # once per process, after the first seeding
            initialized = True
            continue
        batch_index, indices = payload
        try:
            batch = loader._fetch(indices)
        except Exception as error:  # re-raised in the main process
            batch = WorkerError(error, worker_id)
        results.put((epoch, batch_index, batch))
