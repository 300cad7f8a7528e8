"""``save`` / ``load``: nested state (tensors, numbers, strings) in safetensors files.

Tensors go into the safetensors body, each under its path in the saved object joined with
"." (``model.encoder.norm.weight``, ``optimizer.state.0.exp_avg``), so a saved state_dict is a
plain safetensors state_dict that PyTorch and ``safetensors.numpy`` read as is. The structure
around them (dicts, lists, tuples, numbers, strings, None) goes into the header's metadata as
JSON. Nothing is pickled, so loading never runs code, and every part of a file is checked
before it is used, so a corrupt or hostile file gets a ValueError naming it. Writes are atomic
(``atomic_write``) and files get the permissions ``open(path, "w")`` would give. A plain
safetensors file (e.g. a state_dict exported from PyTorch) loads as a dict of tensors; files
of format version 1 (tensors keyed ``t0, t1, ...``) still load.
"""

from __future__ import annotations

import json
import math
import re
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
    try:
        structure = json.dumps(_encode(obj, tensors, (), "obj"))
    except RecursionError:
        structure = None
    if structure is None or _json_depth(structure) > MAX_NESTING:  # load would refuse it
        raise ValueError(f"save: obj is nested too deeply for a seqlib file, which allows "
                         f"{MAX_NESTING} levels of JSON structure (a dict takes 3, a list or "
                         "tuple 2)")
    metadata = {"format": FORMAT, "version": VERSION, "structure": structure,
                "aliases": json.dumps(tensors.aliases)}
    with atomic_write(path) as temporary:
        save_file(tensors.arrays, temporary, metadata=metadata)


# ---------------------------------------------------------------------------- reading files
# Everything in a file is checked before it is used: a corrupt or hostile file gets a ValueError
# naming it, never a KeyError, a RecursionError or a crash inside NumPy or safetensors.

MAX_NESTING = 200  # JSON levels; seqlib's own files nest 3 per level of dicts in the saved object
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
             "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class _Malformed(Exception):
    """A file's content is not what its format promises (the caller adds the file's name)."""


def _json_depth(text: str) -> int:
    """How deeply the arrays and objects of JSON ``text`` nest, counted without recursion."""
    skeleton = numpy.frombuffer(_JSON_STRING.sub("", text).encode(), dtype=numpy.uint8)
    opens = (skeleton == ord("[")) | (skeleton == ord("{"))
    closes = (skeleton == ord("]")) | (skeleton == ord("}"))
    return int(numpy.cumsum(opens.astype(numpy.int64) - closes).max(initial=0))


def _parse_json(text, what: str):
    """``json.loads(text)``, refusing nesting deeper than ``MAX_NESTING`` (``json.loads`` and
    the recursive decoders after it would raise RecursionError) with ``_Malformed``."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if _json_depth(text) > MAX_NESTING:
            raise _Malformed(f"{what} nests more than {MAX_NESTING} levels deep")
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, ...
        raise _Malformed(f"{what} is not valid JSON ({error})") from None


def read_json(path, caller: str):
    """The JSON value in the file ``path`` (a config, a tokenizer), parsed as ``load`` parses
    metadata: invalid JSON and nesting deeper than ``MAX_NESTING`` get a ValueError naming
    ``caller`` and the file, never a RecursionError."""
    try:
        return _parse_json(Path(path).read_bytes(), str(path))
    except _Malformed as error:
        raise ValueError(f"{caller}: {error}") from None


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(key: str, entry) -> tuple:
    """``(begin, end)`` of a tensor's bytes, after checking its header entry."""
    if not isinstance(entry, dict):
        raise _Malformed(f"the header entry of tensor {key!r} is not an object (got "
                         f"{type(entry).__name__})")
    offsets, shape, dtype = entry.get("data_offsets"), entry.get("shape"), entry.get("dtype")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1]):
        raise _Malformed(f"tensor {key!r} needs data_offsets [begin, end] with "
                         f"0 <= begin <= end, got {offsets!r}")
    if not (isinstance(shape, list) and all(map(_is_count, shape))):
        raise _Malformed(f"tensor {key!r} needs a shape of sizes >= 0, got {shape!r}")
    if not isinstance(dtype, str):
        raise _Malformed(f"tensor {key!r} needs a dtype name, got {dtype!r}")
    size = math.prod(shape) * _ITEMSIZE.get(dtype, 0)
    if dtype in _ITEMSIZE and size != offsets[1] - offsets[0]:
        raise _Malformed(f"tensor {key!r} of shape {shape} and dtype {dtype} needs {size} "
                         f"bytes, its data_offsets {offsets} hold {offsets[1] - offsets[0]}")
    return tuple(offsets)


