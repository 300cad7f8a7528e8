"""Cases that tests/test_distributed.py runs in several processes:
``mpiexec -n 2 python -m mpi4py tests/mpi_cases.py CASE [BACKEND]``.

Each case checks its results on every rank (an assertion error aborts the whole job, so the
test sees a non-zero exit) and prints ``CASE ok`` on rank 0 at the end.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy

import seqlib as sl
import seqlib.distributed as dist
from seqlib import models, nn, optim
from seqlib.data import DistributedSampler, TensorDataset

DEVICE = "cpu"  # "cuda" with the nccl backend


def assert_close(actual, expected, tolerance=1e-12) -> None:
    numpy.testing.assert_allclose(numpy.asarray(actual), numpy.asarray(expected),
                                  rtol=tolerance, atol=tolerance)


def same_on_all_ranks(value) -> None:
    """``value`` (an array) is identical on every rank."""
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, numpy.asarray(value))
    for theirs in everyone:
        numpy.testing.assert_array_equal(theirs, everyone[0])


# ---- collectives ------------------------------------------------------------------------
def case_collectives() -> None:
    rank, size = dist.get_rank(), dist.get_world_size()
    ranks = numpy.arange(size)
    for dtype in (sl.float32, sl.float64, sl.int64):
        t = sl.tensor([1, 2, 3], dtype=dtype, device=DEVICE) * (rank + 1)
        dist.all_reduce(t)
        assert_close(t.cpu().numpy(), numpy.array([1, 2, 3]) * (ranks + 1).sum())
        t = sl.tensor([rank, -rank], dtype=dtype, device=DEVICE)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        assert t.tolist() == [size - 1, 0]
    for op, expected in ((dist.ReduceOp.SUM, [True, True, False]),
                         (dist.ReduceOp.MIN, [True, False, False])):
        flags = sl.tensor([True, rank == 0, False], device=DEVICE)
        dist.all_reduce(flags, op=op)  # any / all
        assert flags.tolist() == expected
    t = sl.tensor([[1.0, 2.0]], dtype=sl.float16, device=DEVICE) * (rank + 1)
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    assert t.dtype == sl.float16
    assert_close(t.cpu().numpy(), numpy.array([[1.0, 2.0]]) * numpy.mean(ranks + 1), 1e-3)
    t = sl.tensor([[1.0, 2.0]], device=DEVICE) * (rank + 1)
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    assert_close(t.cpu().numpy(), numpy.array([[1.0, 2.0]]) * numpy.mean(ranks + 1), 1e-6)
    base = sl.zeros(3, 4, device=DEVICE)
    column = base[:, 1]  # not contiguous: reduced through a staging copy written back
    column.add_(rank + 1.0)
    version = column._version[0]
    dist.all_reduce(column)
    assert column._version[0] > version
    assert_close(base.cpu().numpy()[:, 1], [(ranks + 1).sum()] * 3)
    assert_close(base.cpu().numpy()[:, [0, 2, 3]], numpy.zeros((3, 3)))
    src = size - 1
    t = sl.full((2, 2), float(rank), device=DEVICE)
    dist.broadcast(t, src=src)
    assert_close(t.cpu().numpy(), numpy.full((2, 2), src))
    parts = [sl.zeros(2, device=DEVICE) for _ in range(size)]
    dist.all_gather(parts, sl.tensor([rank, 10.0 * rank], device=DEVICE))
    assert [p.tolist() for p in parts] == [[r, 10.0 * r] for r in range(size)]
    out = sl.zeros(2 * size, 3, dtype=sl.int64, device=DEVICE)
    dist.all_gather_into_tensor(out, sl.full((2, 3), rank, dtype=sl.int64, device=DEVICE))
    assert out.cpu().numpy()[:, 0].tolist() == numpy.repeat(ranks, 2).tolist()
    work = dist.all_reduce(t, async_op=True)
    assert work.wait() and work.is_completed()
    objects = [None] * size
    dist.all_gather_object(objects, {"rank": rank, "name": "x" * rank})
    assert objects == [{"rank": r, "name": "x" * r} for r in range(size)]
    listed = [rank, "mine"] if rank == 0 else [None, None]
    dist.broadcast_object_list(listed, src=0)
    assert listed == [0, "mine"]
    dist.barrier()
    assert dist.rank_seed(7) == (7 if rank == 0 else dist.rank_seed(7, rank))
    seeds = [None] * size
    dist.all_gather_object(seeds, dist.rank_seed(7))
    assert len(set(seeds)) == size


# ---- DistributedDataParallel ------------------------------------------------------------
def tiny_lm(seed: int):
    sl.manual_seed(seed)
    config = models.TransformerLMConfig(23, 16, 2, 2, dropout=0.0, max_length=8)
    return models.TransformerLM(config).double().to(DEVICE)


def batch(rows: int | None = None, length: int = 9):
    """Token rows, the same on every rank (default: two per rank)."""
    rows = 2 * dist.get_world_size() if rows is None else rows
    tokens = numpy.random.default_rng(1).integers(0, 23, (rows, length))
    return sl.tensor(tokens, device=DEVICE)


def my_rows(tokens):
    """This rank's equal share of the rows."""
    rank, size = dist.get_rank(), dist.get_world_size()
    share = tokens.shape[0] // size
    return tokens[rank * share : (rank + 1) * share]


