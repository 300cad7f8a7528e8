"""seqlib.distributed: a world of one in this process, and real multi-process jobs.

The multi-process tests launch ``mpiexec -n 2 python -m mpi4py tests/mpi_cases.py CASE``
with a hard deadline: a job that hangs (a collective nobody joins) is killed and fails its
test, never the CI run. They need mpi4py and an ``mpiexec`` (``pip install ".[test]"``
installs both from wheels); without them they are skipped with that reason. NCCL cases are
marked ``gpu`` (one process per GPU).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

import seqlib as sl
import seqlib.distributed as dist
from seqlib import nn
from seqlib.data import DataLoader, DistributedSampler, TensorDataset, TokenWindowDataset
from seqlib.distributed import process_group
from seqlib.distributed.reducer import assign_buckets, count_uses
from seqlib.distributed.work import DistributedTimeout, Work

CASES = Path(__file__).resolve().parent / "mpi_cases.py"
LAUNCHER_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _mpiexec() -> str | None:
    """The mpiexec beside this Python (a venv's, from the mpich wheel), else on the PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or not dist.is_mpi_available(),
    reason="needs mpi4py and an mpiexec: pip install \".[test]\" (or \"seqlib[distributed]\")")


def launch(case: str, processes: int = 2, backend: str = "mpi", deadline: float = 120.0,
           cwd: Path | None = None):
    """Run one case of mpi_cases.py as an MPI job: ``(exit code, output, seconds)``; a job
    still running at ``deadline`` is killed, with all its processes, and fails the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    command = [MPIEXEC, "-n", str(processes), sys.executable, "-m", "mpi4py", str(CASES), case,
               backend]
    started = time.monotonic()
    # cwd outside the checkout: `python -m` puts the working directory first on sys.path, and
    # the jobs must import the installed seqlib, as the rest of the suite does
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=env, cwd=cwd, start_new_session=True)
    try:
        output, _ = job.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        pytest.fail(f"mpiexec {case} hung past {deadline:g} s; output:\n{output}")
    return job.returncode, output, time.monotonic() - started


# ---- multi-process jobs ------------------------------------------------------------------
JOBS = ["collectives", "ddp_gradients", "ddp_no_sync", "ddp_unused_parameters",
        "ddp_use_outside_forward", "ddp_different_models", "ddp_buffers", "sampler",
        "checkpoint"]


@needs_mpi
@pytest.mark.parametrize("case", JOBS)
def test_two_processes(case, tmp_path):
    code, output, _ = launch(case, cwd=tmp_path)
    assert code == 0 and f"{case} ok" in output, output


@needs_mpi
@pytest.mark.parametrize("case", ["collectives", "ddp_gradients", "sampler"])
def test_three_processes(case, tmp_path):
    """An odd world size: uneven splits, a non-power-of-two reduction."""
    code, output, _ = launch(case, processes=3, cwd=tmp_path)
    assert code == 0 and f"{case} ok" in output, output


@needs_mpi
def test_a_rank_that_raises_ends_the_job(tmp_path):
    code, output, seconds = launch("rank_raises", deadline=60, cwd=tmp_path)
    assert code != 0, output
    assert "Traceback" in output  # the launcher may cut the rest when it tears the job down
    assert seconds < 30  # at once, not at rank 0's deadline (120 s)


@needs_mpi
def test_a_collective_nobody_joins_times_out(tmp_path):
    code, output, seconds = launch("timeout", deadline=60, cwd=tmp_path)
    assert code != 0, output
    assert "barrier did not complete within 2 s" in (tmp_path / "timeout.txt").read_text()
    assert seconds < 30  # rank 1 sleeps 30 s: the job ended when rank 0 gave up


def _gpus() -> int:
    from seqlib.core.backend import cuda_device_count

    return cuda_device_count()


@pytest.mark.gpu
@needs_mpi
@pytest.mark.parametrize("case", ["collectives", "ddp_gradients", "ddp_no_sync"])
def test_nccl(case, tmp_path):
    """One process per GPU (at most two), CuPy tensors reduced by NCCL on the devices."""
    processes = min(2, _gpus())
    if case != "collectives" and processes < 2:
        pytest.skip("DistributedDataParallel needs two GPUs to average anything")
    code, output, _ = launch(case, processes=processes, backend="nccl", cwd=tmp_path)
    assert code == 0 and f"{case} ok" in output, output


# ---- a world of one, in this process -----------------------------------------------------
@pytest.fixture
def world_of_one(monkeypatch):
    """``init_process_group()`` as it runs without mpi4py and without a launcher (this process
    never initializes MPI: the suite forks DataLoader workers later)."""
    monkeypatch.setattr(process_group, "is_mpi_available", lambda: False)
    for name in LAUNCHER_SIZES:
        monkeypatch.delenv(name, raising=False)
    dist.init_process_group()
    yield
    dist.destroy_process_group()


def test_before_init_everything_says_so():
    assert not dist.is_initialized()
    for call in (dist.get_rank, dist.get_world_size, dist.barrier):
        with pytest.raises(ValueError, match="init_process_group"):
            call()
    with pytest.raises(ValueError, match="init_process_group"):
        dist.DistributedDataParallel(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="init_process_group"):
        DistributedSampler(range(4))


def test_world_of_one_collectives(world_of_one):
    assert dist.is_initialized() and dist.get_backend() == "mpi"
    assert (dist.get_rank(), dist.get_world_size(), dist.get_node_local_rank()) == (0, 1, 0)
    t = sl.tensor([1.0, -2.0])
    for op in dist.ReduceOp:
        dist.all_reduce(t, op=op)
        assert t.tolist() == [1.0, -2.0]
    dist.broadcast(t, src=0)
    with pytest.raises(ValueError, match="rank 1 is not in the group"):
        dist.broadcast(t, src=1)
    parts = [sl.zeros(2)]
    assert dist.all_gather(parts, t, async_op=True).wait()
    assert parts[0].tolist() == [1.0, -2.0]
    out = sl.zeros(2)
    dist.all_gather_into_tensor(out, t)
    assert out.tolist() == [1.0, -2.0]
    with pytest.raises(ValueError, match="shape"):
        dist.all_gather_into_tensor(sl.zeros(3), t)
    with pytest.raises(TypeError, match="floating-point"):
        dist.all_reduce(sl.tensor([1, 2]), op=dist.ReduceOp.AVG)
    with pytest.raises(NotImplementedError, match="subgroups"):
        dist.all_reduce(t, group="other")
    objects = [None]
    dist.all_gather_object(objects, {"a": 1})
    assert objects == [{"a": 1}]
    dist.barrier()
    assert dist.rank_seed(5) == 5


def test_init_errors(world_of_one, monkeypatch):
    with pytest.raises(RuntimeError, match="twice"):
        dist.init_process_group()
    dist.destroy_process_group()
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        dist.init_process_group("gloo")
    with pytest.raises(ValueError, match="init_method"):
        dist.init_process_group(init_method="tcp://10.0.0.1:23456")
    with pytest.raises(ValueError, match="rank=1, but the launcher made this process rank 0"):
        dist.init_process_group(rank=1)
    with pytest.raises(ValueError, match="timeout must be positive"):
        dist.init_process_group(timeout=0)
    if not dist.is_nccl_available():
        with pytest.raises(RuntimeError, match="CuPy with NCCL and a CUDA GPU"):
            dist.init_process_group("nccl")
    monkeypatch.setenv("PMI_SIZE", "4")
    with pytest.raises(RuntimeError, match=r"needs mpi4py \(the launcher started 4 processes\)"):
        dist.init_process_group()
    monkeypatch.delenv("PMI_SIZE")
    assert not dist.is_initialized()
    dist.init_process_group(world_size=1, rank=0)  # the fixture destroys it


def test_ddp_in_one_process_is_the_module(world_of_one):
    sl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    reference = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    reference.load_state_dict(model.state_dict())
    ddp = dist.DistributedDataParallel(model, device_ids=[0], bucket_cap_mb=1)
    assert ddp.reducer is None and list(ddp.state_dict())[0] == "module.0.weight"
    x = sl.randn(5, 3)
    with ddp.no_sync():
        ddp(x).sum().backward()
    ddp(x).sum().backward()
    reference(x).sum().backward()
    reference(x).sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        numpy.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    with pytest.raises(ValueError, match="bucket_cap_mb must be positive"):
        dist.DistributedDataParallel(model, bucket_cap_mb=0)
    with pytest.raises(RuntimeError, match="doesn't have any parameter that requires"):
        dist.DistributedDataParallel(nn.Linear(2, 2).requires_grad_(False))


def test_rank_seed_streams():
    seeds = [dist.rank_seed(1337, rank) for rank in range(64)]
    assert seeds[0] == 1337 and len(set(seeds)) == 64
    assert seeds == [dist.rank_seed(1337, rank) for rank in range(64)]
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_checkpoint_in_a_world_of_one_is_unchanged(world_of_one, tmp_path):
    model = nn.Linear(2, 3)
    sl.save_checkpoint(tmp_path / "c.safetensors", model=model, step=2)
    assert "rng_ranks" not in sl.load(tmp_path / "c.safetensors")
    assert sl.load_checkpoint(tmp_path / "c.safetensors", model=model)["step"] == 2


# ---- Work, buckets, counting ---------------------------------------------------------------
def test_work_waits_with_a_deadline():
    aborted = []
    work = Work("all_reduce", lambda: False, timeout=0.05, on_timeout=lambda: aborted.append(1))
    started = time.monotonic()
    with pytest.raises(DistributedTimeout, match="all_reduce did not complete within 0.05 s"):
        work.wait()
    assert aborted == [1] and time.monotonic() - started < 1
    polls, steps = iter([False, False, True]), []
    work = Work("broadcast", lambda: next(polls), finish=lambda: steps.append("finish"))
    work.then(lambda: steps.append("then"))
    assert work.wait() and work.is_completed() and steps == ["finish", "then"]
    work.then(lambda: steps.append("late"))  # complete already: runs at once
    assert steps[-1] == "late"


def test_buckets_reverse_order_caps_and_dtypes():
    params = [nn.Parameter(sl.zeros(n, dtype=dtype)) for n, dtype in
              [(10, sl.float32), (10, sl.float32), (30, sl.float32), (5, sl.float64),
               (5, sl.float64), (100, sl.float32)]]
    # 40 bytes per float32 x 10; caps: first bucket 80 bytes, then 120 bytes
    groups = assign_buckets(params, cap_bytes=120, first_cap_bytes=80)
    assert groups == [[5], [4, 3], [2], [1, 0]]
    assert assign_buckets(params, 10**6, 10**6) == [[5], [4, 3], [2, 1, 0]]


def test_count_uses_counts_every_edge_to_a_parameter():
    sl.manual_seed(0)
    embedding = nn.Embedding(5, 3)
    head = nn.Linear(3, 5, bias=False)
    head.weight = embedding.weight  # tied: two uses
    unused = nn.Parameter(sl.zeros(2))
    tokens = sl.tensor([[1, 2, 3]])
    logits = head(embedding(tokens))
    loss = logits.sum() + (embedding.weight * embedding.weight).sum()
    index = {id(embedding.weight): 0, id(unused): 1}
    assert count_uses([logits, loss], index, 2) == [4, 0]
    assert count_uses([embedding.weight], index, 2) == [1, 0]


# ---- DistributedSampler and TokenWindowDataset.shard ---------------------------------------
def pytorch_rule(size, replicas, rank, order, drop_last):
    """torch.utils.data.DistributedSampler's indices for a given epoch order."""
    import math

    if drop_last and size % replicas:
        per_rank = math.ceil((size - replicas) / replicas)
    else:
        per_rank = math.ceil(size / replicas)
    total = per_rank * replicas
    if drop_last:
        order = order[:total]
    else:
        padding = total - len(order)
        order = order + (order * math.ceil(padding / len(order)))[:padding] if order else order
    return order[rank:total:replicas]


