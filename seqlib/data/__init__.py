"""Datasets, samplers and the DataLoader (PyTorch's ``torch.utils.data`` API)."""

from seqlib.data.dataloader import DataLoader, default_collate
from seqlib.data.dataset import (
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    TokenWindowDataset,
    random_split,
)
from seqlib.data.distributed import DistributedSampler
from seqlib.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler
