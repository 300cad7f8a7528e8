"""Corrupt or hostile files get a ValueError naming the file: never a KeyError, TypeError,
RecursionError, a pickle, or a panic inside safetensors."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seqlib as sl
from seqlib.checkpoint import load_checkpoint
from seqlib.models import TransformerLM, TransformerLMConfig, from_pretrained

DEEP = 10_000


def _safetensors(header, data: bytes = b"", raw: bytes | None = None) -> bytes:
    """A file by hand: 8-byte little-endian header length, JSON header, data."""
    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _f32(shape=(1,), begin=0, end=4) -> dict:
    return {"dtype": "F32", "shape": list(shape), "data_offsets": [begin, end]}


def _seqlib(structure: str, tensors: dict | None = None, data: bytes = b"",
            version: str = "2") -> bytes:
    metadata = {"format": "seqlib", "version": version, "structure": structure, "aliases": "{}"}
    return _safetensors({**(tensors or {}), "__metadata__": metadata}, data)


def _tensor_node(key="a", shape=(1,), **fields) -> str:
    node = {"__tensor__": key, "shape": list(shape), "device": "cpu", "requires_grad": False}
    return json.dumps({**node, **fields})


FOUR = b"\0" * 4
HOSTILE = {
    # the safetensors header
    "entry without data_offsets": (_safetensors({"a": {"dtype": "F32", "shape": [1]}}, FOUR),
                                   "needs data_offsets"),
    "entry that is a list": (_safetensors({"a": [0, 4]}, FOUR), "not an object"),
    "entry that is a number": (_safetensors({"a": 5}, FOUR), "not an object"),
    "header that is NaN": (_safetensors(None, raw=b'{"a": NaN}'), "not an object"),
    "string offsets": (_safetensors({"a": {**_f32(), "data_offsets": ["0", "4"]}}, FOUR),
                       "needs data_offsets"),
    "negative offsets": (_safetensors({"a": _f32(begin=-4, end=0)}, FOUR), "needs data_offsets"),
    "reversed offsets": (_safetensors({"a": _f32(begin=4, end=0)}, FOUR), "needs data_offsets"),
    "boolean offsets": (_safetensors({"a": {**_f32(), "data_offsets": [False, True]}}, FOUR),
                        "needs data_offsets"),
    "three offsets": (_safetensors({"a": {**_f32(), "data_offsets": [0, 2, 4]}}, FOUR),
                      "needs data_offsets"),
    "offsets past the data": (_safetensors({"a": _f32((100,), 0, 400)}, FOUR), "truncated"),
    "overlapping tensors": (_safetensors({"a": _f32(), "b": _f32()}, FOUR), "an overlap"),
    "a gap between tensors": (_safetensors({"a": _f32(begin=4, end=8)}, FOUR * 2), "a gap"),
    "bytes after the last tensor": (_safetensors({"a": _f32()}, FOUR * 2), "4 bytes follow"),
    "unknown dtype": (_safetensors({"a": {**_f32(), "dtype": "Q99"}}, FOUR), "Q99"),
    "dtype that is not a name": (_safetensors({"a": {**_f32(), "dtype": 4}}, FOUR), "dtype"),
    "shape against the byte count": (_safetensors({"a": _f32((3,))}, FOUR), "needs 12 bytes"),
    "shape that is a string": (_safetensors({"a": {**_f32(), "shape": "1"}}, FOUR), "shape"),
    "negative shape": (_safetensors({"a": _f32((-1,))}, FOUR), "shape"),
    "header longer than the file": (struct.pack("<Q", 10**12) + b"{}", "truncated"),
    "header length only": (struct.pack("<Q", 0), "not a valid safetensors file"),
    "empty file": (b"", "not a safetensors"),
    "header not UTF-8": (_safetensors(None, raw=b"\xff\xfe{}"), "not valid JSON"),
    "header not JSON": (_safetensors(None, raw=b"{'a': 1}"), "not valid JSON"),
    "header a list": (_safetensors([1, 2]), "not an object"),
    "header nested 10,000 deep": (_safetensors(None, raw=b"[" * DEEP + b"]" * DEEP),
                                  "nests more than 200 levels"),
    "header objects nested 10,000 deep": (
        _safetensors(None, raw=b'{"a":' * DEEP + b"1" + b"}" * DEEP), "nests more than"),
    "metadata a list": (_safetensors({"__metadata__": ["format", "seqlib"]}), "__metadata__"),
    "metadata with a number": (_safetensors({"__metadata__": {"format": 1}}), "__metadata__"),
    "metadata with an object": (_safetensors({"__metadata__": {"structure": {"a": 1}}}),
                                "__metadata__"),
    # seqlib's structure metadata
    "structure missing": (_safetensors({"__metadata__": {"format": "seqlib", "version": "2"}}),
                          "no 'structure' entry"),
    "structure not JSON": (_seqlib("{not json"), "not valid JSON"),
    "structure nested 10,000 deep": (_seqlib("[" * DEEP + "]" * DEEP), "nests more than"),
    "structure of objects nested 10,000 deep": (
        _seqlib('{"__list__": [' * DEEP + "]}" * DEEP), "nests more than"),
    "brackets inside strings do not count": (_seqlib(json.dumps(["[" * DEEP, {"x": 1}])),
                                             "none of the kinds"),
    "a missing tensor key": (_seqlib(_tensor_node("nope")), "'nope' that the file does not"),
    "a missing array key": (_seqlib(json.dumps({"__ndarray__": "nope", "shape": [1]})),
                            "'nope' that the file does not"),
    "a tensor key that is a list": (_seqlib(json.dumps({"__tensor__": ["a"], "shape": [1]}),
                                            {"a": _f32()}, FOUR), "does not hold"),
    "a shape that does not fit": (_seqlib(_tensor_node(shape=(7,)), {"a": _f32()}, FOUR),
                                  r"tensor 'a' \(size 1\) the shape \[7\]"),
    "a tensor node without fields": (_seqlib(json.dumps({"__tensor__": "a"}), {"a": _f32()},
                                             FOUR), "shape None"),
    "requires_grad that is a string": (_seqlib(_tensor_node(requires_grad="yes"), {"a": _f32()},
                                               FOUR), "requires_grad='yes'"),
    "an integer tensor requiring grad": (
        _seqlib(_tensor_node(requires_grad=True),
                {"a": {**_f32(), "dtype": "I32"}}, FOUR), "only floating point"),
    "an unknown device": (_seqlib(_tensor_node(device="tpu:9"), {"a": _f32()}, FOUR),
                          "unknown device"),
    "a dict that is a number": (_seqlib(json.dumps({"__dict__": 5})), "none of the kinds"),
    "a dict entry that is not a pair": (_seqlib(json.dumps({"__dict__": [[1]]})),
                                        "not a \\[key, value\\] pair"),
    "a dict key that is a list": (_seqlib(json.dumps({"__dict__": [[{"__list__": []}, 1]]})),
                                  "dict key that cannot be one"),
    "an object of no kind": (_seqlib(json.dumps({"__pickle__": "os.system"})),
                             "none of the kinds"),
    "version 1 with garbage": (_seqlib("garbage", version="1"), "not valid JSON"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_safetensors_file_gets_a_value_error_naming_it(tmp_path, name):
    content, message = HOSTILE[name]
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        sl.load(path)
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match="hostile.safetensors"):
        load_checkpoint(path)


def _pretrained(tmp_path, vocab_size: int = 7):
    sl.manual_seed(0)
    model = TransformerLM(TransformerLMConfig(vocab_size=vocab_size, d_model=8, n_layers=1,
                                              n_heads=2))
    return model, model.save_pretrained(tmp_path / "model")


@pytest.mark.parametrize("name", ["entry without data_offsets", "structure nested 10,000 deep",
                                  "a missing tensor key", "header nested 10,000 deep"])
def test_from_pretrained_names_a_hostile_weights_file(tmp_path, name):
    _, directory = _pretrained(tmp_path)
    (directory / "model.safetensors").write_bytes(HOSTILE[name][0])
    with pytest.raises(ValueError, match=HOSTILE[name][1]) as error:
        from_pretrained(directory)
    assert str(directory / "model.safetensors") in str(error.value)


def test_the_nesting_limit_is_the_same_for_save_and_load(tmp_path):
    deepest = sl.ones(1)
    for _ in range(66):  # 3 JSON levels per dict, plus the tensor node and its shape
        deepest = {"a": deepest}
    sl.save(deepest, tmp_path / "deep.st")
    loaded = sl.load(tmp_path / "deep.st")
    for _ in range(66):
        loaded = loaded["a"]
    assert loaded.tolist() == [1.0]
    with pytest.raises(ValueError, match="save: obj is nested too deeply for a seqlib file"):
        sl.save({"a": deepest}, tmp_path / "deeper.st")
    very_deep = []
    for _ in range(5000):  # deeper than Python's recursion limit
        very_deep = [very_deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        sl.save(very_deep, tmp_path / "deeper.st")
    assert not (tmp_path / "deeper.st").exists()


def _checkpoint_bytes(tmp_path) -> bytes:
    sl.save({"model": {"weight": sl.arange(6.0).view(2, 3), "bias": sl.tensor([1, 2])},
             "step": 3, "betas": (0.9, 0.999), "names": ["a", None]}, tmp_path / "good.st")
    return (tmp_path / "good.st").read_bytes()


@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 10**6) | st.none())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_damaged_file_loads_or_gets_a_value_error(tmp_path, flips, cut):
    data = bytearray(_checkpoint_bytes(tmp_path))
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    for position, byte in flips:  # mostly inside the length and the JSON header
        data[position % header_end] = byte
    path = tmp_path / "damaged.st"
    path.write_bytes(bytes(data[:cut % len(data)] if cut is not None else data))
    try:
        sl.load(path, map_location="cpu")
    except ValueError as error:
        assert str(path) in str(error)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
    | st.sampled_from(["__tensor__", "__dict__", "__list__", "__tuple__", "__ndarray__", "a"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["__tensor__", "__dict__", "__list__", "__tuple__", "__ndarray__",
                         "shape", "device", "requires_grad", "parameter"]), inner, max_size=3),
    max_leaves=12)


@given(structure=_JSON)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_structure_loads_or_gets_a_value_error(tmp_path, structure):
    path = tmp_path / "fuzzed.st"
    path.write_bytes(_seqlib(json.dumps(structure), {"a": _f32()}, FOUR))
    try:
        sl.load(path, map_location="cpu")
    except ValueError as error:
        assert str(path) in str(error)
