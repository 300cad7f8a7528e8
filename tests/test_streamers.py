"""Streaming text: the pieces join to exactly ``tokenizer.decode`` of all ids, and a character
spelled as several SentencePiece byte-fallback tokens never streams as U+FFFD."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import seqlib as sl
from seqlib.models import TransformerLM, TransformerLMConfig
from seqlib.streamers import IncrementalDecoder, TextIteratorStreamer, TextStreamer
from seqlib.tokenizers import CharTokenizer, SentencePieceTokenizer

SAMPLE = Path(__file__).parent / "data" / "hamlet_sample.txt"
MULTIBYTE = ["Où est le café?", "日本語のテキスト", "emoji 😀🎉 end", "naïve — Ünïcödé\n😀x\n",
             "\U0001f600"]


@pytest.fixture(scope="module")
def spm():
    """SentencePiece trained on English only: accented letters, CJK and emoji fall back to
    bytes."""
    return SentencePieceTokenizer.train(files=[SAMPLE], vocab_size=400)


class Collector(TextStreamer):
    """A TextStreamer that keeps its pieces instead of printing them."""

    def __init__(self, tokenizer, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.pieces = []
        self.ended = 0

    def on_finalized_text(self, text, stream_end=False):
        self.pieces.append(text)
        self.ended += stream_end


class SpacedWords:
    """Words joined by single spaces: a token's text depends on the token before it."""

    words = ["the", "cat", "sat", "", "mat"]

    def decode(self, ids):
        return " ".join(self.words[i] for i in ids)


def stream(tokenizer, ids, chunks=None, **kwargs) -> list:
    """Pieces a Collector emits for ``ids`` put in ``chunks`` (default: one id at a time)."""
    collector = Collector(tokenizer, **kwargs)
    collector.put(numpy.array([ids[:1]]))  # the prompt, (1, L), as generate puts it
    rest, chunks = ids[1:], list(chunks or [])
    while rest:
        size = chunks.pop(0) if chunks else 1
        collector.put(sl.tensor(rest[:size], dtype=sl.int64))
        rest = rest[size:]
    collector.end()
    assert collector.ended == 1
    return collector.pieces


def test_the_test_texts_are_spelled_with_byte_fallback_tokens(spm):
    for text in MULTIBYTE:
        ids = spm.encode(text)
        assert any(spm._processor.id_to_piece(i).startswith("<0x") for i in ids)
        assert "\ufffd" in "".join(spm.decode([i]) for i in ids)  # what per-token decoding gave


@pytest.mark.parametrize("text", MULTIBYTE)
def test_multibyte_characters_stream_without_replacement_characters(spm, text):
    pieces = stream(spm, spm.encode(text))
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert len([p for p in pieces if p]) >= min(len(text), 4)  # it streams as it goes


@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
       chunks=st.lists(st.integers(1, 4), max_size=40))
def test_streamed_text_joins_to_the_decoded_text(spm, text, chunks):
    ids = spm.encode(text) or [spm.eos_id]
    pieces = stream(spm, ids, chunks)
    assert "".join(pieces) == spm.decode(ids)
    if "\ufffd" not in text:
        assert not any("\ufffd" in piece for piece in pieces)
    chars = CharTokenizer.fit(text + "a")
    assert "".join(stream(chars, chars.encode(text + "a"), chunks)) == text + "a"


@given(ids=st.lists(st.integers(0, 399), min_size=1, max_size=60),
       chunks=st.lists(st.integers(1, 5), max_size=60))
def test_any_token_sequence_streams_to_exactly_its_decoded_text(spm, ids, chunks):
    """Stray and truncated bytes decode to U+FFFD in the whole text, and in the stream too."""
    assert "".join(stream(spm, ids, chunks)) == spm.decode(ids)


@given(ids=st.lists(st.integers(0, 4), min_size=1, max_size=30),
       chunks=st.lists(st.integers(1, 3), max_size=30))
def test_context_dependent_decoding_streams_exactly(ids, chunks):
    assert "".join(stream(SpacedWords(), ids, chunks)) == SpacedWords().decode(ids)


def test_incremental_decoder_holds_back_incomplete_characters(spm):
    decoder = IncrementalDecoder(spm)
    ids = spm.encode("é!")  # <0xC3> <0xA9> !
    assert [decoder.push([i]) for i in ids] == ["", "é", "!"]
    assert decoder.push(ids[:1]) == "" and decoder.flush() == "\ufffd"  # a byte that never ends
    assert decoder.flush() == ""


def test_text_streamer_prints_the_prompt_and_the_new_text(spm, capsys):
    prompt, new = spm.encode("Où est "), spm.encode("le café?")
    streamer = TextStreamer(spm)
    streamer.put(sl.tensor([prompt]))
    for token in new:
        streamer.put(sl.tensor([token]))
    streamer.end()
    assert capsys.readouterr().out == "Où est le café?\n"
    skipping = TextStreamer(spm, skip_prompt=True)
    for _ in range(2):  # end() makes the next put a prompt again
        skipping.put(numpy.array([prompt]))
        skipping.put(numpy.array(new))
        skipping.end()
    assert capsys.readouterr().out == "le café?\n" * 2
    with pytest.raises(ValueError, match=r"only supports batch size 1, got token ids of shape "
                                         r"\(2, 3\)"):
        streamer.put(numpy.zeros((2, 3), numpy.int64))
    with pytest.raises(TypeError, match="integer token ids, got dtype float64"):
        streamer.put(numpy.zeros(3))


def spm_model(spm):
    """A random TransformerLM over the SentencePiece vocabulary: it emits stray bytes often."""
    sl.manual_seed(0)
    config = TransformerLMConfig(vocab_size=spm.vocab_size, d_model=16, n_layers=1, n_heads=2,
                                 dropout=0.0)
    return TransformerLM(config).eval()


def test_model_generate_streams_the_text_of_its_output(spm):
    model = spm_model(spm)
    prompt = spm.encode("Où est")
    collector = Collector(spm)
    out = model.generate(prompt, max_new_tokens=40, do_sample=True, temperature=5.0,
                         generator=sl.Generator().manual_seed(1), streamer=collector)
    assert any(spm._processor.id_to_piece(i).startswith("<0x") for i in out.tolist()[2:])
    assert "".join(collector.pieces) == spm.decode(out.tolist())
    iterator = TextIteratorStreamer(spm, skip_prompt=True, timeout=60)
    worker = threading.Thread(target=model.generate, args=(prompt,), kwargs=dict(
        max_new_tokens=40, do_sample=True, temperature=5.0,
        generator=sl.Generator().manual_seed(1), streamer=iterator))
    worker.start()
    pieces = list(iterator)
    worker.join()
    assert "".join(pieces) == spm.decode(out.tolist()[len(prompt):]) and all(pieces)


def test_sl_generate_streams_text_pieces_that_join_to_its_text(spm):
    model = spm_model(spm)
    kwargs = dict(temperature=5.0, seed=2, tokenizer=spm)
    text = sl.generate(model, "Où est", 40, **kwargs)
    pieces = list(sl.generate(model, "Où est", 40, stream=True, **kwargs))
    assert "".join(pieces) == text and len(pieces) > 5
