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
        self.vocab = _check_vocab(vocab) if vocab is not None else None
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
        """The text of token ids (ints in ``[0, vocab_size)``; anything else raises)."""
        self._check()
        return "".join(self.vocab[i] for i in token_ids(ids, len(self.vocab),
                                                        "CharTokenizer.decode"))

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
        """Read a tokenizer written by ``save``.

        Raises:
            FileNotFoundError, or ValueError naming the file if it is not a character
            tokenizer's JSON (``{"type": "char", "vocab": [distinct characters]}``).
        """
        from seqlib.serialization import read_json

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CharTokenizer.load: no such file: {path}")
        data = read_json(path, "CharTokenizer.load")
        if not (isinstance(data, dict) and data.get("type") == "char" and "vocab" in data):
            raise ValueError(f"CharTokenizer.load: {path} is not a character tokenizer: it is "
                             'not {"type": "char", "vocab": [...]}')
        try:
            return cls(data["vocab"])
        except (ValueError, TypeError) as error:
            raise ValueError(f"CharTokenizer.load: {path} is not a character tokenizer: "
                             f"{error}") from None


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
        """A tokenizer from the bytes of a ``.model`` file.

        Raises:
            TypeError if ``data`` is not bytes, ValueError if it is not a SentencePiece model.
        """
        return cls._parse(data, "SentencePieceTokenizer.from_bytes: the data")

    @classmethod
    def _parse(cls, data, source: str) -> SentencePieceTokenizer:
        import sentencepiece

        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"{source} must be bytes, got {type(data).__name__}")
        if not data:  # SentencePiece itself would give an empty tokenizer
            raise ValueError(f"{source} is empty, not a SentencePiece model")
        try:
            processor = sentencepiece.SentencePieceProcessor(model_proto=bytes(data))
        except (RuntimeError, OSError) as error:
            raise ValueError(f"{source} is not a SentencePiece model ({error})") from None
        if processor.get_piece_size() < 1:
            raise ValueError(f"{source} is a SentencePiece model without pieces")
        return cls(processor, bytes(data))

    @classmethod
    def load(cls, path) -> SentencePieceTokenizer:
        """Load a ``.model`` file.

        Raises:
            FileNotFoundError, or ValueError naming the file if it is empty or not a
            SentencePiece model.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePieceTokenizer.load: no such file: {path}")
        return cls._parse(path.read_bytes(), f"SentencePieceTokenizer.load: {path}")

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
        """The text of token ids (ints in ``[0, vocab_size)``; bos/eos/pad are dropped)."""
        self._check()
        special = {self.bos_id, self.eos_id, self.pad_id}
        ids = token_ids(ids, self.vocab_size, "SentencePieceTokenizer.decode")
        return self._processor.decode([i for i in ids if i not in special])

    def encode_batch(self, texts, add_bos: bool = False, add_eos: bool = False) -> list:
        """``encode`` for each text."""
        return [self.encode(t, add_bos, add_eos) for t in texts]

    def decode_batch(self, batch) -> list:
        """``decode`` for each id list."""
        return [self.decode(ids) for ids in batch]


def token_ids(ids, vocab_size: int, caller: str) -> list:
    """``ids`` (a list, NumPy array or Tensor of ints) as a list of ints in
    ``[0, vocab_size)``; raises TypeError or ValueError naming the first id that is not."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, (int, str)):
        raise TypeError(f"{caller}: ids must be a sequence of token ids, got {ids!r}")
    checked = []
    for position, value in enumerate(ids):
        if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
            value = value.item()  # a NumPy scalar or a 0-d tensor
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{caller}: token ids must be ints, got {value!r} "
                            f"({type(value).__name__}) at position {position}")
        if not 0 <= value < vocab_size:
            raise ValueError(f"{caller}: token id {value} at position {position} is not in "
                             f"the vocabulary [0, {vocab_size})")
        checked.append(value)
    return checked


def _check_vocab(vocab) -> list:
    """``vocab`` (characters, or a string of them) as a list of distinct single characters,
    or a clear error."""
    if not hasattr(vocab, "__iter__") or isinstance(vocab, dict):
        raise TypeError(f"CharTokenizer: vocab must be a list of characters, got "
                        f"{type(vocab).__name__}")
    vocab = list(vocab)
    bad = next((v for v in vocab if not (isinstance(v, str) and len(v) == 1)), None)
    if bad is not None:
        raise TypeError(f"CharTokenizer: vocab must hold single characters, got {bad!r}")
    if not vocab:
        raise ValueError("CharTokenizer: vocab is empty")
    if len(set(vocab)) != len(vocab):
        twice = next(v for i, v in enumerate(vocab) if v in vocab[:i])
        raise ValueError(f"CharTokenizer: vocab holds {twice!r} twice")
    return vocab


def load_tokenizer(path):
    """A CharTokenizer (``.json``) or SentencePieceTokenizer (``.model``) from ``path``."""
    path = Path(path)
    if path.suffix == ".json":
        return CharTokenizer.load(path)
    if path.suffix == ".model":
        return SentencePieceTokenizer.load(path)
    raise ValueError(f"load_tokenizer: expected a .json or .model file, got {path}")
