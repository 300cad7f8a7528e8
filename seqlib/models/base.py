"""save_pretrained / from_pretrained: config JSON + safetensors weights + tokenizer."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path

from seqlib.core.tensor import Tensor
from seqlib.nn.module import Module

CONFIG, WEIGHTS = "config.json", "model.safetensors"
TOKENIZERS = ("tokenizer.json", "tokenizer.model")


MODEL_TYPES = {}  # model_type -> the PretrainedModel subclass that declares it


class PretrainedModel(Module):
    """A model with a dataclass ``config`` that can be saved to and loaded from a directory."""

    model_type = ""
    config_class = None
    tokenizer = None  # set by from_pretrained when the directory holds one

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if vars(cls).get("model_type"):  # its own, not one inherited from a registered model
            MODEL_TYPES[cls.model_type] = cls  # from_pretrained finds it by config.json's

    def save_pretrained(self, directory, tokenizer=None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer (if any) to
        ``directory`` (created if needed).

        ``model.safetensors`` is a plain state_dict file: its keys are the parameter names,
        a tied weight stored once under its first name (the others in the ``aliases``
        metadata), so ``safetensors.torch.load_model`` loads it into a PyTorch twin.

        The directory ends up holding this model's tokenizer and no other: a tokenizer file
        already there (``tokenizer.json``, ``tokenizer.model``) that is not the one written now
        is removed, also when no tokenizer is saved, so that ``from_pretrained`` never pairs the
        model with a stale tokenizer whose ids the model cannot embed.

        Args:
            directory: where to write.
            tokenizer: the tokenizer to save with the model (default ``self.tokenizer``); its
                ``vocab_size`` must not exceed the model's.
        Returns:
            ``directory`` as a ``Path``.
        """
        from seqlib.atomic_write import atomic_write
        from seqlib.serialization import save

        tokenizer = tokenizer or self.tokenizer
        name = None
        if tokenizer is not None:
            _check_tokenizer_fits(tokenizer.vocab_size, self.config.vocab_size, "save_pretrained",
                                  "the tokenizer")
            name = TOKENIZERS[0] if type(tokenizer).__name__ == "CharTokenizer" else TOKENIZERS[1]
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in TOKENIZERS:  # first, so that no crash leaves new weights with one
            if stale != name:
                (directory / stale).unlink(missing_ok=True)
        config = {"model_type": self.model_type, **dataclasses.asdict(self.config)}
        with atomic_write(directory / CONFIG) as temporary:
            temporary.write_text(json.dumps(config, indent=2) + "\n")
        save(self.state_dict(), directory / WEIGHTS)
        if tokenizer is not None:
            with atomic_write(directory / name) as temporary:  # as the weights: whole or old
                tokenizer.save(temporary)
        return directory

    @classmethod
    def from_pretrained(cls, directory, map_location=None):
        """Load a model (and its tokenizer, as ``model.tokenizer``) from ``directory``."""
        return from_pretrained(directory, map_location, expected=cls)

    # ------------------------------------------------------------------ generation
    # (kept apart from save/load: Hugging Face's GenerationMixin.generate, on seqlib's loop)

    def generate(self, input_ids, max_new_tokens: int = 20, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 eos_token_id=None, pad_token_id: int | None = None, streamer=None,
                 generator=None):
        """Continue ``input_ids`` token by token on the recurrent twin, with Hugging Face's
        arguments and defaults: greedy unless ``do_sample=True``.

        Unlike Hugging Face there is no generation config: ``top_k`` and ``top_p`` filter only
        when given (Hugging Face's config defaults to ``top_k=50``), no eos id applies unless
        given, and ``max_new_tokens`` defaults to 20 new tokens (Hugging Face: ``max_length=20``
        counting the prompt); ``(L,)`` prompts and ``max_new_tokens=0`` are accepted too.
        Sampling draws from ``generator`` (default: the global one, seeded by
        ``sl.manual_seed``), so a seed makes it reproducible.

        Args:
            input_ids: ``(N, L)`` or ``(L,)`` prompt token ids, as a list (of equal-length
                lists), a NumPy array or a Tensor; prompts of a batch must have one length.
            max_new_tokens: the most tokens to add per prompt (>= 0).
            do_sample: sample the next token; False picks the most likely one (greedy), and
                then ``temperature``, ``top_k`` and ``top_p`` have no effect (a warning says
                so).
            temperature: divides the logits before sampling; must be > 0.
            top_k: sample among the ``top_k`` most likely tokens only (>= 1).
            top_p: sample among the smallest set of tokens whose probability reaches ``top_p``
                (in (0, 1]).
            eos_token_id: an id or a list of ids that end a sequence (kept in the output).
            pad_token_id: fills a finished sequence while others go on (default: the first
                eos id, Hugging Face's fallback).
            streamer: receives ``put(prompt (N, L))``, ``put(new ids (N,))`` each step and
                ``end()``, such as ``seqlib.streamers.TextStreamer``.
            generator: a ``Generator`` to draw from.
        Returns:
            ``(N, L + T)`` int64 ids (``(L + T,)`` for a 1-D prompt), the prompt followed by the
            ``T <= max_new_tokens`` new tokens (fewer when every sequence met an eos id), on
            ``input_ids``' device (the CPU for lists and NumPy arrays).
        """
        from seqlib.generation import generate_ids

        return generate_ids(self, input_ids, max_new_tokens, do_sample, temperature, top_k,
                            top_p, eos_token_id, pad_token_id, streamer, generator)


