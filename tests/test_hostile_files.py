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


# ---------------------------------------------------------------------------- config.json

BAD_CONFIGS = {
    "invalid JSON": ("{'vocab_size': 7", "config.json is not valid JSON"),
    "not UTF-8": (b"\xff\xfe", "not valid JSON"),
    "a list": ("[1, 2]", "must hold a JSON object of the model's config, got a JSON list"),
    "nested 10,000 deep": ('{"a": ' + "[" * DEEP + "]" * DEEP + "}", "nests more than"),
    "an unknown key": ({"d_modle": 8}, r"unknown key\(s\) \['d_modle'\] for a TransformerLM; "
                                       r"known: \['activation', "),
    "no vocab_size": ({"vocab_size": None}, r"'vocab_size' must be an integer >= 1, got None"),
    "a missing vocab_size": ({"vocab_size": "<drop>"}, r"lacks the key\(s\) \['vocab_size'\]"),
    "a string size": ({"d_model": "big"}, "'d_model' must be an integer >= 1, got 'big'"),
    "a float size": ({"d_model": 8.5}, "'d_model' must be an integer >= 1, got 8.5"),
    "a zero size": ({"vocab_size": 0}, "'vocab_size' must be an integer >= 1, got 0"),
    "a bool size": ({"n_layers": True}, "'n_layers' must be an integer >= 1, got True"),
    "d_ff not an int or null": ({"d_ff": "x"}, "'d_ff' must be an integer >= 1 or null"),
    "a NaN dropout": ('{"model_type": "transformer", "vocab_size": 7, "dropout": NaN}',
                      "'dropout' must be a finite number, got nan"),
    "a string bool": ({"tie_weights": "yes"}, "'tie_weights' must be true or false"),
    "a list for a string": ({"attention_type": ["full"]}, "'attention_type' must be a string"),
    "options not an object": ({"attention_options": [1]}, "must be a JSON object"),
    "an unknown model_type": ({"model_type": "gpt"}, "unknown model_type 'gpt'"),
    "a model_type that is a list": ({"model_type": ["lstm"]}, r"unknown model_type \['lstm'\]"),
    "a dropout out of range": ({"dropout": 2.0}, "does not describe a valid TransformerLM: "
                                                 "dropout probability has to be between 0 and 1"),
    "d_model not divisible": ({"n_heads": 3}, "must be divisible by n_heads"),
    "an unknown attention option": ({"attention_options": {"bogus": 1}},
                                    "does not describe a valid TransformerLM: .*bogus"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_a_malformed_config_json_gets_a_value_error_naming_it(tmp_path, name):
    _, directory = _pretrained(tmp_path)
    content, message = BAD_CONFIGS[name]
    if isinstance(content, dict):
        config = {**json.loads((directory / "config.json").read_text()), **content}
        content = json.dumps({k: v for k, v in config.items() if v != "<drop>"})
    path = directory / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message) as error:
        from_pretrained(directory)
    assert str(path) in str(error.value)


def test_a_weights_file_that_does_not_fit_names_both_files(tmp_path):
    _, directory = _pretrained(tmp_path)
    sl.save({"token_embedding.weight": sl.zeros(3, 8)}, directory / "model.safetensors")
    with pytest.raises(ValueError, match=r"(?s)model.safetensors does not fit the TransformerLM of "
                                         r".*config.json: .*size mismatch"):
        from_pretrained(directory)
    sl.save([sl.zeros(3)], directory / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors holds a list, not a state_dict"):
        from_pretrained(directory)


# ---------------------------------------------------------------------------- tokenizer files

def _sentencepiece():
    from seqlib.tokenizers import SentencePieceTokenizer

    return SentencePieceTokenizer.train(iterator=["to be or not to be"] * 20, vocab_size=300)


@pytest.mark.parametrize("content", [b"", b"garbage\x00\x01" * 10, b"\x0a\x02\x0a\x00"])
def test_a_corrupt_sentencepiece_model_gets_a_value_error_naming_it(tmp_path, content):
    from seqlib.tokenizers import SentencePieceTokenizer, load_tokenizer

    path = tmp_path / "tokenizer.model"
    path.write_bytes(content)
    for load in (SentencePieceTokenizer.load, load_tokenizer):
        with pytest.raises(ValueError, match="is empty|is not a SentencePiece model|without "
                                             "pieces") as error:
            load(path)
        assert str(path) in str(error.value)
    with pytest.raises(ValueError, match="SentencePieceTokenizer.from_bytes: the data"):
        SentencePieceTokenizer.from_bytes(content)
    with pytest.raises(TypeError, match="must be bytes, got str"):
        SentencePieceTokenizer.from_bytes("tokenizer.model")
    _, directory = _pretrained(tmp_path)
    (directory / "tokenizer.model").write_bytes(content)
    with pytest.raises(ValueError, match="tokenizer.model"):
        from_pretrained(directory)


BAD_CHAR_TOKENIZERS = {
    "invalid JSON": ("{bad", "not valid JSON"),
    "not UTF-8": (b"\xff\xfe", "not valid JSON"),
    "a list": ("[1]", 'it is not {"type": "char"'),
    "another type": ('{"type": "bpe", "vocab": ["a"]}', 'it is not {"type": "char"'),
    "no vocab": ('{"type": "char"}', 'it is not {"type": "char"'),
    "a number vocab": ('{"type": "char", "vocab": 5}', "vocab must be a list of characters"),
    "an object vocab": ('{"type": "char", "vocab": {"a": 0}}', "must be a list of characters"),
    "a multi-character entry": ('{"type": "char", "vocab": ["ab", "c"]}', "got 'ab'"),
    "a number entry": ('{"type": "char", "vocab": [1, 2]}', "single characters, got 1"),
    "an empty vocab": ('{"type": "char", "vocab": []}', "vocab is empty"),
    "a repeated character": ('{"type": "char", "vocab": ["a", "b", "a"]}', "holds 'a' twice"),
    "nested 10,000 deep": ("[" * DEEP + "]" * DEEP, "nests more than"),
}


@pytest.mark.parametrize("name", list(BAD_CHAR_TOKENIZERS))
def test_a_corrupt_char_tokenizer_gets_a_value_error_naming_it(tmp_path, name):
    from seqlib.tokenizers import CharTokenizer, load_tokenizer

    content, message = BAD_CHAR_TOKENIZERS[name]
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for load in (CharTokenizer.load, load_tokenizer):
        with pytest.raises(ValueError, match=message) as error:
            load(path)
        assert str(path) in str(error.value)


# ---------------------------------------------------------------------------- save_pretrained

def test_save_pretrained_leaves_only_the_models_tokenizer(tmp_path):
    from seqlib.tokenizers import CharTokenizer

    model, directory = _pretrained(tmp_path, vocab_size=300)
    model.save_pretrained(directory, tokenizer=_sentencepiece())
    model.save_pretrained(directory, tokenizer=CharTokenizer("abc"))  # replaces it
    assert not (directory / "tokenizer.model").exists()
    assert from_pretrained(directory).tokenizer.vocab == ["a", "b", "c"]
    model.save_pretrained(directory, tokenizer=_sentencepiece())  # and the other way round
    assert not (directory / "tokenizer.json").exists()
    assert from_pretrained(directory).tokenizer.vocab_size == 282
    model.save_pretrained(directory)  # no tokenizer: none is left behind
    assert not (directory / "tokenizer.model").exists()
    assert from_pretrained(directory).tokenizer is None
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]


def test_a_tokenizer_larger_than_the_model_is_refused_naming_both_sizes(tmp_path):
    from seqlib.tokenizers import CharTokenizer

    model, directory = _pretrained(tmp_path, vocab_size=7)
    with pytest.raises(ValueError, match="save_pretrained: the tokenizer has vocab_size 282, "
                                         "larger than the model's vocab_size 7"):
        model.save_pretrained(directory, tokenizer=_sentencepiece())
    assert not (directory / "tokenizer.model").exists()
    model.save_pretrained(directory, tokenizer=CharTokenizer("abc"))  # smaller is fine (HF)
    assert from_pretrained(directory).tokenizer.vocab_size == 3
    CharTokenizer("abcdefgh").save(directory / "tokenizer.json")  # another tool wrote it
    with pytest.raises(ValueError, match=r"from_pretrained: the tokenizer .*tokenizer.json has "
                                         "vocab_size 8, larger than the model's vocab_size 7"):
        from_pretrained(directory)


def test_two_tokenizers_in_a_directory_are_refused(tmp_path):
    from seqlib.tokenizers import CharTokenizer

    model, directory = _pretrained(tmp_path)
    model.save_pretrained(directory, tokenizer=CharTokenizer("abc"))
    (directory / "tokenizer.model").write_bytes(b"left behind by an older seqlib")
    with pytest.raises(ValueError, match="holds two tokenizers, tokenizer.json and "
                                         "tokenizer.model"):
        from_pretrained(directory)
