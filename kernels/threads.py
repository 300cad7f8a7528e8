"""The worker threads of the CPU kernels.

The CPU causal product cuts its work into blocks of heads (or batch rows) and runs them on a
pool of worker threads: NumPy releases the GIL inside matmul and copies, so the cores share the
many small GEMMs. The default is one worker per CPU (at most ``MAX_DEFAULT_THREADS``)::

    default workers = max(1, min(MAX_DEFAULT_THREADS, cpus))

* ``cpus``: the CPUs this process may run on (its affinity mask).

BLAS's own threads do not lower it: the kernels' GEMMs (a chunk, ``C x D`` by ``D x M``, about
64^3 multiply-adds) are below the size at which OpenBLAS splits a GEMM over threads (it gives
a GEMM one thread per 262,144 multiply-adds), so each worker's GEMMs run in the worker itself.
Measured on 2 CPUs with BLAS's default of 2 threads (fp32, forward+backward): the causal
product at ``N=1, H=8, L=4096, D=M=64`` took 66 ms on one worker and 42 ms on two; a
TransformerLM training step (d_model 256, 16 x 256 tokens) 775 ms and 646 ms. ``blas_threads``
still says what BLAS's variables ask for, for callers that size their own work by it.

Explicit settings win over the default: ``set_num_threads(n)`` in the program, else the
environment variable ``SEQLIB_NUM_THREADS=n``.

Importing the kernels starts no thread and changes no setting; the pool starts on first use.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

MAX_DEFAULT_THREADS = 8  # more workers than heads (typically 8) only split batch rows finer
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                  "OMP_NUM_THREADS")

_requested = None  # set_num_threads's value, or None
_pool = None
_pool_size = 0
_lock = threading.Lock()


def _positive_int(text) -> int | None:
    """``text`` (an environment value; OpenMP allows a list such as "4,2") as a positive int."""
    try:
        value = int(str(text).split(",")[0])
    except ValueError:
        return None
    return value if value > 0 else None


def cpu_count() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def blas_threads() -> int:
    """BLAS's threads as its environment variables set them (one per CPU when none is set)."""
    for name in BLAS_VARIABLES:
        value = _positive_int(os.environ.get(name, ""))
        if value is not None:
            return value
    return cpu_count()


def default_num_threads() -> int:
    """``max(1, min(MAX_DEFAULT_THREADS, cpus))``."""
    return max(1, min(MAX_DEFAULT_THREADS, cpu_count()))


def set_num_threads(n: int | None) -> None:
    """Run the CPU kernels on ``n`` worker threads (``None``: back to the default).

    Args:
        n: a positive number of threads, or None.
    """
    global _requested
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
        raise ValueError(f"set_num_threads: n must be a positive integer or None, got {n!r}")
    _requested = None if n is None else int(n)


def get_num_threads() -> int:
    """The worker threads the CPU kernels use: ``set_num_threads``'s number, else
    ``SEQLIB_NUM_THREADS``'s, else ``default_num_threads()``."""
    if _requested is not None:
        return _requested
    from_environment = _positive_int(os.environ.get("SEQLIB_NUM_THREADS", ""))
    return from_environment if from_environment is not None else default_num_threads()


def run_all(function, tasks: list) -> list:
    """``[function(*task) for task in tasks]``, the tasks spread over the worker threads (in
    the calling thread when there is one task or one worker)."""
    global _pool, _pool_size
    workers = get_num_threads()
    if len(tasks) == 1 or workers == 1:
        return [function(*task) for task in tasks]
    with _lock:  # submitted under the lock: a resize cannot shut the pool down in between
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)  # queued tasks still run; then its threads exit
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="seqlib-kernels")
            _pool_size = workers
        futures = [_pool.submit(function, *task) for task in tasks]
    return [future.result() for future in futures]
