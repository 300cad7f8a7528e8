"""seqlib.data: datasets, samplers, collation, DataLoader ordering, shuffling and workers."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import time
from collections import namedtuple

import numpy
import pytest

import seqlib as sl
from seqlib.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    TokenWindowDataset,
    default_collate,
    random_split,
)


@pytest.fixture(autouse=True)
def _wall_clock_guard():
    """Fail a test that runs for a minute instead of letting a stuck worker hang CI."""
    def expire(signum, frame):
        raise TimeoutError("test_data: a test ran past its 60 s wall-clock guard")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


class Squares(Dataset):
    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": sl.tensor([float(i)]), "y": i * i}


class Failing(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise KeyError(f"sample {i} is broken")
        return sl.tensor([i])


class Stream(IterableDataset):
    def __iter__(self):
        return iter(range(7))


def test_tensor_dataset_and_subset():
    x, y = sl.arange(10).view(5, 2), sl.arange(5)
    ds = TensorDataset(x, y)
    assert len(ds) == 5 and ds[2][0].tolist() == [4, 5] and ds[2][1].item() == 2
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(x, sl.arange(4))
    sub = Subset(ds, [4, 0])
    assert len(sub) == 2 and sub[0][1].item() == 4


def test_random_split_is_a_reproducible_partition():
    ds = TensorDataset(sl.arange(10))
    a, b = random_split(ds, [7, 3], generator=sl.Generator().manual_seed(0))
    indices = sorted(a.indices + b.indices)
    assert indices == list(range(10)) and len(a) == 7
    again, _ = random_split(ds, [7, 3], generator=sl.Generator().manual_seed(0))
    assert again.indices == a.indices
    parts = random_split(ds, [0.5, 0.3, 0.2])
    assert [len(p) for p in parts] == [5, 3, 2]
    with pytest.raises(ValueError, match="does not equal the length"):
        random_split(ds, [5, 3])


def test_token_window_dataset():
    ds = TokenWindowDataset(sl.arange(10), block_size=3)
    assert len(ds) == 3
    x, y = ds[1]
    assert x.tolist() == [3, 4, 5] and y.tolist() == [4, 5, 6]
    assert ds[-1][1].tolist() == [7, 8, 9]
    overlapping = TokenWindowDataset(numpy.arange(10), block_size=4, stride=1)
    assert len(overlapping) == 6 and overlapping[5][1].tolist() == [6, 7, 8, 9]
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(ValueError, match="too few"):
        TokenWindowDataset(sl.arange(3), block_size=3)
    with pytest.raises(ValueError, match="1-D integers"):
        TokenWindowDataset(sl.ones(10), block_size=3)


def test_default_collate_structures():
    batch = default_collate([(sl.ones(2), 1, 0.5), (sl.zeros(2), 2, 1.5)])
    assert batch[0].shape == (2, 2) and batch[1].tolist() == [1, 2]
    assert batch[2].dtype == sl.float64 and isinstance(batch, tuple)
    assert default_collate([{"a": numpy.ones(3)}, {"a": numpy.zeros(3)}])["a"].shape == (2, 3)
    Pair = namedtuple("Pair", "left right")
    pair = default_collate([Pair(1, True), Pair(2, False)])
    assert isinstance(pair, Pair) and pair.right.dtype == sl.bool
    assert default_collate([["a", 1], ["b", 2]])[0] == ["a", "b"]
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([object()])


def test_loader_order_batches_and_drop_last():
    loader = DataLoader(Squares(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert batches[0]["x"].shape == (4, 1) and batches[2]["y"].tolist() == [64, 81]
    assert len(DataLoader(Squares(10), batch_size=4, drop_last=True)) == 2
    single = list(DataLoader(Squares(3), batch_size=None))
    assert single[1]["y"] == 1


def test_shuffle_is_reproducible_and_changes_per_epoch():
    def order(seed, epochs=2):
        loader = DataLoader(TensorDataset(sl.arange(20)), batch_size=5, shuffle=True,
                            generator=sl.Generator().manual_seed(seed))
        return [[int(v) for b in loader for v in b[0].tolist()] for _ in range(epochs)]

    first, second = order(1)
    assert sorted(first) == list(range(20)) and first != list(range(20))
    assert first != second
    assert order(1) == [first, second]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Squares(), shuffle=True, sampler=[0, 1])


def test_iterable_dataset_batches():
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(list(DataLoader(Stream(), batch_size=3, drop_last=True))) == 2
    with pytest.raises(ValueError, match="IterableDataset"):
        DataLoader(Stream(), shuffle=True)


def test_workers_keep_order_and_match_the_main_process():
    expected = [b["x"].tolist() for b in DataLoader(Squares(23), batch_size=4)]
    loader = DataLoader(Squares(23), batch_size=4, num_workers=2)
    assert [b["x"].tolist() for b in loader] == expected
    assert [b["x"].tolist() for b in loader] == expected  # a second epoch works too


def test_worker_errors_are_re_raised_with_traceback():
    loader = DataLoader(Failing(), batch_size=2, num_workers=2)
    with pytest.raises(KeyError) as info:
        list(loader)
    message = str(info.value)
    assert "Caught KeyError in DataLoader worker process" in message
    assert "sample 5 is broken" in message and "Traceback" in message


def test_worker_seeds_differ_and_are_reproducible():
    class Noise(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return sl.rand(1)

    def draws(seed):
        loader = DataLoader(Noise(), batch_size=1, num_workers=2,
                            generator=sl.Generator().manual_seed(seed))
        return [b.item() for b in loader]

    first = draws(3)
    assert first == draws(3)
    assert len(set(first)) > 1


def test_tensor_dataset_fast_path_equals_row_by_row_collation():
    ds = TensorDataset(sl.randn(10, 3), sl.arange(10))
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=sl.Generator().manual_seed(0))
    order = list(loader.batch_sampler)
    loader.generator.manual_seed(0)
    for indices, (x, y) in zip(order, loader):
        expected = default_collate([ds[i] for i in indices])
        assert x.equal(expected[0]) and y.equal(expected[1])
        assert y.dtype == sl.int64


# ---- persistent workers, timeout, shutdown ------------------------------------------------
class Traced(Dataset):
    """Each sample says which process loaded it, how often its worker_init_fn ran there, and
    carries a random draw (worker seeding shows in the data)."""

    init_calls = 0

    def __len__(self):
        return 12

    def __getitem__(self, i):
        return sl.tensor([i, os.getpid(), Traced.init_calls]), sl.rand(1)


def count_init(worker_id):
    Traced.init_calls += 1


class Slow(Dataset):
    """Sample 3 takes ``delay`` seconds; ``exit_at`` kills the worker that loads that sample."""

    def __init__(self, delay=0.0, exit_at=None):
        self.delay, self.exit_at = delay, exit_at

    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == self.exit_at:
            os._exit(3)
        if i == 3:
            time.sleep(self.delay)
        return sl.tensor([i])


def traced_loader(**kwargs):
    return DataLoader(Traced(), batch_size=3, shuffle=True, num_workers=2,
                      generator=sl.Generator().manual_seed(5), worker_init_fn=count_init,
                      **kwargs)


def loaded(loader):
    """One epoch as (indices, pids of the loading processes, worker_init_fn counts, draws)."""
    indices, pids, inits, draws = [], set(), set(), []
    for rows, noise in loader:
        for index, pid, init_calls in rows.tolist():
            indices.append(index)
            pids.add(pid)
            inits.add(init_calls)
        draws += noise.view(-1).tolist()
    return indices, pids, inits, draws


def all_gone(pids, within=5.0):
    """Whether every process in ``pids`` has exited and been reaped within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


