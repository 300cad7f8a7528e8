"""save_pretrained / from_pretrained: config JSON + safetensors weights + tokenizer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

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

        Args:
            directory: where to write.
            tokenizer: the tokenizer to save with the model (default ``self.tokenizer``).
        Returns:
            ``directory`` as a ``Path``.
        """
        from seqlib.atomic_write import atomic_write
        from seqlib.serialization import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model_type": self.model_type, **dataclasses.asdict(self.config)}
        with atomic_write(directory / CONFIG) as temporary:
            temporary.write_text(json.dumps(config, indent=2) + "\n")
        save(self.state_dict(), directory / WEIGHTS)
        tokenizer = tokenizer or self.tokenizer
        if tokenizer is not None:
            name = TOKENIZERS[0] if type(tokenizer).__name__ == "CharTokenizer" else TOKENIZERS[1]
            tokenizer.save(directory / name)
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
    """The model saved in ``directory`` by ``save_pretrained``, whatever its type."""
    from seqlib.serialization import load
    from seqlib.tokenizers import load_tokenizer

    directory = Path(directory)
    if not (directory / CONFIG).is_file():
        raise FileNotFoundError(f"from_pretrained: {directory} has no {CONFIG}")
    config = json.loads((directory / CONFIG).read_text())
    model_type = config.pop("model_type", None)
    if model_type not in MODEL_TYPES:
        raise ValueError(f"from_pretrained: unknown model_type {model_type!r} in "
                         f"{directory / CONFIG}; known: {sorted(MODEL_TYPES)}")
    cls = MODEL_TYPES[model_type]
    if expected is not None and not issubclass(cls, expected):
        raise TypeError(f"from_pretrained: {directory} holds a {cls.__name__}, not a "
                        f"{expected.__name__}")
    model = cls(cls.config_class(**config))
    state = _with_tied_entries(model, load(directory / WEIGHTS, map_location))
    floating = [t.dtype for t in state.values() if t.is_floating_point()]
    if floating:  # keep the saved precision (the model was built in the default dtype)
        model.to(floating[0])
    model.load_state_dict(state)
    for name in TOKENIZERS:
        if (directory / name).is_file():
            model.tokenizer = load_tokenizer(directory / name)
    return model.eval()


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
