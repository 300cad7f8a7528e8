"""Gradient buckets for DistributedDataParallel, averaged across ranks while backward runs.

How a step goes:

1. ``prepare(outputs)`` (end of DDP's forward) walks the graph once, from the outputs to the
   leaves, and counts for every parameter the graph edges that will deliver a gradient to it.
2. A gradient hook on each parameter counts the deliveries during backward. The last one is
   the parameter's whole gradient (the ``.grad`` accumulated so far plus this delivery); it is
   written into the parameter's slice of its bucket, a flat array of consecutive parameters.
3. A bucket whose parameters are all written starts its all-reduce (non-blocking) at once,
   while backward computes the rest: buckets start in index order, the same on every rank, as
   MPI requires of collectives.
4. The hook of the very last delivery waits for all buckets and writes the averages into the
   ``.grad`` of every parameter, so ``backward()`` returns with synchronized gradients and
   ``optimizer.step()`` needs nothing extra (PyTorch finishes inside backward too). The
   engine accumulates hooks' results after they return, so this parameter's average is
   handed back as its hook's result rather than written.

Every wait has the process group's deadline; MPI moves non-blocking collectives forward only
inside MPI calls, so each hook also polls the buckets in flight.
"""

from __future__ import annotations

import time
import weakref

import numpy

from seqlib.core.backend import device_of, get_array_module
from seqlib.core.tensor import Tensor

# states of one iteration
IDLE = "idle"  # no synchronizing forward since the last reduction: hooks do nothing
ARMED = "armed"  # a forward counted the uses; backward will reduce
REDUCING = "reducing"  # backward has delivered at least one gradient
FINISHED = "finished"  # gradients averaged; another delivery before the next forward is an error


class Bucket:
    """Consecutive parameters of one dtype and device whose gradients travel as one array."""

    def __init__(self, indices: list, params: list):
        self.indices = indices  # parameter indices, in bucket order
        sizes = [params[i].numel() for i in indices]
        self.offsets = dict(zip(indices, numpy.cumsum([0, *sizes[:-1]]).tolist()))
        first = params[indices[0]]._array
        self.buffer = get_array_module(first).empty(sum(sizes), first.dtype)  # flat gradients
        self.waiting = 0  # parameters not yet written this iteration
        self.work = None  # the all-reduce in flight

    def view(self, index: int, shape: tuple):
        """The slice of parameter ``index``, shaped like it."""
        start = self.offsets[index]
        return self.buffer[start : start + int(numpy.prod(shape, dtype=numpy.int64))].reshape(
            shape)


def assign_buckets(params: list, cap_bytes: int, first_cap_bytes: int) -> list:
    """Parameter indices grouped into buckets, in reverse registration order (roughly the
    order in which backward produces gradients), by dtype and device, each at most
    ``cap_bytes`` (the first ``first_cap_bytes``, so communication starts early) unless one
    parameter alone is larger."""
    groups, current, size, key = [], [], 0, None
    for index in reversed(range(len(params))):
        array = params[index]._array
        nbytes, new_key = array.nbytes, (array.dtype, device_of(array))
        cap = first_cap_bytes if not groups else cap_bytes
        if current and (new_key != key or size + nbytes > cap):
            groups.append(current)
            current, size = [], 0
        current.append(index)
        size, key = size + nbytes, new_key
    if current:
        groups.append(current)
    return groups


