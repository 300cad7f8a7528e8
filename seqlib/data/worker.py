"""DataLoader worker processes: batches loaded in parallel, handed back in order, shut down
surely (on completion, error, timeout, abandonment, Ctrl-C, garbage collection and the death of
the main process), and a worker that dies reported in the main process at once, by id, with its
exit code or signal."""

from __future__ import annotations

import collections
import ctypes
import itertools
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
import weakref
from multiprocessing.connection import wait

from seqlib.core.random import manual_seed

# How often an idle worker checks that its main process is alive (PyTorch's
# MP_STATUS_CHECK_INTERVAL): the fallback where PR_SET_PDEATHSIG is not available.
STATUS_CHECK_INTERVAL = 5.0
# How long stopping waits for idle workers to exit on their own before terminating them; busy
# ones (an abandoned or failed epoch) are terminated at once.
STOP_GRACE = 5.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class WorkerPool:
    """``loader.num_workers`` processes that load ``loader``'s batches, epoch after epoch.

    Args:
        loader: the DataLoader; each worker gets a fork-time copy of it (and its dataset), so
            the dataset is never pickled.
    """

    def __init__(self, loader):
        context = multiprocessing.get_context("fork")
        self.tasks = [context.Queue() for _ in range(loader.num_workers)]  # one per worker
        self.results = []  # one pipe per worker: (epoch, batch index, batch or WorkerError)
        self.workers = []
        self.received = collections.deque()  # results read, not yet handed out
        self.epoch = 0  # epochs started; results of older ones are dropped on arrival
        self.unanswered = [0]  # batches asked for, not yet received (a list: stop_workers reads it)
        self._finalizer = weakref.finalize(self, stop_workers, self.workers, self.tasks,
                                           self.results, self.unanswered, os.getpid())
        # NOTE: Linux sends the parent-death signal when the *thread* that forked a worker
        # ends, so only workers forked by the main thread ask for it; the others poll
        by_main_thread = threading.current_thread() is threading.main_thread()
        for worker_id, tasks in enumerate(self.tasks):
            reader, writer = context.Pipe(duplex=False)
            self.results.append(reader)
            worker = context.Process(target=_worker_loop, daemon=True,
                                     args=(loader, worker_id, tasks, writer, os.getpid(),
                                           list(self.results), by_main_thread))
            try:
                worker.start()
            finally:
                # NOTE: closed here before the next fork, so the worker holds the only writing
                # end: its death reads as the end of the pipe, even half-way through a batch,
                # never as a wait for bytes that cannot come
                writer.close()
            self.workers.append(worker)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Stop the workers (``stop_workers``); the pool cannot be used again."""
        if self._finalizer.alive:
            self._finalizer()

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
            self._ask(epoch, batch_index, indices)
            sent += 1
        done, waiting = 0, {}
        while done < sent:
            while done not in waiting:
                try:
                    batch_epoch, batch_index, result = self._next_result(timeout)
                except BaseException:
                    # a dead or stuck worker, or a Ctrl-C (perhaps half-way through reading a
                    # batch): these workers are not reusable
                    self.close()
                    raise
                if batch_epoch == epoch:
                    waiting[batch_index] = result
            result = waiting.pop(done)
            done += 1
            for batch_index, indices in itertools.islice(groups, 1):
                self._ask(epoch, batch_index, indices)
                sent += 1
            if isinstance(result, WorkerError):
                raise result.exception()
            yield result
            if self.epoch != epoch:
                raise RuntimeError("this DataLoader iterator was abandoned: a newer epoch "
                                   "started on the same persistent workers")

    def _ask(self, epoch: int, batch_index: int, indices) -> None:
        self.tasks[batch_index % len(self.tasks)].put(("batch", epoch, (batch_index, indices)))
        self.unanswered[0] += 1

    def _next_result(self, timeout: float) -> tuple:
        """The next ``(epoch, batch index, batch or WorkerError)`` from any worker.

        Raises:
            RuntimeError: a worker died (named, with its exit code or signal), or nothing came
                within ``timeout`` seconds (0: no limit).
        """
        deadline = time.monotonic() + timeout if timeout else None
        while not self.received:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ready = wait(self.results + [worker.sentinel for worker in self.workers], left)
            if not ready:
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds")
            for worker_id, (reader, worker) in enumerate(zip(self.results, self.workers)):
                if reader in ready:
                    self._receive(worker_id)
                elif worker.sentinel in ready:  # it exited: what it sent before comes first
                    while reader.poll():
                        self._receive(worker_id)
                    raise self._death(worker_id)
        return self.received.popleft()

    def _receive(self, worker_id: int) -> None:
        """Read one result from worker ``worker_id``; raise if it is the error that stopped the
        worker, or if the worker's pipe has ended."""
        try:
            message = self.results[worker_id].recv()
        except (EOFError, OSError):  # the worker is gone, perhaps half-way through a batch
            raise self._death(worker_id) from None
        error = message[2]
        if isinstance(error, WorkerError) and error.fatal:  # the reason the worker stopped
            raise error.exception()
        self.received.append(message)
        self.unanswered[0] -= 1

    def _death(self, worker_id: int) -> RuntimeError:
        """The error that says how worker ``worker_id`` ended."""
        worker = self.workers[worker_id]
        worker.join(1.0)  # the end of its pipe may come a moment before its exit status
        name = f"DataLoader worker {worker_id} (pid {worker.pid})"
        if worker.exitcode is None:
            return RuntimeError(f"{name} closed its connection to the main process")
        if worker.exitcode >= 0:
            return RuntimeError(f"{name} exited unexpectedly with exit code {worker.exitcode}")
        number = -worker.exitcode
        message = (f"{name} was killed by signal {signal.Signals(number).name} "
                   f"({signal.strsignal(number)})")
        if number == signal.SIGKILL:
            message += (". The kernel's out-of-memory killer sends SIGKILL: if the worker ran "
                        "out of memory, use fewer workers or smaller batches")
        return RuntimeError(message)


