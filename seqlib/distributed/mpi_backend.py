"""The MPI backend: collectives on NumPy arrays through mpi4py's non-blocking calls.

Every collective is started with MPI's non-blocking variant (``Iallreduce``, ``Ibcast``,
``Iallgather``, ``Ibarrier``) and returned as a ``Work`` whose ``wait`` polls with a deadline,
so a rank that never joins makes the others raise instead of hanging. CuPy arrays travel
through host memory here (the PyPI MPI is not CUDA-aware); the NCCL backend keeps them on the
GPU.
"""

from __future__ import annotations

import numpy

from seqlib.core.backend import cupy
from seqlib.distributed.work import Work


def _is_cupy(array) -> bool:
    return cupy is not None and isinstance(array, cupy.ndarray)


def staged(array):
    """``(buffer, copy_back)``: a C-contiguous host array holding ``array``'s values, and the
    function that writes the buffer back into ``array`` (None when the buffer is ``array``)."""
    if _is_cupy(array):
        buffer = cupy.asnumpy(array)
        return buffer, lambda: array.__setitem__(Ellipsis, cupy.asarray(buffer))
    if array.flags.c_contiguous:
        return array, None
    buffer = numpy.ascontiguousarray(array)
    return buffer, lambda: numpy.copyto(array, buffer)


def scale_by(array, factor: float):
    """Multiply ``array`` in place by ``factor`` (in its own dtype: float32 stays float32)."""
    array *= array.dtype.type(factor)


class MPIBackend:
    """Collectives among the processes that ``mpiexec`` started (``MPI.COMM_WORLD``).

    Args:
        timeout: seconds a collective may take before ``Work.wait`` raises.
    """

    name = "mpi"

    def __init__(self, timeout: float):
        from mpi4py import MPI

        self.MPI, self.timeout = MPI, timeout
        world = MPI.COMM_WORLD
        # every rank must be here before the blocking communicator calls below
        self._wait("init_process_group", [world.Ibarrier()])
        self.comm = world.Dup()  # our own communicator: a user's MPI calls cannot interleave
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self._ops = {"sum": MPI.SUM, "avg": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN,
                     "product": MPI.PROD}
        # MPI reduces booleans only logically: any (sum, max) and all (min, product)
        self._bool_ops = {"sum": MPI.LOR, "max": MPI.LOR, "min": MPI.LAND, "product": MPI.LAND}

    def _wait(self, what: str, requests: list) -> None:
        self._work(what, requests, (), None).wait()

    def _work(self, what: str, requests: list, keep: tuple, finish) -> Work:
        """A Work over MPI requests; ``keep`` holds the buffers MPI writes into until then."""
        test = self.MPI.Request.Testall
        work = Work(what, lambda: test(requests), finish, self.timeout)
        work.buffers = keep  # freeing a buffer while MPI writes into it corrupts memory
        return work

    def all_reduce(self, array, op: str) -> Work:
        """Reduce ``array`` across ranks in place (``op``: sum, avg, max, min, product)."""
        buffer, copy_back = staged(array)
        ops = self._bool_ops if buffer.dtype == numpy.bool_ else self._ops
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=ops[op])

        def finish():
            if op == "avg":
                scale_by(buffer, 1.0 / self.size)
            if copy_back is not None:
                copy_back()

        return self._work("all_reduce", [request], (array, buffer), finish)

    def broadcast(self, array, root: int) -> Work:
        """Overwrite ``array`` on every rank with rank ``root``'s, in place."""
        buffer, copy_back = staged(array)
        request = self.comm.Ibcast(buffer, root=root)
        finish = copy_back if self.rank != root else None
        return self._work("broadcast", [request], (array, buffer), finish)

    def all_gather(self, array, out) -> Work:
        """``out[r] = array`` of rank ``r`` for every rank (``out``: ``(size, *array.shape)``)."""
        buffer, _ = staged(array)
        target, copy_back = staged(out)
        request = self.comm.Iallgather(buffer, target)
        return self._work("all_gather", [request], (array, buffer, out, target), copy_back)

    def barrier(self) -> Work:
        """Complete once every rank has entered the barrier."""
        return self._work("barrier", [self.comm.Ibarrier()], (), None)

    def close(self) -> None:
        self.comm.Free()
