"""DistributedDataParallel: the same model on every rank, gradients averaged across ranks."""

from __future__ import annotations

import contextlib

from seqlib.core.autograd.grad_mode import is_grad_enabled
from seqlib.core.backend import get_array_module
from seqlib.core.tensor import Tensor
from seqlib.distributed.objects import all_gather_object
from seqlib.distributed.process_group import default_group
from seqlib.distributed.reducer import Reducer
from seqlib.nn.module import Module

FIRST_BUCKET_MB = 1.0  # PyTorch's first bucket: small, so communication starts early


class DistributedDataParallel(Module):
    """Wrap ``module`` so that ``backward`` leaves every rank with the gradients averaged over
    all ranks, i.e. the gradients of the whole batch (of equal per-rank batches).

    At construction rank 0's parameters and buffers are copied to every rank. During
    backward, gradients are packed into buckets of about ``bucket_cap_mb`` (in reverse
    parameter order, the order backward produces them) and each bucket's all-reduce starts as
    soon as its gradients are complete, overlapping communication with the rest of backward;
    ``backward`` returns after the last one, with the averages in ``.grad``, so
    ``optimizer.step()`` follows as usual.

    Args:
        module: the model (already on this rank's device).
        device_ids, output_device: accepted for PyTorch compatibility; the module runs where
            its parameters are.
        broadcast_buffers: copy rank 0's buffers to every rank before each forward.
        bucket_cap_mb: bucket size in MiB (default 25, as PyTorch; the first bucket is 1 MiB).
        find_unused_parameters: allow parameters that no output of forward depends on (their
            local gradients count as zero; parameters no rank used keep ``grad`` None); without
            it such a parameter raises an error naming it.
        init_sync: copy rank 0's parameters and buffers to the others (every rank's
            parameter names, shapes and dtypes are checked to be the same either way).

    Limits: each backward must follow its own forward through this wrapper (a second backward
    through the same outputs, or a loss term computed from the parameters outside forward,
    raises an error naming the parameter); ``autograd.grad`` through its outputs is not
    supported (its gradients would be taken for backward's).

    Example::

        dist.init_process_group()
        model = DistributedDataParallel(make_model())
        optimizer = optim.AdamW(model.parameters())
        for inputs, targets in loader:  # a DistributedSampler gives each rank its part
            optimizer.zero_grad()
            _, loss = model(inputs, targets)
            loss.backward()  # gradients averaged over the ranks when it returns
            optimizer.step()
    """

    def __init__(self, module: Module, device_ids=None, output_device=None,
                 broadcast_buffers: bool = True, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, init_sync: bool = True):
        super().__init__()
        group = default_group()  # raises (as PyTorch) before init_process_group
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if not self.bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True  # False inside no_sync()
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't "
                               "have any parameter that requires a gradient.")
        self.reducer = None  # one process: nothing to average
        if group.size > 1:
            self._check_same_parameters(named)
            if init_sync:
                self._broadcast([p for _, p in module.named_parameters()] + self._buffers_of())
            cap = int(self.bucket_cap_mb * 2**20)
            self.reducer = Reducer(named, group, cap, min(cap, int(FIRST_BUCKET_MB * 2**20)),
                                   find_unused_parameters)

    def _buffers_of(self) -> list:
        return [b for _, b in self.module.named_buffers()]

    def _check_same_parameters(self, named: list) -> None:
        """The same names, shapes and dtypes on every rank, or a clear error on every rank
        (different models would otherwise make mismatched collectives)."""
        mine = [(name, tuple(p.shape), str(p.dtype)) for name, p in named]
        everyone = [None] * default_group().size
        all_gather_object(everyone, mine)
        for rank, theirs in enumerate(everyone):
            if theirs != mine:
                detail = (f"{len(theirs)} parameters there, {len(mine)} here"
                          if len(theirs) != len(mine) else
                          next(f"{b} there, {a} here" for a, b in zip(mine, theirs) if a != b))
                raise RuntimeError(
                    f"DistributedDataParallel: rank {rank}'s module differs from this rank's "
                    f"(rank {default_group().rank}): {detail}")

    def _broadcast(self, tensors: list) -> None:
        """Copy rank 0's values of ``tensors`` to every rank: one broadcast per dtype and
        device group of at most a bucket's size, not one per tensor."""
        group = default_group()
        cap = int(self.bucket_cap_mb * 2**20)
        chunks, sizes = {}, {}
        for tensor in tensors:
            key = (tensor._array.dtype, str(tensor.device))
            if not chunks.get(key) or sizes[key] + tensor._array.nbytes > cap:
                chunks.setdefault(key, []).append([])
                sizes[key] = 0
            chunks[key][-1].append(tensor)
            sizes[key] += tensor._array.nbytes
        for key in sorted(chunks, key=str):  # the same order on every rank
            for chunk in chunks[key]:
                xp = get_array_module(chunk[0]._array)
                flat = xp.concatenate([t._array.reshape(-1) for t in chunk])
                group.broadcast(flat, 0).wait()
                if group.rank != 0:
                    start = 0
                    for t in chunk:
                        t._array[...] = flat[start : start + t._array.size].reshape(t.shape)
                        t._version[0] += 1
                        start += t._array.size

    def forward(self, *inputs, **kwargs):
        if self.reducer is not None and self.broadcast_buffers:
            buffers = self._buffers_of()
            if buffers:
                self._broadcast(buffers)
        output = self.module(*inputs, **kwargs)
        if self.reducer is not None and is_grad_enabled():
            if self.require_backward_grad_sync:
                self.reducer.prepare(_tensors_in(output))
            else:
                self.reducer.disarm()
        return output

    @contextlib.contextmanager
    def no_sync(self):
        """Forwards run inside skip the all-reduce in their backward: gradients accumulate
        locally (gradient accumulation); the first synchronized backward after it averages
        everything accumulated."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous


def _tensors_in(output) -> list:
    """The tensors in a forward's output (nested tuples, lists and dicts)."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors_in(item)]
    return []