def full_batch_gradients(model, tokens) -> list:
    """The gradients of one process's loss on the whole batch, with ``model``'s weights."""
    twin = tiny_lm(0)
    twin.load_state_dict(model.state_dict())
    _, loss = twin(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    return [p.grad.cpu().numpy() for p in twin.parameters()]


def case_ddp_gradients() -> None:
    """Gradients equal the single-process gradients of the full batch, for several bucket
    sizes; parameters start equal (rank 0's) and stay equal through optimizer steps."""
    tokens = batch()
    for cap in (None, 0.002, 1e-6):  # one bucket or two; several; one per parameter
        model = tiny_lm(seed=dist.get_rank())  # different on every rank until DDP
        ddp = dist.DistributedDataParallel(model, bucket_cap_mb=cap)
        for p in model.parameters():
            same_on_all_ranks(p.detach().cpu().numpy())
        mine = my_rows(tokens)
        _, loss = ddp(mine[:, :-1], mine[:, 1:])
        loss.backward()
        assert ddp.reducer.state == "finished"
        for p, expected in zip(model.parameters(), full_batch_gradients(model, tokens)):
            assert_close(p.grad.cpu().numpy(), expected, 1e-12)
    assert len(ddp.reducer.buckets) == len(list(model.parameters()))
    optimizer = optim.AdamW(ddp.parameters(), lr=1e-2)
    for step in range(3):
        optimizer.zero_grad()
        mine = my_rows(batch(length=9 - step))
        _, loss = ddp(mine[:, :-1], mine[:, 1:])
        loss.backward()
        optimizer.step()
    for p in model.parameters():
        same_on_all_ranks(p.detach().cpu().numpy())


def case_ddp_no_sync() -> None:
    """Two micro-batches, the first inside no_sync: the result is the full-batch gradient of
    both (each rank's first micro-batch stays local until the synchronized backward)."""
    model = tiny_lm(seed=0)
    ddp = dist.DistributedDataParallel(model)
    tokens = batch(rows=4 * dist.get_world_size())
    half = tokens.shape[0] // 2
    first, second = tokens[:half], tokens[half:]
    with ddp.no_sync():
        mine = my_rows(first)
        _, loss = ddp(mine[:, :-1], mine[:, 1:])
    loss.backward()  # outside the block: still not synchronized, as in PyTorch
    local = model.token_embedding.weight.grad.cpu().numpy()
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, local)
    assert not numpy.allclose(everyone[0], everyone[-1])
    mine = my_rows(second)
    _, loss = ddp(mine[:, :-1], mine[:, 1:])
    loss.backward()
    expected = [a + b for a, b in zip(full_batch_gradients(model, first),
                                      full_batch_gradients(model, second))]
    for p, e in zip(model.parameters(), expected):
        assert_close(p.grad.cpu().numpy(), e, 1e-12)


class TwoHeads(nn.Module):
    """A body and two heads; forward uses the head it is told to, and never ``spare``."""

    def __init__(self):
        super().__init__()
        self.body, self.left, self.right = nn.Linear(3, 4), nn.Linear(4, 1), nn.Linear(4, 1)
        self.spare = nn.Linear(2, 2)

    def forward(self, x, head: str):
        return getattr(self, head)(self.body(x)).sum()


def case_ddp_unused_parameters() -> None:
    rank = dist.get_rank()
    sl.manual_seed(0)
    model = TwoHeads().double().to(DEVICE)
    x = sl.tensor(numpy.random.default_rng(rank).normal(size=(5, 3)), device=DEVICE)
    strict = dist.DistributedDataParallel(model)
    try:
        strict(x, "left")
        raise AssertionError("an unused parameter was not reported")
    except RuntimeError as error:
        assert "spare.weight" in str(error) and "find_unused_parameters" in str(error)
    ddp = dist.DistributedDataParallel(model, find_unused_parameters=True)
    model.zero_grad()
    ddp(x, "left" if rank == 0 else "right").backward()  # each head used on one rank only
    x_all = [None] * dist.get_world_size()
    dist.all_gather_object(x_all, x.cpu().numpy())
    expected = TwoHeads().double()
    expected.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    for r, rows in enumerate(x_all):
        expected(sl.tensor(rows), "left" if r == 0 else "right").backward()
    size = dist.get_world_size()
    for name in ("body.weight", "left.weight", "right.bias"):
        actual = dict(model.named_parameters())[name].grad.cpu().numpy()
        reference = dict(expected.named_parameters())[name].grad.numpy() / size
        assert_close(actual, reference, 1e-12)
    assert model.spare.weight.grad is None  # no rank used it