def worker_pids(before=frozenset()):
    """The pids of this process's live children, less ``before`` (another test's leftovers)."""
    return {child.pid for child in multiprocessing.active_children()} - before


def test_persistent_workers_and_timeout_are_validated_as_in_torch():
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(Squares(), persistent_workers=True)
    with pytest.raises(ValueError, match="timeout option should be non-negative"):
        DataLoader(Squares(), num_workers=1, timeout=-1)
    loader = DataLoader(Squares(), timeout=2)  # accepted, as torch; iterating is refused
    with pytest.raises(ValueError, match="timeout=2 needs num_workers > 0"):
        iter(loader)
    assert len(list(DataLoader(Squares(), timeout=0))) == 10


def test_persistent_workers_reuse_their_processes_and_load_the_same_data():
    before = worker_pids()
    fresh, persistent = traced_loader(), traced_loader(persistent_workers=True)
    fresh_epochs = [loaded(fresh) for _ in range(3)]
    persistent_epochs = [loaded(persistent) for _ in range(3)]
    for (indices, _, _, draws), (same_indices, _, _, same_draws) in zip(fresh_epochs,
                                                                        persistent_epochs):
        assert same_indices == indices and same_draws == draws  # same order, same worker seeds
    assert fresh_epochs[0][0] != fresh_epochs[1][0]  # and the order changes per epoch
    persistent_pids = [pids for _, pids, _, _ in persistent_epochs]
    assert len(persistent_pids[0]) == 2 and persistent_pids[0] == persistent_pids[1] == \
        persistent_pids[2]
    fresh_pids = [pids for _, pids, _, _ in fresh_epochs]
    assert not fresh_pids[0] & fresh_pids[1] and not fresh_pids[1] & fresh_pids[2]
    assert all(inits == {1} for _, _, inits, _ in persistent_epochs)  # worker_init_fn once
    assert all_gone(set().union(*fresh_pids))  # each epoch's workers were stopped
    assert worker_pids(before) == persistent_pids[0]
    del persistent
    gc.collect()
    assert all_gone(persistent_pids[0]) and not worker_pids(before)