def from_pretrained(directory, map_location=None, expected=None):
    """The model saved in ``directory`` by ``save_pretrained``, whatever its type.

    Raises:
        FileNotFoundError: ``directory`` has no ``config.json``.
        ValueError, naming the file: ``config.json`` is not a JSON object of the model's
            config fields with values of their types, ``model.safetensors`` is corrupt or does
            not fit the model, or the tokenizer is corrupt, ambiguous (two of them), or can
            produce ids the model cannot embed.
        TypeError: the model is not an ``expected``.
    """
    from seqlib.serialization import load
    from seqlib.tokenizers import load_tokenizer

    directory = Path(directory)
    if not (directory / CONFIG).is_file():
        raise FileNotFoundError(f"from_pretrained: {directory} has no {CONFIG}")
    cls, config = _read_config(directory / CONFIG)
    if expected is not None and not issubclass(cls, expected):
        raise TypeError(f"from_pretrained: {directory} holds a {cls.__name__}, not a "
                        f"{expected.__name__}")
    try:
        model = cls(config)
    except (ValueError, TypeError, AttributeError, RuntimeError) as error:
        raise ValueError(f"from_pretrained: {directory / CONFIG} does not describe a valid "
                         f"{cls.__name__}: {error}") from error
    state = load(directory / WEIGHTS, map_location)
    if not (isinstance(state, dict) and all(isinstance(t, Tensor) for t in state.values())):
        raise ValueError(f"from_pretrained: {directory / WEIGHTS} holds a "
                         f"{type(state).__name__}, not a state_dict of named tensors")
    state = _with_tied_entries(model, state)
    floating = [t.dtype for t in state.values() if t.is_floating_point()]
    if floating:  # keep the saved precision (the model was built in the default dtype)
        model.to(floating[0])
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as error:
        raise ValueError(f"from_pretrained: {directory / WEIGHTS} does not fit the "
                         f"{cls.__name__} of {directory / CONFIG}: {error}") from error
    found = [name for name in TOKENIZERS if (directory / name).is_file()]
    if len(found) > 1:
        raise ValueError(f"from_pretrained: {directory} holds two tokenizers, {found[0]} and "
                         f"{found[1]} (an older save_pretrained left one behind); remove the "
                         "one that is not the model's")
    if found:
        tokenizer = load_tokenizer(directory / found[0])
        _check_tokenizer_fits(tokenizer.vocab_size, config.vocab_size, "from_pretrained",
                              f"the tokenizer {directory / found[0]}")
        model.tokenizer = tokenizer
    return model.eval()


def _check_tokenizer_fits(tokenizer_size: int, model_size: int, caller: str, what: str) -> None:
    """Refuse a tokenizer that can produce ids the model has no embedding for (a smaller one
    is fine, as in Hugging Face: embeddings are often padded to a round size)."""
    if tokenizer_size > model_size:
        raise ValueError(f"{caller}: {what} has vocab_size {tokenizer_size}, larger than the "
                         f"model's vocab_size {model_size}: its ids {model_size} and up have "
                         "no embedding")


def _read_config(path: Path) -> tuple:
    """``(model class, config)`` from a ``config.json``, every key and value checked."""
    from seqlib.serialization import read_json

    config = read_json(path, "from_pretrained")
    if not isinstance(config, dict):
        raise ValueError(f"from_pretrained: {path} must hold a JSON object of the model's "
                         f"config, got a JSON {type(config).__name__}")
    model_type = config.pop("model_type", None)
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        raise ValueError(f"from_pretrained: unknown model_type {model_type!r} in "
                         f"{path}; known: {sorted(MODEL_TYPES)}")
    cls = MODEL_TYPES[model_type]
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ValueError(f"from_pretrained: {path} has unknown key(s) {unknown} for a "
                         f"{cls.__name__}; known: {sorted(fields)}")
    missing = [name for name, f in fields.items() if name not in config
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"from_pretrained: {path} lacks the key(s) {missing}")
    hints = typing.get_type_hints(cls.config_class)
    for name, value in config.items():
        expected = _describe_if_wrong(value, hints[name])
        if expected:
            raise ValueError(f"from_pretrained: {path}: {name!r} must be {expected}, got "
                             f"{value!r}")
    return cls, cls.config_class(**config)


def _describe_if_wrong(value, hint) -> str | None:
    """None if ``value`` (from JSON) fits the type ``hint`` of a config field, else what it
    should be. Every int of a config is a size, so it must be >= 1."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    wanted = []
    for option in options:
        if option is type(None):
            wanted.append("null")
        elif option is int:
            wanted.append("an integer >= 1")
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return None
        elif option is float:
            wanted.append("a finite number")
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                return None
        else:
            origin = typing.get_origin(option) or option
            wanted.append(_JSON_NAMES.get(origin, f"a {origin.__name__}"))
            if isinstance(value, origin):
                return None
    return " or ".join(wanted)


_JSON_NAMES = {bool: "true or false", str: "a string", dict: "a JSON object",
               list: "a JSON array"}


def _with_tied_entries(model: Module, state: dict) -> dict:
    """``state`` plus the entries of tied weights it stores under another of their names.

    seqlib's own files restore every name (the aliases are in their metadata), but files from
    other tools store a tied weight once and leave the rest out (Hugging Face's
    ``save_pretrained``, ``safetensors.torch.save_model``); the model ties them itself.
    """
    names = {}  # id(tensor) -> every name the model gives that tensor
    for name, tensor in model.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
    state = dict(state)
    for tied in names.values():
        stored = next((name for name in tied if name in state), None)
        for name in tied if stored is not None else ():
            state.setdefault(name, state[stored])
    return state