def _check_header(header) -> int:
    """Check a parsed safetensors header; returns how many bytes of data its tensors need."""
    if not isinstance(header, dict):
        raise _Malformed(f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.get("__metadata__", {})
    if not (isinstance(metadata, dict)
            and all(isinstance(v, str) for v in metadata.values())):
        raise _Malformed("the header's __metadata__ must map names to strings, got "
                         f"{str(metadata)[:80]}")
    spans = sorted((_check_entry(key, entry), key) for key, entry in header.items()
                   if key != "__metadata__")
    position = 0
    for (begin, end), key in spans:  # safetensors wants the tensors back to back
        if begin != position:
            raise _Malformed(f"tensor {key!r} starts at byte {begin} of the data, where "
                             f"{'a gap' if begin > position else 'an overlap'} with the tensor "
                             f"before it (ending at byte {position}) begins")
        position = end
    return position


def _read_header(data: bytes, path) -> dict:
    """The checked safetensors header of the file ``path`` whose bytes are ``data``."""
    if len(data) < 8:
        raise ValueError(f"load: {path} is not a safetensors checkpoint (only {len(data)} bytes)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ValueError(
            f"load: {path} is truncated or not a safetensors file (header of {length} bytes, "
            f"file of {len(data)} bytes)"
        )
    try:
        header = _parse_json(data[8 : 8 + length], "the header")
        end = 8 + length + _check_header(header)
    except _Malformed as error:
        raise ValueError(f"load: {path} is not a valid safetensors file: {error}") from None
    if end > len(data):
        raise ValueError(f"load: {path} is truncated: its tensors need {end} bytes, the file "
                         f"has {len(data)}")
    if end < len(data):
        raise ValueError(f"load: {path} is not a valid safetensors file: {len(data) - end} "
                         "bytes follow its last tensor")
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


def _stored(node: dict, marker: str, arrays: dict):
    """The stored array a ``__tensor__``/``__ndarray__`` node names, in the node's shape."""
    key, shape = node.get(marker), node.get("shape")
    if not isinstance(key, str) or key not in arrays:
        raise _Malformed(f"its structure refers to a tensor {str(key)[:80]!r} that the file "
                         "does not hold")
    if not (isinstance(shape, list) and all(map(_is_count, shape))
            and math.prod(shape) == arrays[key].size):
        raise _Malformed(f"its structure gives tensor {key!r} (size {arrays[key].size}) the "
                         f"shape {str(shape)[:80]}")
    return key, arrays[key].reshape(shape)


def _decode_tensor(node: dict, arrays: dict, place, cache: dict) -> Tensor:
    """The tensor a ``__tensor__`` node describes; nodes naming one stored key share memory,
    and those that also agree on being a Parameter and requiring grad are one object."""
    key, array = _stored(node, "__tensor__", arrays)
    parameter, requires_grad, device = (node.get("parameter", False), node.get("requires_grad"),
                                        node.get("device"))
    if not (isinstance(parameter, bool) and isinstance(requires_grad, bool)
            and isinstance(device, str)):
        raise _Malformed(f"its structure describes tensor {key!r} with parameter="
                         f"{parameter!r}, requires_grad={requires_grad!r}, device={device!r} "
                         "(expected two bools and a device name)")
    if requires_grad and array.dtype.kind not in "fc":
        raise _Malformed(f"its structure says tensor {key!r} of dtype {array.dtype} requires "
                         "grad; only floating point tensors can")
    if key not in cache:  # placed once, however many entries refer to it
        try:
            Device(device)
        except ValueError as error:
            raise _Malformed(f"tensor {key!r} was saved on an unknown device ({error})") from None
        cache[key] = place(Tensor._make(array), device)
    flavour = (key, parameter, requires_grad)
    if flavour not in cache:
        from seqlib.nn.parameter import Parameter

        array = cache[key]._array
        if parameter:
            cache[flavour] = Parameter(Tensor._make(array), requires_grad=requires_grad)
        else:
            cache[flavour] = Tensor._make(array).requires_grad_(requires_grad)
    return cache[flavour]


def _decode(node, arrays: dict, place, cache: dict):
    """The object a structure node describes (loops, not comprehensions: each level of
    nesting costs one Python frame, which ``MAX_NESTING`` bounds)."""
    if isinstance(node, list):  # a tuple used as a dict key comes back as a list from JSON
        node = {"__tuple__": node}
    if not isinstance(node, dict):
        return node  # a number, a string, a bool or None
    if "__tensor__" in node:
        return _decode_tensor(node, arrays, place, cache)
    if "__ndarray__" in node:
        return _stored(node, "__ndarray__", arrays)[1]
    marker = next((m for m in ("__dict__", "__tuple__", "__list__") if m in node), None)
    items = node.get(marker)
    if not isinstance(items, list):
        raise _Malformed(f"its structure holds an object that is none of the kinds seqlib "
                         f"writes: {str(node)[:80]}")
    decoded = []
    for item in items:
        if marker != "__dict__":
            decoded.append(_decode(item, arrays, place, cache))
            continue
        if not (isinstance(item, list) and len(item) == 2):
            raise _Malformed(f"its structure holds a dict entry that is not a [key, value] "
                             f"pair: {str(item)[:80]}")
        key = _decode(item[0], arrays, place, cache)
        try:
            hash(key)
        except TypeError:
            raise _Malformed(f"its structure holds a dict key that cannot be one: "
                             f"{str(item[0])[:80]}") from None
        decoded.append((key, _decode(item[1], arrays, place, cache)))
    return dict(decoded) if marker == "__dict__" else (
        tuple(decoded) if marker == "__tuple__" else decoded)


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
        safetensors file, malformed (header entries, offsets, metadata or structure that do
        not fit together; JSON nested more than ``MAX_NESTING`` levels), or written in a
        format version this seqlib cannot read.
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
    try:
        if not isinstance(metadata.get("structure"), str):
            raise _Malformed("its metadata has no 'structure' entry")
        structure = _parse_json(metadata["structure"], "its 'structure' metadata")
        return _decode(structure, arrays, place, {})
    except _Malformed as error:
        raise ValueError(f"load: {path} is not a valid seqlib file: {error}") from None