class Reducer:
    """Averages the gradients of ``params`` across the group's ranks during backward.

    Args:
        named_params: ``(name, Parameter)`` pairs of the parameters that require grad.
        group: the process group's backend.
        cap_bytes, first_cap_bytes: bucket sizes (see ``assign_buckets``).
        find_unused_parameters: let parameters that no output depends on take part (their
            local gradient counts as zero); without it they are an error.
    """

    def __init__(self, named_params: list, group, cap_bytes: int, first_cap_bytes: int,
                 find_unused_parameters: bool):
        self.names = [name for name, _ in named_params]
        self.params = [param for _, param in named_params]
        self.group, self.find_unused = group, find_unused_parameters
        self.buckets = [Bucket(indices, self.params)
                        for indices in assign_buckets(self.params, cap_bytes, first_cap_bytes)]
        self.bucket_of = {i: bucket for bucket in self.buckets for i in bucket.indices}
        self.index = {id(param): i for i, param in enumerate(self.params)}
        self.state = IDLE
        self.remaining = []  # per parameter: gradient deliveries still to come
        self.next_bucket = 0  # the next bucket to start
        self.used, self.used_work = None, None  # find_unused: which ranks used which params
        self.wait_seconds = 0.0  # diagnostics: time blocked waiting for all-reduces ...
        self.copy_seconds = 0.0  # ... and copying gradients into and out of buckets
        ref = weakref.ref(self)  # the parameters outlive a discarded DDP: hooks must not pin it
        self.handles = [param.register_hook(_hook(ref, i)) for i, param in
                        enumerate(self.params)]

    # ---- forward ---------------------------------------------------------------------------
    def prepare(self, outputs: list) -> None:
        """Count the gradient deliveries each parameter will get from ``outputs``' graph."""
        if self.state == REDUCING:
            raise RuntimeError(self._unfinished_message())
        if self.state == ARMED:  # a forward without backward: drop it
            self._drain()
        counts = count_uses(outputs, self.index, len(self.params))
        unused = [self.names[i] for i, count in enumerate(counts) if count == 0]
        if unused and not self.find_unused:
            raise RuntimeError(
                "DistributedDataParallel: parameters that no output of forward depends on: "
                f"{', '.join(unused)}. Pass find_unused_parameters=True to treat their local "
                "gradients as zero, or freeze them (requires_grad_(False)) on every rank.")
        self.remaining, self.next_bucket, self.state = counts, 0, ARMED
        for bucket in self.buckets:
            bucket.waiting, bucket.work = len(bucket.indices), None
        if self.find_unused:  # every rank, every step: collectives must match across ranks
            self.used = numpy.array([count > 0 for count in counts], numpy.uint8)
            self.used_work = self.group.all_reduce(self.used, "max")
            for i, count in enumerate(counts):
                if count == 0:
                    self._write(i, None)
            if self.next_bucket == len(self.buckets):  # nothing will reach a hook
                self._finish(None)

    # ---- backward ----------------------------------------------------------------------------
    def deliver(self, i: int, grad):
        """The hook of parameter ``i``: count the delivery, bucket the gradient if it is the
        last, start ready buckets, and finish after the last delivery of all."""
        if self.state in (ARMED, REDUCING):
            self.state = REDUCING
            left = self.remaining[i] - 1
            if left >= 0:
                self.remaining[i] = left
                for bucket in self.buckets[: self.next_bucket]:
                    bucket.work.is_completed()  # moves MPI's non-blocking collectives on
                if left:
                    return None
                self._write(i, grad)
                return self._finish(i) if self.next_bucket == len(self.buckets) else None
        elif self.state == IDLE:
            return None
        raise RuntimeError(
            f"DistributedDataParallel: a gradient reached parameter {self.names[i]} after "
            "all the gradients its forward promised had arrived (Expected to mark a variable "
            "ready only once). Causes: 1) the loss uses the parameter outside the module's "
            "forward (e.g. a penalty on the weights: compute it inside forward, or use the "
            "optimizer's weight_decay); 2) a second backward through one forward's outputs, "
            "or autograd.grad through them (run forward again, or run the extra pass after a "
            "forward inside ddp.no_sync()).")

    def _write(self, i: int, grad) -> None:
        """Put parameter ``i``'s whole gradient in its bucket (``grad``: this delivery, None
        for an unused parameter) and start the buckets that are complete, in order."""
        started = time.perf_counter()
        param, bucket = self.params[i], self.bucket_of[i]
        target = bucket.view(i, param._array.shape)
        xp = get_array_module(target)
        held = None if param._grad is None else param._grad._array
        if grad is None:
            target[...] = 0 if held is None else held
        elif held is None:
            xp.copyto(target, grad)
        else:
            xp.add(held, grad, out=target)
        bucket.waiting -= 1
        self.copy_seconds += time.perf_counter() - started
        while self.next_bucket < len(self.buckets) and not self.buckets[self.next_bucket].waiting:
            ready = self.buckets[self.next_bucket]
            ready.work = self.group.all_reduce(ready.buffer, "sum")
            self.next_bucket += 1

    def _finish(self, current):
        """Wait for every bucket and write the averages into the gradients; returns the
        average for parameter ``current`` (whose hook is running), or None."""
        started = time.perf_counter()
        for bucket in self.buckets:
            bucket.work.wait()
        if self.used_work is not None:
            self.used_work.wait()
        waited = time.perf_counter()
        self.wait_seconds += waited - started
        result = None
        for bucket in self.buckets:
            scale = bucket.buffer.dtype.type(1.0 / self.group.size)
            for i in bucket.indices:
                if self.used is not None and not self.used[i]:
                    continue  # no rank used it: its gradient stays as it was (None), as PyTorch
                param = self.params[i]
                average = bucket.view(i, param._array.shape)
                if i == current:  # the engine stores the hook's result as the new .grad
                    param._grad, result = None, average * scale
                elif param._grad is None:
                    param._grad = Tensor._make(average * scale)
                else:
                    get_array_module(average).multiply(average, scale, out=param._grad._array)
                    param._grad._version[0] += 1
        self.copy_seconds += time.perf_counter() - waited
        self.state = FINISHED
        return result

    # ---- no backward, and errors --------------------------------------------------------
    def disarm(self) -> None:
        """A forward that does not synchronize (``no_sync``): its backward reduces nothing."""
        if self.state == REDUCING:
            raise RuntimeError(self._unfinished_message())
        if self.state == ARMED:
            self._drain()
        self.state = IDLE

    def _drain(self) -> None:
        """Complete what an abandoned iteration started (every rank started the same)."""
        for bucket in self.buckets[: self.next_bucket]:
            bucket.work.wait()
        if self.used_work is not None:
            self.used_work.wait()
        self.state = IDLE

    def _unfinished_message(self) -> str:
        missing = [name for name, left in zip(self.names, self.remaining) if left]
        return ("Expected to have finished reduction in the prior iteration before starting a "
                "new one: backward delivered no gradient (or fewer than forward promised) to "
                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}. Every output "
                "of forward that depends on a parameter must take part in the loss; pass "
                "find_unused_parameters=True only for parameters no output depends on.")

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()


def _hook(ref, i: int):
    def hook(grad: Tensor):
        reducer = ref()
        return None if reducer is None else reducer.deliver(i, grad._array)

    return hook


def count_uses(outputs: list, index: dict, n: int) -> list:
    """How many graph edges lead from ``outputs`` to each parameter (``index``: id -> i)."""
    counts = [0] * n
    stack, seen = [], set()
    for tensor in outputs:
        if tensor.grad_fn is not None:
            stack.append(tensor.grad_fn)
        elif id(tensor) in index:  # forward returned a parameter itself
            counts[index[id(tensor)]] += 1
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for edge in node._edges:
            if type(edge) is tuple:
                stack.append(edge[0])
            elif edge is not None and id(edge) in index:
                counts[index[id(edge)]] += 1
    return counts
