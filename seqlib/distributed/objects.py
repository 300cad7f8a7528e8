"""Collectives on picklable Python objects (PyTorch's ``*_object`` functions).

Objects are pickled, sent as byte arrays through the group's array collectives (with their
deadlines), and unpickled. As in PyTorch, unpickling runs code the other ranks chose: use them
between the processes of one job only, never on data from elsewhere.
"""

from __future__ import annotations

import pickle

import numpy

from seqlib.distributed.process_group import _check_group, default_group


def _gather_bytes(payload: bytes) -> list:
    """Every rank's ``payload``, in rank order."""
    group = default_group()
    sizes = numpy.zeros((group.size, 1), numpy.int64)
    group.all_gather(numpy.array([len(payload)], numpy.int64), sizes).wait()
    padded = numpy.zeros(max(int(sizes.max()), 1), numpy.uint8)
    padded[: len(payload)] = numpy.frombuffer(payload, numpy.uint8)
    gathered = numpy.empty((group.size, padded.size), numpy.uint8)
    group.all_gather(padded, gathered).wait()
    return [gathered[rank, : int(sizes[rank, 0])].tobytes() for rank in range(group.size)]


def all_gather_object(object_list: list, obj, group=None) -> None:
    """``object_list[r]`` becomes rank ``r``'s ``obj`` (``object_list`` has one slot per rank)."""
    _check_group(group)
    size = default_group().size
    if len(object_list) != size:
        raise ValueError(f"all_gather_object: object_list must have {size} slots (one per "
                         f"rank), got {len(object_list)}")
    for rank, payload in enumerate(_gather_bytes(pickle.dumps(obj))):
        object_list[rank] = pickle.loads(payload)


def broadcast_object_list(object_list: list, src: int = 0, group=None) -> None:
    """Replace the entries of ``object_list`` on every rank by rank ``src``'s, in place."""
    _check_group(group)
    group = default_group()
    if not 0 <= src < group.size:
        raise ValueError(f"broadcast_object_list: rank {src} is not in the group")
    payload = pickle.dumps(list(object_list)) if group.rank == src else b""
    size = numpy.array([len(payload)], numpy.int64)
    group.broadcast(size, src).wait()
    buffer = numpy.zeros(int(size[0]), numpy.uint8)
    if group.rank == src:
        buffer[:] = numpy.frombuffer(payload, numpy.uint8)
    group.broadcast(buffer, src).wait()
    object_list[:] = pickle.loads(buffer.tobytes())
