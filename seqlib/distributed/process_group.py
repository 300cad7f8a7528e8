"""The default process group: started from the MPI launcher, and collectives on tensors.

Launch with ``mpiexec -n 4 python -m mpi4py train.py``: each process learns its rank and the
world size from MPI (``-m mpi4py`` makes an uncaught exception on one rank abort the whole
job instead of leaving the others waiting). Without mpi4py, and not started by a launcher,
``init_process_group`` gives a world of one process, so the same script runs unchanged.
"""

from __future__ import annotations

import datetime
import enum
import importlib.util
import os
import sys

import numpy

from seqlib.core.backend import cuda_is_available, get_array_module
from seqlib.core.tensor import Tensor
from seqlib.distributed.local_backend import LocalBackend
from seqlib.distributed.mpi_backend import MPIBackend
from seqlib.distributed.nccl_backend import NCCLBackend
from seqlib.distributed.work import Work

BACKENDS = {"mpi": MPIBackend, "nccl": NCCLBackend}
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)  # PyTorch's default for its CPU backends
# environment variables in which MPI launchers pass the world size (MPICH/Intel MPI's hydra,
# Open MPI, MVAPICH)
_LAUNCHER_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")

_default_group = None  # the backend object, once init_process_group has run
_previous_excepthook = None  # sys.excepthook before init_process_group replaced it


class ReduceOp(enum.Enum):
    """How ``all_reduce`` combines the ranks' values."""

    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


# ---- the process group -------------------------------------------------------------------
def is_available() -> bool:
    """True: seqlib.distributed always works (a world of one without MPI)."""
    return True


def is_mpi_available() -> bool:
    """Whether mpi4py is installed (``pip install "seqlib[distributed]"``)."""
    return importlib.util.find_spec("mpi4py") is not None


def is_nccl_available() -> bool:
    """Whether CuPy with NCCL and a GPU are present."""
    if not cuda_is_available():
        return False
    try:
        from cupy.cuda import nccl
    except ImportError:
        return False
    return bool(getattr(nccl, "available", True))  # CuPy imports it without libnccl, too


def is_initialized() -> bool:
    """Whether ``init_process_group`` has run (and ``destroy_process_group`` not since)."""
    return _default_group is not None


def _launcher_world_size() -> int:
    for name in _LAUNCHER_SIZES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout: datetime.timedelta | float | None = None, world_size: int = -1,
                       rank: int = -1) -> None:
    """Join the processes the MPI launcher started.

    Args:
        backend: ``"mpi"`` (default; NumPy arrays, CuPy arrays through the host) or
            ``"nccl"`` (one process per GPU, the device chosen by the local rank; CuPy arrays
            stay on the GPU, NumPy arrays go through MPI).
        init_method: ``None`` or ``"env://"``: the launcher is the rendezvous.
        timeout: how long any collective may wait for the other ranks (a ``timedelta`` or
            seconds; default 30 minutes) before it raises ``DistributedTimeout``.
        world_size, rank: if given, checked against what the launcher says.
    Raises:
        RuntimeError: when already initialized, or when the launcher started several
            processes but mpi4py is missing.
        ValueError: an unknown backend, an unsupported ``init_method``, or a ``world_size``
            or ``rank`` that disagrees with the launcher.
    """
    global _default_group
    if _default_group is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    backend = "mpi" if backend is None else str(backend).lower()
    if backend not in BACKENDS:
        raise ValueError(f"init_process_group: unknown backend {backend!r}; "
                         f"choose one of {sorted(BACKENDS)}")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_method={init_method!r}: seqlib's process groups start from the "
                         "MPI launcher (mpiexec -n N python -m mpi4py script.py); leave it None")
    seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else timeout
    seconds = DEFAULT_TIMEOUT.total_seconds() if seconds is None else float(seconds)
    if not seconds > 0:
        raise ValueError(f"init_process_group: timeout must be positive, got {timeout}")
    if backend == "nccl" and not is_nccl_available():
        raise RuntimeError("init_process_group('nccl') needs CuPy with NCCL and a CUDA GPU")
    if is_mpi_available():
        group = BACKENDS[backend](seconds)
    elif _launcher_world_size() > 1 or backend == "nccl":
        raise RuntimeError(f"init_process_group({backend!r}) needs mpi4py (the launcher started "
                           f"{_launcher_world_size()} processes): pip install "
                           "\"seqlib[distributed]\"")
    else:
        group = LocalBackend(seconds)
    for name, given, actual in (("world_size", world_size, group.size), ("rank", rank,
                                                                         group.rank)):
        if given not in (-1, None) and given != actual:
            group.close()
            raise ValueError(f"init_process_group: {name}={given}, but the launcher made this "
                             f"process {name} {actual}")
    _default_group = group
    if group.size > 1:
        _abort_job_on_uncaught_exceptions()


def _abort_job_on_uncaught_exceptions() -> None:
    """An uncaught exception on one rank ends every rank at once (MPI_Abort), as
    ``python -m mpi4py`` arranges; otherwise this rank would wait in MPI_Finalize and the
    others in their next collective, until its deadline."""
    global _previous_excepthook
    from mpi4py import MPI

    _previous_excepthook = previous = sys.excepthook

    def abort(kind, value, traceback):
        previous(kind, value, traceback)  # the traceback first
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)

    sys.excepthook = abort


def destroy_process_group(group=None) -> None:
    """Leave the process group (``is_initialized()`` is False afterwards)."""
    global _default_group
    _check_group(group)
    global _previous_excepthook
    if _default_group is not None:
        _default_group.close()
        _default_group = None
    if _previous_excepthook is not None:
        sys.excepthook, _previous_excepthook = _previous_excepthook, None


