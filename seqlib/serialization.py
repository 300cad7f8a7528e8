"""``save`` / ``load``: nested state (tensors, numbers, strings) in safetensors files.

Tensors go into the safetensors body; the structure around them (dicts, lists, tuples,
numbers, strings, None) goes into the header's metadata as JSON. Nothing is pickled, so
loading never runs code. Writes are atomic (``atomic_write``) and files get the permissions
``open(path, "w")`` would give.
A plain safetensors file (e.g. a state_dict exported from PyTorch) loads as a dict of tensors.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy

from seqlib.atomic_write import atomic_write
from seqlib.core.backend import Device, cuda_is_available
from seqlib.core.tensor import Tensor

FORMAT = "seqlib"
VERSION = "1"


def _encode(obj, tensors: dict, ids: dict, where: str):
    """JSON-able description of ``obj``; tensors and arrays are stored in ``tensors``."""
    if isinstance(obj, (Tensor, numpy.ndarray)) or hasattr(obj, "__cuda_array_interface__"):
        is_tensor = isinstance(obj, Tensor)
        array = obj._array if is_tensor else obj
        key = ids.get(id(obj))
        if key is None:
            key = ids[id(obj)] = f"t{len(tensors)}"
            host = array.get() if hasattr(array, "get") else array
            # NOTE: safetensors writes non-contiguous arrays in the wrong order, silently
            tensors[key] = numpy.ascontiguousarray(host)
        shape = list(array.shape)  # safetensors stores 0-d arrays as (1,)
        if not is_tensor:
            return {"__ndarray__": key, "shape": shape}
        from seqlib.nn.parameter import Parameter

        return {"__tensor__": key, "shape": shape, "device": str(obj.device),
                "requires_grad": bool(obj.requires_grad and obj.is_leaf),
                "parameter": isinstance(obj, Parameter)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (numpy.integer, numpy.floating, numpy.bool_)):
        return obj.item()
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, tensors, ids, f"{where} key"),
                              _encode(v, tensors, ids, f"{where}[{k!r}]")]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, ids, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"__tuple__" if isinstance(obj, tuple) else "__list__": items}
    raise TypeError(
        f"save: cannot store an object of type {type(obj).__name__} at {where}; "
        "checkpoints hold tensors, arrays, numbers, strings, None and dicts/lists/tuples of them"
    )


def save(obj, path) -> None:
    """Write ``obj`` (a tensor, or nested dicts/lists/tuples of tensors, numbers and strings)
    to ``path`` atomically.

    Args:
        obj: what to save, e.g. ``model.state_dict()`` or a checkpoint dict.
        path: the file to write (its directory must exist).
    """
    from safetensors.numpy import save_file

    tensors, ids = {}, {}
    structure = _encode(obj, tensors, ids, "obj")
    metadata = {"format": FORMAT, "version": VERSION, "structure": json.dumps(structure)}
    with atomic_write(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)


def _read_header(data: bytes, path) -> dict:
    if len(data) < 8:
        raise ValueError(f"load: {path} is not a safetensors checkpoint (only {len(data)} bytes)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ValueError(
            f"load: {path} is truncated or not a safetensors file (header of {length} bytes, "
            f"file of {len(data)} bytes)"
        )
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"load: {path} is not a safetensors file ({error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"load: {path} is not a safetensors file (bad header)")
    end = max((entry["data_offsets"][1] for key, entry in header.items()
               if key != "__metadata__"), default=0)
    if 8 + length + end > len(data):
        raise ValueError(
            f"load: {path} is truncated: its tensors need {8 + length + end} bytes, the file "
            f"has {len(data)}"
        )
    return header


def _placer(map_location, path):
    """A function ``(tensor, saved_device) -> tensor`` implementing ``map_location``."""
    if callable(map_location):
        return map_location
    if isinstance(map_location, dict):
        return lambda t, saved: t.to(map_location.get(saved, saved))
    if map_location is not None:
        target = Device(map_location)
        return lambda t, saved: t.to(target)

    def original(t, saved):
        if saved != "cpu" and not cuda_is_available():
            raise RuntimeError(
                f"load: {path} holds tensors saved on {saved}, but CUDA is not available; "
                "pass map_location='cpu'"
            )
        return t.to(saved)

    return original


def _decode(node, arrays: dict, place, cache: dict):
    if isinstance(node, dict):
        if "__tensor__" in node:
            key = node["__tensor__"]
            if key not in cache:
                from seqlib.nn.parameter import Parameter

                array = arrays[key].reshape(node["shape"])
                tensor = place(Tensor._make(array), node["device"])
                if node.get("parameter"):
                    tensor = Parameter(tensor, requires_grad=node["requires_grad"])
                elif node["requires_grad"]:
                    tensor.requires_grad_()
                cache[key] = tensor
            return cache[key]
        if "__ndarray__" in node:
            return arrays[node["__ndarray__"]].reshape(node["shape"])
        if "__dict__" in node:
            return {_decode(k, arrays, place, cache): _decode(v, arrays, place, cache)
                    for k, v in node["__dict__"]}
        if "__tuple__" in node:
            return tuple(_decode(v, arrays, place, cache) for v in node["__tuple__"])
        if "__list__" in node:
            return [_decode(v, arrays, place, cache) for v in node["__list__"]]
    if isinstance(node, list):  # a tuple used as a dict key comes back as a list from JSON
        return tuple(_decode(v, arrays, place, cache) for v in node)
    return node


def load(path, map_location=None):
    """Read what ``save`` wrote (or any safetensors file, as a dict of tensors).

    Args:
        path: the file.
        map_location: None (each tensor back on the device it was saved from), "cpu",
            "cuda[:i]", a dict ``{saved_device: device}``, or a callable
            ``(tensor, saved_device) -> tensor``.
    Returns:
        the saved object.
    Raises:
        FileNotFoundError, or ValueError naming the file if it is truncated or not a
        safetensors file.
    """
    from safetensors.numpy import load as parse

    path = Path(path)
    data = path.read_bytes()
    header = _read_header(data, path)
    try:
        arrays = {k: numpy.array(v) for k, v in parse(data).items()}  # own, writable copies
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"load: {path} could not be parsed as safetensors ({error})") from None
    metadata = header.get("__metadata__") or {}
    place = _placer(map_location, path)
    if metadata.get("format") != FORMAT:  # a plain safetensors file: a state_dict
        return {key: place(Tensor._make(array), "cpu") for key, array in arrays.items()}
    return _decode(json.loads(metadata["structure"]), arrays, place, {})
