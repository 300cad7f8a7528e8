"""Tokenizers: characters, and SentencePiece (BPE or unigram) trained in memory, losslessly."""

from __future__ import annotations

import io
import json
from pathlib import Path


class CharTokenizer:
    """One token per character of the text it was fitted on.

    Args:
        vocab: the characters, in id order (usually from ``CharTokenizer.fit(text)``).
    """

    def __init__(self, vocab=None):
        self.vocab = list(vocab) if vocab is not None else None
        self._ids = {ch: i for i, ch in enumerate(self.vocab)} if self.vocab else None

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        """A tokenizer over the sorted distinct characters of ``text``."""
        if not text:
            raise ValueError("CharTokenizer.fit: the text is empty")
        return cls(sorted(set(text)))

    def _check(self) -> None:
        if self.vocab is None:
            raise RuntimeError("CharTokenizer is not fitted: use CharTokenizer.fit(text) or load()")

    @property
    def vocab_size(self) -> int:
        self._check()
        return len(self.vocab)

    def encode(self, text: str) -> list:
        """Token ids of ``text``; characters outside the vocabulary raise."""
        self._check()
        try:
            return [self._ids[ch] for ch in text]
        except KeyError as error:
            raise ValueError(
                f"CharTokenizer.encode: character {error.args[0]!r} is not in the vocabulary"
            ) from None

    def decode(self, ids) -> str:
        """The text of token ids."""
        self._check()
        try:
            return "".join(self.vocab[int(i)] for i in ids)
        except IndexError:
            raise ValueError(
                f"CharTokenizer.decode: ids must be in [0, {len(self.vocab)})"
            ) from None

    def encode_batch(self, texts) -> list:
        """``encode`` for each text."""
        return [self.encode(t) for t in texts]

    def decode_batch(self, batch) -> list:
        """``decode`` for each id list."""
        return [self.decode(ids) for ids in batch]

    def save(self, path) -> None:
        """Write the vocabulary as JSON."""
        self._check()
        Path(path).write_text(json.dumps({"type": "char", "vocab": self.vocab}))

    @classmethod
    def load(cls, path) -> CharTokenizer:
        """Read a tokenizer written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CharTokenizer.load: no such file: {path}")
        data = json.loads(path.read_text())
        if data.get("type") != "char":
            raise ValueError(f"CharTokenizer.load: {path} is not a character tokenizer")
        return cls(data["vocab"])


class SentencePieceTokenizer:
    """Subword tokenizer (SentencePiece) with lossless settings: identity normalisation, no
    whitespace squeezing, no dummy prefix, byte fallback, so ``decode(encode(s)) == s``.

    Ids: 0 unknown, 1 beginning of sequence, 2 end of sequence, 3 padding.
    """

    def __init__(self, processor=None, model_bytes: bytes | None = None):
        self._processor = processor
        self._model_bytes = model_bytes

    @classmethod
    def train(cls, files=None, iterator=None, vocab_size: int = 8000, model_type: str = "bpe",
              **options) -> SentencePieceTokenizer:
        """Train on text files and/or an iterator of strings, in memory.

        Args:
            files: paths of text files (each line a sentence).
            iterator: strings to train on.
            vocab_size: the number of pieces.
            model_type: "bpe" or "unigram".
            **options: more SentencePiece trainer options.
        """
        import sentencepiece

        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
        sentences = list(iterator or [])
        for name in files or []:
            path = Path(name)
            if not path.is_file():
                raise FileNotFoundError(f"SentencePieceTokenizer.train: no such file: {path}")
            sentences.extend(path.read_text(encoding="utf-8").splitlines())
        sentences = [s for s in sentences if s]
        if not sentences:
            raise ValueError("SentencePieceTokenizer.train: no text to train on")
        model = io.BytesIO()
        settings = dict(
            model_type=model_type, vocab_size=vocab_size, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False, byte_fallback=True,
            character_coverage=1.0, split_digits=True, allow_whitespace_only_pieces=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=3, max_sentence_length=1 << 16,
            minloglevel=2, num_threads=2, hard_vocab_limit=False,
        )
        settings.update(options)
        try:
            sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(sentences),
                                                     model_writer=model, **settings)
        except RuntimeError as error:
            if "Vocabulary size is smaller than required" in str(error):
                raise ValueError(
                    f"SentencePieceTokenizer.train: vocab_size={vocab_size} is too small: it must "
                    "hold the 256 byte pieces, 4 special pieces and every distinct character "
                    f"({error})"
                ) from None
            raise
        return cls.from_bytes(model.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> SentencePieceTokenizer:
        import sentencepiece

        return cls(sentencepiece.SentencePieceProcessor(model_proto=data), data)

    @classmethod
    def load(cls, path) -> SentencePieceTokenizer:
        """Load a ``.model`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePieceTokenizer.load: no such file: {path}")
        return cls.from_bytes(path.read_bytes())

    def save(self, path) -> None:
        """Write the ``.model`` file."""
        self._check()
        Path(path).write_bytes(self._model_bytes)

    def _check(self) -> None:
        if self._processor is None:
            raise RuntimeError(
                "SentencePieceTokenizer is not trained: use SentencePieceTokenizer.train(...) "
                "or load(path)"
            )

    @property
    def vocab_size(self) -> int:
        self._check()
        return self._processor.get_piece_size()

    @property
    def bos_id(self) -> int:
        self._check()
        return self._processor.bos_id()

    @property
    def eos_id(self) -> int:
        self._check()
        return self._processor.eos_id()

    @property
    def pad_id(self) -> int:
        self._check()
        return self._processor.pad_id()

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list:
        """Token ids of ``text`` (optionally framed by bos/eos)."""
        self._check()
        ids = self._processor.encode(text)
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids) -> str:
        """The text of token ids (bos/eos/pad are dropped)."""
        self._check()
        special = {self.bos_id, self.eos_id, self.pad_id}
        return self._processor.decode([int(i) for i in ids if int(i) not in special])

    def encode_batch(self, texts, add_bos: bool = False, add_eos: bool = False) -> list:
        """``encode`` for each text."""
        return [self.encode(t, add_bos, add_eos) for t in texts]

    def decode_batch(self, batch) -> list:
        """``decode`` for each id list."""
        return [self.decode(ids) for ids in batch]


def load_tokenizer(path):
    """A CharTokenizer (``.json``) or SentencePieceTokenizer (``.model``) from ``path``."""
    path = Path(path)
    if path.suffix == ".json":
        return CharTokenizer.load(path)
    if path.suffix == ".model":
        return SentencePieceTokenizer.load(path)
    raise ValueError(f"load_tokenizer: expected a .json or .model file, got {path}")