def _check_group(group) -> None:
    if group is not None:
        raise NotImplementedError("process subgroups are not supported: pass group=None (the "
                                  "default group of all processes)")


def default_group():
    """The backend object of the default group.

    Raises:
        ValueError: (as PyTorch) when ``init_process_group`` has not run.
    """
    _check_group(None)
    if _default_group is None:
        raise ValueError("Default process group has not been initialized, please make sure to "
                         "call init_process_group.")
    return _default_group


def get_rank(group=None) -> int:
    """This process's rank, 0 to ``get_world_size() - 1``."""
    _check_group(group)
    return default_group().rank


def get_world_size(group=None) -> int:
    """The number of processes in the group."""
    _check_group(group)
    return default_group().size


def get_node_local_rank() -> int:
    """This process's rank among the group's processes on the same machine."""
    return default_group().local_rank


def get_backend(group=None) -> str:
    """``"mpi"`` or ``"nccl"``."""
    _check_group(group)
    return default_group().name


def rank_seed(seed: int, rank: int | None = None) -> int:
    """A seed for ``rank`` (default: this process's) derived from the run's ``seed``.

    Rank 0 gets ``seed`` itself, so one process reproduces the non-distributed run; the other
    ranks get independent streams (NumPy's ``SeedSequence(seed).spawn``), e.g. for dropout:
    ``sl.manual_seed(dist.rank_seed(seed))``. Model parameters need no common seed:
    ``DistributedDataParallel`` copies rank 0's to the others.
    """
    rank = get_rank() if rank is None else rank
    if rank == 0:
        return seed
    child = numpy.random.SeedSequence(seed, spawn_key=(rank,))
    return int(child.generate_state(1, numpy.uint64)[0] >> numpy.uint64(1))


# ---- collectives on tensors ---------------------------------------------------------------
def _finish(work: Work, async_op: bool) -> Work | None:
    if async_op:
        return work
    work.wait()
    return None


def _array_of(tensor, what: str, written: bool = True):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a seqlib Tensor, got {type(tensor).__name__}")
    if written:
        tensor._version[0] += 1  # changed in place, as by any in-place op
    return tensor._array


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group=None,
               async_op: bool = False) -> Work | None:
    """Combine ``tensor`` across ranks in place: every rank ends with the sum (average,
    maximum, ...) of all ranks' values.

    Returns:
        a ``Work`` to ``wait()`` on with ``async_op=True``, else None (complete).
    """
    _check_group(group)
    op = ReduceOp(op)
    if op is ReduceOp.AVG and tensor.dtype.kind != "f":
        raise TypeError(f"all_reduce: AVG needs a floating-point tensor, got {tensor.dtype}")
    return _finish(default_group().all_reduce(_array_of(tensor, "all_reduce"), op.value),
                   async_op)


def _check_rank(src: int, what: str) -> None:
    size = get_world_size()
    if not 0 <= src < size:
        raise ValueError(f"{what}: rank {src} is not in the group (ranks 0 to {size - 1})")


def broadcast(tensor: Tensor, src: int = 0, group=None, async_op: bool = False):
    """Overwrite ``tensor`` on every rank with rank ``src``'s values, in place."""
    _check_group(group)
    _check_rank(src, "broadcast")
    return _finish(default_group().broadcast(_array_of(tensor, "broadcast"), src), async_op)


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group=None,
                           async_op: bool = False):
    """``output_tensor`` ``(world_size * N, ...)`` (contiguous) receives every rank's
    ``input_tensor`` ``(N, ...)`` in rank order, written in place without a staging copy."""
    _check_group(group)
    size = get_world_size()
    shape = tuple(input_tensor.shape)
    expected = (size * shape[0], *shape[1:]) if shape else (size,)
    if tuple(output_tensor.shape) != expected or output_tensor.dtype != input_tensor.dtype:
        raise ValueError(f"all_gather_into_tensor: output must be {input_tensor.dtype} of shape "
                         f"{expected}, got {output_tensor.dtype} {tuple(output_tensor.shape)}")
    if not output_tensor._array.flags.c_contiguous:
        raise ValueError("all_gather_into_tensor: the output tensor must be contiguous")
    out = _array_of(output_tensor, "all_gather_into_tensor").reshape(size, *shape)  # a view
    work = default_group().all_gather(
        _array_of(input_tensor, "all_gather_into_tensor", written=False), out)
    return _finish(work, async_op)


def all_gather(tensor_list: list, tensor: Tensor, group=None, async_op: bool = False):
    """``tensor_list[r]`` receives rank ``r``'s ``tensor`` (each entry written in place)."""
    _check_group(group)
    size = get_world_size()
    if len(tensor_list) != size:
        raise ValueError(f"all_gather: tensor_list must hold {size} tensors (one per rank), "
                         f"got {len(tensor_list)}")
    for entry in tensor_list:
        if tuple(entry.shape) != tuple(tensor.shape) or entry.dtype != tensor.dtype:
            raise ValueError("all_gather: every entry of tensor_list must have the tensor's "
                             f"shape {tuple(tensor.shape)} and dtype {tensor.dtype}")
    array = _array_of(tensor, "all_gather", written=False)
    gathered = get_array_module(array).empty((size, *array.shape), array.dtype)

    def scatter():
        for entry, part in zip(tensor_list, gathered):
            _array_of(entry, "all_gather")[...] = part

    return _finish(default_group().all_gather(array, gathered).then(scatter), async_op)


def barrier(group=None, async_op: bool = False):
    """Return once every rank has called ``barrier`` (or raise after the group's timeout)."""
    _check_group(group)
    return _finish(default_group().barrier(), async_op)
