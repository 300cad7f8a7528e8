"""seqlib.data: datasets, samplers, collation, DataLoader ordering, shuffling and workers."""

from __future__ import annotations

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
