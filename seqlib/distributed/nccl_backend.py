"""The NCCL backend: CuPy arrays reduced on their GPU, in place, by NCCL (through CuPy).

One process per GPU: the device is the process's rank among those on its node (MPI's
shared-memory split), so ``mpiexec -n 8`` on an 8-GPU machine gives each process its own GPU.
MPI starts the processes, carries NCCL's unique id from rank 0 to the others, and handles
NumPy arrays (NCCL only moves device memory). NCCL collectives are queued on the current
CUDA stream, so later kernels see their results without any host round trip; ``Work.wait``
additionally blocks the host until the collective is done, with the deadline of every wait.
"""

from __future__ import annotations

import numpy

from seqlib.core.backend import cupy
from seqlib.distributed.mpi_backend import MPIBackend, scale_by
from seqlib.distributed.work import Work

_ID_BYTES = 128  # NCCL_UNIQUE_ID_BYTES


class NCCLBackend:
    """NCCL among the processes ``mpiexec`` started, one GPU each.

    Args:
        timeout: seconds a collective may take before ``Work.wait`` raises (and aborts the
            communicator, which frees the GPU from a collective that cannot finish).
    """

    name = "nccl"

    def __init__(self, timeout: float):
        from cupy.cuda import nccl

        self.nccl, self.timeout = nccl, timeout
        self.mpi = MPIBackend(timeout)
        self.rank, self.size = self.mpi.rank, self.mpi.size
        self.local_rank, self.local_size = self.mpi.local_rank, self.mpi.local_size
        devices = cupy.cuda.runtime.getDeviceCount()
        if self.local_size > devices:
            raise RuntimeError(f"init_process_group('nccl'): {self.local_size} processes on this "
                               f"node but {devices} GPUs; start one process per GPU")
        self.device = self.local_rank
        cupy.cuda.Device(self.device).use()
        self.comm = nccl.NcclCommunicator(self.size, self._unique_id(), self.rank)
        self._dtypes = {numpy.dtype(name): getattr(nccl, f"NCCL_{name.upper()}") for name in
                        ("float16", "float32", "float64", "int8", "uint8", "int32", "int64")}
        self._ops = {"sum": nccl.NCCL_SUM, "avg": nccl.NCCL_SUM, "max": nccl.NCCL_MAX,
                     "min": nccl.NCCL_MIN, "product": nccl.NCCL_PROD}

    def _unique_id(self):
        """Rank 0's NCCL id on every rank, sent over MPI (CuPy gives bytes, or older CuPy a
        tuple of ints, which is sent as such)."""
        message = numpy.zeros(1 + _ID_BYTES, numpy.int16)  # [is a tuple, 128 values]
        if self.rank == 0:
            unique_id = self.nccl.get_unique_id()
            is_tuple = isinstance(unique_id, tuple)
            message[0] = is_tuple
            message[1:] = unique_id if is_tuple else numpy.frombuffer(unique_id, numpy.uint8)
        self.mpi.broadcast(message, 0).wait()
        if message[0]:
            return tuple(int(value) for value in message[1:])
        return bytes(message[1:].astype(numpy.uint8))

    # ---- collectives ---------------------------------------------------------------------
    def _check(self, array) -> None:
        if array.device.id != self.device:
            raise ValueError(f"NCCL collective on an array on cuda:{array.device.id}; this "
                             f"process's communicator is on cuda:{self.device}")
        if array.dtype not in self._dtypes:
            raise TypeError(f"NCCL cannot reduce {array.dtype} arrays")

    def _launch(self, what: str, array, call, finish=None) -> Work:
        """Run ``call(buffer_pointer, stream_pointer)`` on a contiguous ``array`` (a copy
        written back afterwards, on the stream, if it is not) and return its Work."""
        self._check(array)
        buffer = array if array.flags.c_contiguous else cupy.ascontiguousarray(array)
        stream = cupy.cuda.get_current_stream()
        call(buffer.data.ptr, stream.ptr)
        if finish is not None:
            finish(buffer)
        if buffer is not array:
            array[...] = buffer
        work = self._queued(what)
        work.buffers = (array, buffer)
        return work

    def _queued(self, what: str) -> Work:
        """A Work complete once the GPU has run everything queued so far on the stream."""
        done = cupy.cuda.Event(disable_timing=True)
        done.record(cupy.cuda.get_current_stream())

        def poll() -> bool:
            self.comm.check_async_error()  # raises on NCCL's own errors
            return done.done

        return Work(what, poll, None, self.timeout, on_timeout=self.comm.abort)

    def all_reduce(self, array, op: str) -> Work:
        if not isinstance(array, cupy.ndarray):
            return self.mpi.all_reduce(array, op)
        if array.dtype == numpy.bool_:  # as bytes: any (sum, max) and all (min, product)
            array, op = array.view(numpy.uint8), {"sum": "max", "product": "min"}.get(op, op)
        dtype, nccl_op = self._dtypes.get(array.dtype), self._ops[op]

        def call(pointer, stream):
            self.comm.allReduce(pointer, pointer, array.size, dtype, nccl_op, stream)

        finish = (lambda buffer: scale_by(buffer, 1.0 / self.size)) if op == "avg" else None
        return self._launch("all_reduce", array, call, finish)

    def broadcast(self, array, root: int) -> Work:
        if not isinstance(array, cupy.ndarray):
            return self.mpi.broadcast(array, root)
        dtype = self._dtypes.get(array.dtype)

        def call(pointer, stream):
            self.comm.broadcast(pointer, pointer, array.size, dtype, root, stream)

        return self._launch("broadcast", array, call)

    def all_gather(self, array, out) -> Work:
        if not isinstance(array, cupy.ndarray):
            return self.mpi.all_gather(array, out)
        self._check(array)
        source = cupy.ascontiguousarray(array)
        dtype = self._dtypes[array.dtype]

        def call(pointer, stream):
            self.comm.allGather(source.data.ptr, pointer, source.size, dtype, stream)

        work = self._launch("all_gather", out, call)
        work.buffers += (source,)
        return work

    def barrier(self) -> Work:
        self._queued("barrier").wait()  # this rank's queued collectives are done ...
        return self.mpi.barrier()  # ... and every rank got here

    def close(self) -> None:
        self.comm.destroy()
        self.mpi.close()
