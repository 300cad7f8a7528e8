"""Data-parallel training across processes (PyTorch's ``torch.distributed`` API, on MPI).

Run ``mpiexec -n 4 python -m mpi4py train.py`` (``pip install "seqlib[distributed]"`` gives
mpi4py and an ``mpiexec``); in the script::

    import seqlib.distributed as dist
    dist.init_process_group()              # "nccl" on GPUs: one process per GPU
    model = dist.DistributedDataParallel(model)
    sampler = sl.data.DistributedSampler(dataset)  # each rank its part of every epoch

Without mpi4py and a launcher, ``init_process_group`` makes a world of one process and the
same script runs unchanged.
"""

from seqlib.distributed.ddp import DistributedDataParallel
from seqlib.distributed.objects import all_gather_object, broadcast_object_list
from seqlib.distributed.process_group import (
    BACKENDS,
    ReduceOp,
    all_gather,
    all_gather_into_tensor,
    all_reduce,
    barrier,
    broadcast,
    destroy_process_group,
    get_backend,
    get_node_local_rank,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
    is_mpi_available,
    is_nccl_available,
    rank_seed,
)
from seqlib.distributed.work import DistributedTimeout, Work
