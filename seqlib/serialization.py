"""``save`` / ``load``: nested state (tensors, numbers, strings) in safetensors files.

Tensors go into the safetensors body, each under its path in the saved object joined with
"." (``model.encoder.norm.weight``, ``optimizer.state.0.exp_avg``), so a saved state_dict is a
plain safetensors state_dict that PyTorch and ``safetensors.numpy`` read as is. The structure
around them (dicts, lists, tuples, numbers, strings, None) goes into the header's metadata as
JSON. Nothing is pickled, so loading never runs code. Writes are atomic (``atomic_write``)
and files get the permissions ``open(path, "w")`` would give. A plain safetensors file (e.g.
a state_dict exported from PyTorch) loads as a dict of tensors; files of format version 1
(tensors keyed ``t0, t1, ...``) still load.
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
VERSION = "2"  # 1: tensors keyed t0, t1, ...; 2: keyed by their path in the saved object
READABLE_VERSIONS = ("1", "2")
ROOT_KEY = "tensor"  # the key of a tensor saved on its own, which has no path


class _Tensors:
    """The arrays to write, each keyed by its path in the saved object, stored once."""

    def __init__(self):
        self.arrays = {}  # safetensors key -> contiguous host array
        self.keys = {}  # id(array) -> its key, so an array reached twice is stored once
        self.aliases = {}  # path of a second reference -> the key its array is stored under
        self._taken = set()

    def key_for(self, array, path: tuple) -> str:
        """The key ``array`` is stored under; records ``path`` as an alias if already stored."""
        key = self.keys.get(id(array))
        if key is not None:
            self.aliases[self._unique(path)] = key
            return key
        key = self.keys[id(array)] = self._unique(path)
        host = array.get() if hasattr(array, "get") else array
        # NOTE: safetensors writes non-contiguous arrays in the wrong order, silently
        self.arrays[key] = numpy.ascontiguousarray(host)
        return key

    def _unique(self, path: tuple) -> str:
        """``path`` joined with "."; a suffix ``#n`` only if two paths join to the same text
        (``{"a.b": x, "a": {"b": y}}``)."""
        name = ".".join(path) if path else ROOT_KEY
        unique, count = name, 0
        while unique in self._taken:
            count += 1
            unique = f"{name}#{count}"
        self._taken.add(unique)
        return unique


def _encode(obj, tensors: _Tensors, path: tuple, where: str):
    """JSON-able description of ``obj``; tensors and arrays go to ``tensors``, keyed by
    ``path`` (the dict keys and list indices leading to them)."""
    if isinstance(obj, (Tensor, numpy.ndarray)) or hasattr(obj, "__cuda_array_interface__"):
        is_tensor = isinstance(obj, Tensor)
        array = obj._array if is_tensor else obj
        key = tensors.key_for(array, path)
        shape = list(array.shape)  # version 1 stored 0-d arrays as (1,)
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
        return {"__dict__": [[_encode(k, tensors, (*path, str(k)), f"{where} key"),
                              _encode(v, tensors, (*path, str(k)), f"{where}[{k!r}]")]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, (*path, str(i)), f"{where}[{i}]")
                 for i, v in enumerate(obj)]
        return {"__tuple__" if isinstance(obj, tuple) else "__list__": items}
    raise TypeError(
        f"save: cannot store an object of type {type(obj).__name__} at {where}; "
        "checkpoints hold tensors, arrays, numbers, strings, None and dicts/lists/tuples of them"
    )


def save(obj, path) -> None:
    """Write ``obj`` (a tensor, or nested dicts/lists/tuples of tensors, numbers and strings)
    to ``path`` atomically.

    Each tensor is stored under its path in ``obj`` joined with "." (a state_dict keeps its
    own keys; ``{"model": sd}`` gives ``model.<name>``), so any safetensors reader sees named
    tensors. A tensor reached twice (tied weights) is stored once, under the first path; the
    later paths are listed in the metadata entry ``aliases`` (``{alias: stored key}``).
    Everything else (numbers, strings, the nesting) is JSON in the metadata entry
    ``structure``. The file gets the permissions ``open(path, "w")`` would give.

    Args:
        obj: what to save, e.g. ``model.state_dict()`` or a checkpoint dict.
        path: the file to write (its directory must exist).
    """
    from safetensors.numpy import save_file

    tensors = _Tensors()
    structure = _encode(obj, tensors, (), "obj")
    metadata = {"format": FORMAT, "version": VERSION, "structure": json.dumps(structure),
                "aliases": json.dumps(tensors.aliases)}
    with atomic_write(path) as temporary:
        save_file(tensors.arrays, temporary, metadata=metadata)


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


def _decode_tensor(node: dict, arrays: dict, place, cache: dict) -> Tensor:
    """The tensor a ``__tensor__`` node describes; nodes naming one stored key share memory,
    and those that also agree on being a Parameter and requiring grad are one object."""
    key = node["__tensor__"]
    if key not in cache:  # placed once, however many entries refer to it
        cache[key] = place(Tensor._make(arrays[key].reshape(node["shape"])), node["device"])
    flavour = (key, bool(node.get("parameter")), bool(node["requires_grad"]))
    if flavour not in cache:
        from seqlib.nn.parameter import Parameter

        array = cache[key]._array
        if flavour[1]:
            cache[flavour] = Parameter(Tensor._make(array), requires_grad=flavour[2])
        else:
            cache[flavour] = Tensor._make(array).requires_grad_(flavour[2])
    return cache[flavour]


def _decode(node, arrays: dict, place, cache: dict):
    if isinstance(node, dict):
        if "__tensor__" in node:
            return _decode_tensor(node, arrays, place, cache)
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
    """Read what ``save`` wrote (format versions 1 and 2), or any safetensors file as a dict
    of tensors.

    Args:
        path: the file.
        map_location: None (each tensor back on the device it was saved from), "cpu",
            "cuda[:i]", a dict ``{saved_device: device}``, or a callable
            ``(tensor, saved_device) -> tensor``.
    Returns:
        the saved object.
    Raises:
        FileNotFoundError, or ValueError naming the file if it is truncated, not a
        safetensors file, or written in a format version this seqlib cannot read.
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
    if metadata.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"load: {path} is in seqlib format version {metadata.get('version')!r}; this "
            f"seqlib reads versions {', '.join(READABLE_VERSIONS)} (a newer seqlib wrote it?)"
        )
    return _decode(json.loads(metadata["structure"]), arrays, place, {})