def test_persistent_workers_survive_an_abandoned_epoch():
    before = worker_pids()
    fresh, persistent = traced_loader(), traced_loader(persistent_workers=True)
    for loader in (fresh, persistent):
        for _ in loader:
            break  # abandoned with batches in flight
    pids = {worker.pid for worker in persistent._pool.workers}
    assert all_gone(worker_pids(before) - pids) and worker_pids(before) == pids
    indices, loaded_by, _, draws = loaded(persistent)
    expected_indices, _, _, expected_draws = loaded(fresh)
    assert indices == expected_indices and draws == expected_draws  # stale batches dropped
    assert loaded_by == pids
    stale = iter(persistent)
    next(stale)
    next(iter(persistent))  # a new epoch on the same workers
    with pytest.raises(RuntimeError, match="a newer epoch started on the same persistent"):
        next(stale)
    del persistent, stale, loader
    gc.collect()
    assert all_gone(pids)


def test_abandoned_and_failed_epochs_leave_no_worker_behind():
    before = worker_pids()
    iterator = iter(DataLoader(Squares(40), batch_size=2, num_workers=3))
    next(iterator)
    started = worker_pids(before)
    assert len(started) == 3
    del iterator  # abandoned mid-epoch: the workers are stopped, not left running
    assert all_gone(started) and not worker_pids(before)
    with pytest.raises(KeyError):
        list(DataLoader(Failing(), batch_size=2, num_workers=2))
    assert not worker_pids(before)


@pytest.mark.parametrize("persistent", [False, True])
def test_a_worker_slower_than_timeout_raises_in_time(persistent):
    before = worker_pids()
    dataset = Slow(delay=30.0)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, timeout=1,
                        persistent_workers=persistent)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader timed out after 1 seconds"):
        list(loader)
    assert time.monotonic() - start < 1 + 2
    assert not worker_pids(before)  # the stuck worker was terminated, not left sleeping
    dataset.delay = 0.0  # the next epoch starts new workers, which see the fast dataset
    assert [b.item() for b in loader] == list(range(6))


def test_a_worker_that_dies_is_reported():
    before = worker_pids()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader worker 0 \(pid \d+\) exited "
                                           "unexpectedly with exit code 3"):
        list(DataLoader(Slow(exit_at=2), batch_size=1, num_workers=2))
    assert time.monotonic() - start < 5 and not worker_pids(before)
