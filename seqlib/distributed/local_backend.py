"""The single-process backend: a world of one, for running distributed code without MPI.

``init_process_group`` uses it when mpi4py is not installed and no MPI launcher started the
process; every collective is then complete at once and leaves its tensor as it was (a sum or
an average over one rank is the value itself).
"""

from __future__ import annotations

from seqlib.distributed.work import completed


class LocalBackend:
    """Rank 0 of a world of size 1."""

    name = "mpi"  # what the caller asked for; there is nothing else to tell apart
    rank, size, local_rank, local_size = 0, 1, 0, 1

    def __init__(self, timeout: float):
        self.timeout = timeout

    def all_reduce(self, array, op: str):
        return completed("all_reduce")

    def broadcast(self, array, root: int):
        return completed("broadcast")

    def all_gather(self, array, out):
        out[0] = array
        return completed("all_gather")

    def barrier(self):
        return completed("barrier")

    def close(self) -> None:
        pass