@pytest.mark.parametrize("size", [1, 2, 7, 12])
@pytest.mark.parametrize("replicas", [1, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_distributed_sampler_partitions(size, replicas, drop_last, shuffle):
    dataset = TensorDataset(sl.arange(size))
    samplers = [DistributedSampler(dataset, replicas, rank, shuffle=shuffle, seed=4,
                                   drop_last=drop_last) for rank in range(replicas)]
    for sampler in samplers:
        sampler.set_epoch(3)
    parts = [list(sampler) for sampler in samplers]
    order = list(range(size))
    if shuffle:
        order = sl.randperm(size, generator=sl.Generator().manual_seed(4 + 3)).tolist()
    for rank, part in enumerate(parts):
        assert part == pytorch_rule(size, replicas, rank, order, drop_last)
        assert len(part) == len(samplers[rank]) == len(parts[0])
    seen = [i for part in parts for i in part]
    if drop_last:
        assert len(seen) == len(set(seen)) == size - size % replicas
    else:
        assert set(seen) == set(range(size)) and len(seen) == -(-size // replicas) * replicas


def test_distributed_sampler_epochs_and_errors():
    dataset = TensorDataset(sl.arange(20))
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, seed=0)
    first, again = list(sampler), list(sampler)
    sampler.set_epoch(1)
    assert first == again and list(sampler) != first
    assert list(DistributedSampler(dataset, 2, 1, seed=0)) == first  # the same on every rank
    for rank in (-1, 2):
        with pytest.raises(ValueError, match=rf"Invalid rank {rank}, rank should be in the "
                                             r"interval \[0, 1\]"):
            DistributedSampler(dataset, num_replicas=2, rank=rank)
    with pytest.raises(ValueError, match="num_replicas should be a positive integer"):
        DistributedSampler(dataset, num_replicas=0, rank=0)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    assert sum(len(b[0]) for b in loader) == 10


def test_distributed_sampler_defaults_from_the_group(world_of_one):
    sampler = DistributedSampler(range(5), shuffle=False)
    assert (sampler.num_replicas, sampler.rank, list(sampler)) == (1, 0, [0, 1, 2, 3, 4])


@pytest.mark.parametrize("stride", [None, 3])
def test_token_windows_shard(stride):
    dataset = TokenWindowDataset(sl.arange(50), block_size=4, stride=stride)
    shards = [dataset.shard(num_replicas=3, rank=rank) for rank in range(3)]
    per_rank = len(dataset) // 3
    for rank, shard in enumerate(shards):
        assert len(shard) == per_rank
        for i in range(per_rank):
            for mine, original in zip(shard[i], dataset[rank * per_rank + i]):
                assert mine.tolist() == original.tolist()
    with pytest.raises(ValueError, match="too few for 50 ranks"):
        dataset.shard(num_replicas=50, rank=0)
    with pytest.raises(ValueError, match="rank 3 is not in"):
        dataset.shard(num_replicas=3, rank=3)


def test_token_windows_shard_defaults_from_the_group(world_of_one):
    dataset = TokenWindowDataset(sl.arange(20), block_size=4)
    assert len(dataset.shard()) == len(dataset)


# ---- the scaling benchmark ----------------------------------------------------------------
@needs_mpi
def test_scaling_benchmark_runs_at_toy_size(tmp_path, monkeypatch):
    """benchmarks/distributed.py end to end, at toy sizes (timings are not asserted)."""
    from scripts import BENCHMARKS, load

    module = load(BENCHMARKS / "distributed.py", monkeypatch)
    report = module.main(["--rounds", "1", "--steps", "1", "--warmup", "1", "--d-model", "8",
                          "--layers", "1", "--heads", "2", "--length", "8", "--batch", "4",
                          "--bucket-mb", "0.001", "--out", str(tmp_path)])
    assert [p.name for p in tmp_path.iterdir()] == ["distributed_cpu.json"]
    names = [row["configuration"] for row in report["results"]]
    assert names[:2] == ["1 process x 1 thread", "1 process x 2 threads"]
    two = report["results"][2]
    assert two["processes"] == 2 and two["buckets"] >= 1 and two["tokens_per_s"] > 0
    assert report["results"][-1]["buckets"] > two["buckets"]  # 1 KiB buckets: one per tensor
    predicted = report["cost_model"]["rows"]
    assert {row["p"] for row in predicted} == {8, 64, 512}
    assert all(0 < row["efficiency"] <= row["efficiency_overlapped"] <= 1 for row in predicted)


def test_ring_all_reduce_cost(monkeypatch):
    from scripts import BENCHMARKS, load

    module = load(BENCHMARKS / "distributed.py", monkeypatch)
    # 2 processes: each sends and receives half the data twice (reduce-scatter, all-gather)
    assert module.ring_all_reduce_s(1e9, 2, 1e9, 0.0, 1) == pytest.approx(1.0)
    assert module.ring_all_reduce_s(1e9, 512, 1e9, 1e-6, 3) == pytest.approx(
        2 * 511 / 512 + 2 * 511 * 3e-6)