def case_ddp_use_outside_forward() -> None:
    """A loss term computed from the parameters outside forward is reported, not averaged
    wrongly; the next forward works again."""
    model = tiny_lm(seed=0)
    ddp = dist.DistributedDataParallel(model)
    mine = my_rows(batch())
    _, loss = ddp(mine[:, :-1], mine[:, 1:])
    penalty = sum((p * p).sum() for p in model.parameters())
    try:
        (loss + penalty).backward()
        raise AssertionError("a parameter used outside forward was not reported")
    except RuntimeError as error:
        assert "only once" in str(error) and "outside the module's forward" in str(error)


def case_ddp_different_models() -> None:
    hidden = 4 + dist.get_rank()
    try:
        dist.DistributedDataParallel(nn.Linear(3, hidden).to(DEVICE))
        raise AssertionError("different models were not reported")
    except RuntimeError as error:
        assert "differs" in str(error)


def case_ddp_buffers() -> None:
    model = nn.Linear(2, 2)
    model.register_buffer("running", sl.full((3,), float(dist.get_rank())))
    ddp = dist.DistributedDataParallel(model.to(DEVICE), init_sync=False)
    model.running.fill_(float(dist.get_rank() + 5))
    ddp(sl.ones(1, 2, device=DEVICE)).sum().backward()
    assert model.running.tolist() == [5.0] * 3  # rank 0's, broadcast before forward


# ---- data and checkpoints ----------------------------------------------------------------
def case_sampler() -> None:
    dataset = TensorDataset(sl.arange(11))
    for drop_last in (False, True):
        sampler = DistributedSampler(dataset, shuffle=True, seed=3, drop_last=drop_last)
        sampler.set_epoch(2)
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, list(sampler))
        seen = [i for part in everyone for i in part]
        assert len({len(part) for part in everyone}) == 1
        if drop_last:
            assert len(seen) == len(set(seen)) == 11 - 11 % dist.get_world_size()
        else:
            assert set(seen) == set(range(11))


def case_checkpoint() -> None:
    """Rank 0 writes; every rank loads the same model and its own generator streams."""
    rank = dist.get_rank()
    folder = [tempfile.mkdtemp() if rank == 0 else None]
    dist.broadcast_object_list(folder)
    path = Path(folder[0]) / "run.safetensors"
    sl.manual_seed(dist.rank_seed(11))
    batches = sl.Generator().manual_seed(dist.rank_seed(12))
    model = dist.DistributedDataParallel(tiny_lm(seed=rank))
    sl.save_checkpoint(path, model=model, step=4, generators={"batches": batches})
    assert path.is_file()
    after = (sl.rand(3).tolist(), sl.rand(2, generator=batches).tolist())
    with sl.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    state = sl.load_checkpoint(path, model=model, generators={"batches": batches})
    assert state["step"] == 4
    assert (sl.rand(3).tolist(), sl.rand(2, generator=batches).tolist()) == after
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, after)
    assert everyone[0] != everyone[-1]  # each rank continued its own streams
    reference = tiny_lm(seed=0)
    for p, q in zip(model.module.parameters(), reference.parameters()):
        assert_close(p.detach().cpu().numpy(), q.detach().cpu().numpy(), 0)


# ---- failures ----------------------------------------------------------------------------
def case_rank_raises() -> None:
    if dist.get_rank() == 1:
        raise ValueError("rank 1 fails on purpose")
    dist.barrier()  # the job must end anyway, long before this barrier's deadline


def case_timeout() -> None:
    if dist.get_rank() == 0:
        try:
            dist.barrier()
            raise AssertionError("a barrier that rank 1 never joins completed")
        except dist.DistributedTimeout as error:
            # a file, not only stdout: the launcher may drop output when it tears the job down
            Path("timeout.txt").write_text(str(error))
        raise SystemExit(3)


def main(argv: list) -> None:
    global DEVICE
    case, backend = argv[0], argv[1] if len(argv) > 1 else "mpi"
    DEVICE = "cuda" if backend == "nccl" else "cpu"
    timeout = 2.0 if case == "timeout" else 120.0
    dist.init_process_group(backend, timeout=timeout)
    globals()[f"case_{case}"]()
    if case == "timeout" and dist.get_rank() == 1:
        import time

        time.sleep(30)  # never joins; ended by rank 0's exit
    dist.barrier()
    if dist.get_rank() == 0:
        print(f"{case} ok", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