def stop_workers(workers: list, tasks: list, results: list, unanswered: list,
                 owner: int) -> None:
    """Tell each worker to stop, wait up to ``STOP_GRACE`` seconds if none has ``unanswered``
    batches (else not at all), terminate (then kill) the rest, and reap them all, so no process
    outlives its pool.

    Only the process ``owner`` that started them does this: a forked worker of another loader
    holds a copy of this pool, and must not stop it when the copy is collected.
    """
    if os.getpid() != owner:
        return
    for task_queue in tasks:
        task_queue.put(None)
    deadline = time.monotonic() + (0.0 if unanswered[0] else STOP_GRACE)
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
    for reader in results:
        reader.close()


class WorkerError:
    """An exception raised in a worker, carried back with its formatted traceback.

    Args:
        error: the exception being handled.
        worker_id: the worker that raised it.
        where: what the worker was doing, if not loading a batch (" while running ...").
        fatal: the worker stops after sending it, so the main process raises it at once
            rather than in its batch's turn.
    """

    def __init__(self, error: BaseException, worker_id: int, where: str = "",
                 fatal: bool = False):
        # NOTE: a KeyboardInterrupt or SystemExit in a worker is no reason for the main process
        # to stop or exit: it arrives as a RuntimeError, as do types that cannot be rebuilt
        self.exception_type = type(error) if _can_build(type(error)) else RuntimeError
        self.fatal = fatal
        self.message = (
            f"Caught {type(error).__name__} in DataLoader worker process {worker_id}{where}.\n"
            f"Original {traceback.format_exc()}"
        )

    def exception(self) -> Exception:
        return self.exception_type(self.message)


def _can_build(exception_type) -> bool:
    """Whether the main process can raise ``exception_type(message)`` for a worker's error."""
    if not issubclass(exception_type, Exception):
        return False
    try:
        exception_type("message")
        return pickle.loads(pickle.dumps(exception_type)) is exception_type  # not a local class
    except Exception:
        return False


def _worker_loop(loader, worker_id: int, tasks, results, parent_pid: int, inherited: list,
                 with_parent: bool) -> None:
    """Load the batches sent to this worker until told to stop (``None``) or orphaned.

    Args:
        results: the writing end of this worker's pipe to the main process.
        inherited: the main process's reading ends, which this worker must not hold.
        with_parent: die with the main process (``die_with_parent``).
    """
    # a terminal's Ctrl-C reaches the whole process group: the main process handles it and
    # stops the workers, which would otherwise each print a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if with_parent:
        die_with_parent()
    if os.getppid() != parent_pid:  # the main process died before we could ask
        return
    for reader in inherited:
        reader.close()
    try:
        _serve(loader, worker_id, _tasks(tasks, parent_pid), results)
    except BrokenPipeError:  # the main process stopped reading: nobody is left to tell
        pass


def die_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``), even while
    it is busy in ``__getitem__``; elsewhere only an idle worker notices, by polling."""
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _tasks(tasks, parent_pid: int):
    """This worker's tasks, until it is told to stop (``None``) or its main process is gone."""
    while True:
        try:
            task = tasks.get(timeout=STATUS_CHECK_INTERVAL)
        except queue.Empty:
            if os.getppid() != parent_pid:  # the main process died without stopping us
                return
            continue
        if task is None:
            return
        yield task


def _serve(loader, worker_id: int, tasks, results) -> None:
    """Run this worker's tasks: reseed (the first time, also call ``worker_init_fn``), or load
    a batch and send it; send an error that stops the worker, then return."""
    initialized = False
    for kind, epoch, payload in tasks:
        if kind == "seed":
            manual_seed(payload + worker_id)
            if not initialized and loader.worker_init_fn is not None:
                try:
                    loader.worker_init_fn(worker_id)  # once per process, after the first seeding
                except BaseException as error:  # the worker is not fit to load anything
                    _send(results, worker_id, (epoch, None, WorkerError(
                        error, worker_id, " while running worker_init_fn", fatal=True)))
                    return
            initialized = True
            continue
        batch_index, indices = payload
        try:
            batch = loader._fetch(indices)
        except Exception as error:  # re-raised in the main process, in its batch's turn
            batch = WorkerError(error, worker_id)
        except BaseException as error:  # KeyboardInterrupt, SystemExit: report it, then stop
            _send(results, worker_id, (epoch, batch_index,
                                       WorkerError(error, worker_id, fatal=True)))
            return
        _send(results, worker_id, (epoch, batch_index, batch))


def _send(results, worker_id: int, message: tuple) -> None:
    """Send ``message`` to the main process, or, if it cannot be pickled, the reason why."""
    try:
        results.send(message)
    except BrokenPipeError:
        raise
    except Exception as error:  # pickling failed: nothing was written yet
        epoch, batch_index, _ = message
        results.send((epoch, batch_index, WorkerError(
            error, worker_id, " while sending a batch to the main process")))
