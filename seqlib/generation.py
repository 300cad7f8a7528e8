"""Generating tokens from a language model, one step at a time on its recurrent twin.

One decoding loop (``_steps``) serves two entry points:

* ``model.generate(input_ids, ...)`` (``generate_ids(model, input_ids, ...)`` as a function),
  with Hugging Face's names and semantics: greedy unless ``do_sample=True``, returns the prompt
  followed by the new tokens, reports every step to a ``streamer``;
* ``sl.generate(model, prompt, ...)``, seqlib's first, functional form: text or id prompts,
  batches of prompts of different lengths, returns only the new tokens (or their text),
  ``temperature=0`` is greedy, ``stream=True`` yields the new tokens or text pieces.
"""

from __future__ import annotations

import numbers
import warnings

import numpy

from seqlib.core.autograd.grad_mode import no_grad
from seqlib.core.creation import tensor
from seqlib.core.random import Generator, rng
from seqlib.core.tensor import Tensor
from seqlib.streamers import IncrementalDecoder

# ---------------------------------------------------------------------------- choosing tokens


def filter_logits(logits: numpy.ndarray, top_k: int | None = None,
                  top_p: float | None = None) -> numpy.ndarray:
    """Set to -inf every logit outside the ``top_k`` largest and outside the smallest set of
    tokens whose probabilities add up to at least ``top_p`` (nucleus sampling).

    Args:
        logits: ``(N, V)``.
        top_k: keep this many tokens per row (None: all).
        top_p: keep the nucleus of this probability mass (None: all); the most likely token
            always stays.
    Returns:
        the filtered ``(N, V)`` logits (a new array).
    """
    logits = numpy.array(logits, dtype=numpy.float64)
    if top_k is not None:
        if not (_is_int(top_k) and top_k >= 1):
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        k = min(top_k, logits.shape[-1])
        kth = numpy.sort(logits, axis=-1)[:, -k][:, None]
        logits[logits < kth] = -numpy.inf
    if top_p is not None:
        if not (isinstance(top_p, numbers.Real) and 0 < top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        order = numpy.argsort(-logits, axis=-1)
        ranked = numpy.take_along_axis(logits, order, axis=-1)
        probs = numpy.exp(ranked - ranked[:, :1])
        probs /= probs.sum(-1, keepdims=True)
        before = numpy.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above
        drop = before >= top_p
        numpy.put_along_axis(logits, order, numpy.where(drop, -numpy.inf, ranked), axis=-1)
    return logits


def _draw(logits: numpy.ndarray, temperature: float, top_k, top_p,
          draw_from: numpy.random.Generator) -> numpy.ndarray:
    """One token id per row, drawn from ``softmax(filter(logits / temperature))``: the order
    of Hugging Face's warpers (temperature, then top-k, then top-p)."""
    filtered = filter_logits(logits / temperature, top_k, top_p)
    with numpy.errstate(invalid="ignore"):  # NaN probabilities are refused just below
        probs = numpy.exp(filtered - filtered.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
    if numpy.isnan(probs).any():  # as torch.multinomial: never a silent token 0
        raise RuntimeError("generate: cannot sample: the probabilities are NaN (logits that "
                           "hold NaN or +inf, or are -inf everywhere)")
    draws = draw_from.random((probs.shape[0], 1))
    return (numpy.cumsum(probs, -1) < draws).sum(-1).clip(0, probs.shape[-1] - 1)


def sample(logits: numpy.ndarray, temperature: float, top_k, top_p,
           draw_from: numpy.random.Generator) -> numpy.ndarray:
    """Draw one token id per row of ``(N, V)`` logits (greedy when temperature is 0).

    Args:
        logits: ``(N, V)``.
        temperature: >= 0; 0 picks the most likely token.
        top_k, top_p: see ``filter_logits``.
        draw_from: a ``numpy.random.Generator``.
    Returns:
        ``(N,)`` token ids.
    """
    if not (isinstance(temperature, numbers.Real) and temperature >= 0):  # NaN fails too
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if numpy.isnan(logits).any():
        raise ValueError("sample: the logits hold NaN")
    if temperature == 0:
        return logits.argmax(-1)
    return _draw(logits, temperature, top_k, top_p, draw_from)


def _chooser(do_sample: bool, temperature, top_k, top_p, draw_from):
    """``logits (N, V) -> ids (N,)``: argmax, or a draw from the filtered distribution."""
    if not do_sample:
        return lambda logits: logits.argmax(-1)
    return lambda logits: _draw(logits, temperature, top_k, top_p, draw_from)


# ---------------------------------------------------------------------------- checking arguments


def _is_int(value) -> bool:
    return isinstance(value, (int, numpy.integer)) and not isinstance(value, bool)


def _check_sampling(do_sample: bool, temperature, top_k, top_p) -> None:
    """Raise a ValueError naming the first sampling argument out of its range."""
    if top_k is not None and not (_is_int(top_k) and top_k >= 1):
        raise ValueError(f"generate: top_k must be an int >= 1 (None: no top-k filtering), "
                         f"got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, numbers.Real) and 0 < top_p <= 1):
        raise ValueError(f"generate: top_p must be in (0, 1] (None: no nucleus filtering), "
                         f"got {top_p!r}")
    if do_sample and not (isinstance(temperature, numbers.Real) and temperature > 0):
        raise ValueError(f"generate: temperature must be > 0 when sampling, got {temperature!r} "
                         "(greedy decoding is do_sample=False)")


def _warn_unused(temperature, top_k, top_p) -> None:
    """Hugging Face warns, too, when sampling arguments are given to greedy decoding."""
    unused = [f"{name}={value!r}" for name, value, default in
              (("temperature", temperature, 1.0), ("top_k", top_k, None), ("top_p", top_p, None))
              if value != default]
    if unused:
        warnings.warn(f"generate: do_sample=False decodes greedily, so {', '.join(unused)} "
                      "has no effect; pass do_sample=True to sample", UserWarning, stacklevel=4)


def _vocab_size(model) -> int | None:
    """The model's vocabulary size where its config (or its parallel model's) says it."""
    config = getattr(model, "config", None) or getattr(getattr(model, "model", None),
                                                       "config", None)
    return getattr(config, "vocab_size", None)


def _token_list(name: str, ids, vocab_size: int | None) -> list:
    """``ids`` (None, an int or a list of ints) as a list of ints inside the vocabulary."""
    if ids is None:
        return []
    values = [ids] if _is_int(ids) else list(ids) if isinstance(ids, (list, tuple)) else [ids]
    for value in values:
        if not _is_int(value):
            raise TypeError(f"generate: {name} must be an int or a list of ints, got {ids!r}")
        if vocab_size is not None and not 0 <= value < vocab_size:
            raise ValueError(f"generate: {name} {value} is not in the vocabulary "
                             f"[0, {vocab_size})")
    return [int(value) for value in values]


def _check_prompt_ids(ids: numpy.ndarray, vocab_size: int | None) -> None:
    if vocab_size is not None and ids.size and not 0 <= ids.min() <= ids.max() < vocab_size:
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"generate: prompt token id {bad} is not in the vocabulary "
                         f"[0, {vocab_size})")


def _check_max_new_tokens(max_new_tokens) -> None:
    if not (_is_int(max_new_tokens) and max_new_tokens >= 0):
        raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")


# ---------------------------------------------------------------------------- the decoding loop


def _device(model):
    """Where the model's parameters live (None: no parameters, the default device)."""
    for parameter in model.parameters():
        return parameter.device
    return None


def _steps(model, prompts: list, max_new_tokens: int, choose, eos_ids: list, sampling: bool):
    """Yield, per step, one new token or None per row (None: the row is still reading its
    prompt, or it has finished).

    The prompt prefix that all rows share in length is read in one parallel pass
    (``model.prefill``) where the model has one; the rest of each prompt and every new token go
    through the recurrent twin (``model.recurrent()``) one step at a time: per-token time and
    memory stay constant for linear attention. A row finishes after ``max_new_tokens`` tokens or
    after one of ``eos_ids``; the loop ends when every row has finished. Logits a token cannot
    be chosen from (see ``_check_logits``) raise a RuntimeError naming the step.
    """
    recurrent = model.recurrent() if hasattr(model, "recurrent") else model
    modes = [(module, module.training) for module in (model, recurrent)]
    for module, _ in modes:  # no dropout, in the parallel prefill either
        module.eval()
    device = _device(recurrent)
    lengths = [len(p) for p in prompts]
    produced = [0] * len(prompts)
    done = [max_new_tokens <= 0] * len(prompts)
    state, start = None, 0
    shared = min(lengths) - 1  # positions every prompt has before its last token
    try:
        with no_grad():
            if shared > 0 and hasattr(model, "prefill"):  # one parallel pass for the prefix
                state = model.prefill(tensor([p[:shared] for p in prompts], device=device))
                start = shared
            current = [p[start] for p in prompts]
            for t in range(start, max(lengths) + max_new_tokens - 1):
                if all(done):
                    return
                logits, state = recurrent(tensor(current, device=device), state)
                logits = logits.detach().numpy(force=True)
                choosing = [row for row, length in enumerate(lengths)
                            if t + 1 >= length and not done[row]]
                _check_logits(logits, choosing, produced, t + 1, sampling)
                if len(choosing) < len(lengths):  # the other rows' logits are not used, and
                    idle = numpy.ones(len(lengths), dtype=bool)  # NaN in them must not stop
                    idle[choosing] = False  # a draw
                    logits = numpy.where(idle[:, None], 0.0, logits).astype(logits.dtype)
                chosen = choose(logits)
                new = [None] * len(prompts)
                for row, length in enumerate(lengths):
                    if t + 1 < length:
                        current[row] = prompts[row][t + 1]  # still reading the prompt
                        continue
                    if not done[row]:
                        new[row] = int(chosen[row])
                        produced[row] += 1
                        done[row] = produced[row] >= max_new_tokens or new[row] in eos_ids
                    current[row] = int(chosen[row])
                if t + 1 >= min(lengths):  # not while every row is still reading its prompt
                    yield new
    finally:
        for module, training in reversed(modes):
            module.train(training)


def _check_logits(logits: numpy.ndarray, rows: list, produced: list, position: int,
                  sampling: bool) -> None:
    """Raise a RuntimeError naming the step if a row of ``rows`` has logits no token can be
    chosen from: NaN (numpy's argmax and a cumulative draw would both give token 0, for ever),
    -inf everywhere, or, when sampling, +inf (its probabilities are NaN; torch.multinomial
    refuses those too)."""
    chosen = logits[rows]
    bad = numpy.isnan(chosen).any(-1) | numpy.isneginf(chosen).all(-1)
    if sampling:
        bad |= numpy.isposinf(chosen).any(-1)
    if bad.any():
        row = rows[int(bad.argmax())]
        values = chosen[int(bad.argmax())]
        what = ("NaN" if numpy.isnan(values).any() else "-inf for every token"
                if numpy.isneginf(values).all() else "+inf, so sampling probabilities are NaN")
        raise RuntimeError(f"generate: step {produced[row] + 1} of sequence {row} (position "
                           f"{position}): the model's logits are {what}; its weights or state "
                           "hold NaN or inf (did training diverge?)")


# ---------------------------------------------------------------------------- model.generate


def _id_matrix(input_ids) -> tuple:
    """``(ids (N, L) int64 array, given_as_1d, device)`` from a list, NumPy array or Tensor."""
    device = None
    if isinstance(input_ids, Tensor):
        device = input_ids.device
        array = input_ids.detach().numpy(force=True)
    elif isinstance(input_ids, str) or (isinstance(input_ids, (list, tuple)) and input_ids
                                        and isinstance(input_ids[0], str)):
        raise TypeError("generate: input_ids must be token ids, got text: encode it first "
                        "(tokenizer.encode(text)), or call sl.generate(model, text, ...)")
    else:
        if isinstance(input_ids, (list, tuple)) and input_ids and all(
                isinstance(row, (list, tuple, numpy.ndarray, Tensor)) for row in input_ids):
            lengths = [len(row) for row in input_ids]
            if len(set(lengths)) > 1:
                raise ValueError(
                    f"generate: the prompts of a batch must have one length, got lengths "
                    f"{lengths}; seqlib does not left-pad: generate them one by one, or call "
                    "sl.generate(model, prompts, ...), which runs prompts of different lengths")
        array = numpy.asarray(input_ids)
    if array.size == 0:
        array = array.astype(numpy.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"generate: input_ids must be integer token ids, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"generate: input_ids must have shape (L,) or (N, L), got "
                         f"{array.shape}")
    if array.shape[-1] == 0:
        raise ValueError(f"generate: every prompt needs at least one token, got input_ids of "
                         f"shape {array.shape}")
    return array.astype(numpy.int64).reshape(-1, array.shape[-1]), array.ndim == 1, device


def generate_ids(model, input_ids, max_new_tokens: int = 20, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 eos_token_id=None, pad_token_id: int | None = None, streamer=None,
                 generator: Generator | None = None) -> Tensor:
    """``model.generate`` as a function: same arguments, same result (see
    ``PretrainedModel.generate``).

    Args:
        model: a language model with ``recurrent()`` (TransformerLM, LSTMLM) or a recurrent
            model ``(tokens (N,), state) -> (logits, state)``.
        input_ids: ``(N, L)`` or ``(L,)`` token ids: a list, a NumPy array or a Tensor.
        max_new_tokens, do_sample, temperature, top_k, top_p, eos_token_id, pad_token_id,
        streamer, generator: see ``PretrainedModel.generate``.
    Returns:
        ``(N, L + T)`` (or ``(L + T,)``) int64 ids: the prompt, then ``T <= max_new_tokens``
        new tokens.
    Raises:
        TypeError or ValueError naming the argument that is out of its range (non-integer
        prompt ids, ids outside the vocabulary, ...); RuntimeError naming the step if the
        model's logits become NaN (or, when sampling, +inf).
    """
    ids, given_as_1d, device = _id_matrix(input_ids)
    vocab_size = _vocab_size(model)
    _check_prompt_ids(ids, vocab_size)
    _check_max_new_tokens(max_new_tokens)
    _check_sampling(do_sample, temperature, top_k, top_p)
    if not do_sample:
        _warn_unused(temperature, top_k, top_p)
    eos_ids = _token_list("eos_token_id", eos_token_id, vocab_size)
    if pad_token_id is not None and not _is_int(pad_token_id):
        raise TypeError(f"generate: pad_token_id must be an int, got {pad_token_id!r}")
    # Finished rows need a filler; Hugging Face falls back to the first eos id (with a warning).
    pad = _token_list("pad_token_id", pad_token_id, vocab_size) or eos_ids[:1]
    choose = _chooser(do_sample, temperature, top_k, top_p, rng(generator))
    if streamer is not None:
        streamer.put(tensor(ids))
    columns = [ids]
    if len(ids):  # an empty batch has nothing to continue
        for new in _steps(model, ids.tolist(), max_new_tokens, choose, eos_ids, do_sample):
            step = numpy.array([pad[0] if token is None else token for token in new],
                               dtype=numpy.int64)
            columns.append(step[:, None])
            if streamer is not None:
                streamer.put(tensor(step))
    if streamer is not None:
        streamer.end()
    result = numpy.concatenate(columns, axis=1)
    return tensor(result[0] if given_as_1d else result, device=device)


# ---------------------------------------------------------------------------- sl.generate


def _prompts(prompt, tokenizer):
    """``(list of id lists, batched, as_text)`` from text, ids, or a batch of either."""
    prompt = _as_list(prompt)
    if isinstance(prompt, str):
        prompt, as_text, batched = [prompt], True, False
    elif prompt and isinstance(prompt[0], str):
        as_text, batched = True, True
    elif prompt and isinstance(prompt[0], (list, tuple, numpy.ndarray, Tensor)):
        as_text, batched = False, True
    else:
        prompt, as_text, batched = [list(prompt)], False, False
    if as_text:
        if tokenizer is None:
            raise ValueError("generate: a text prompt needs a tokenizer (tokenizer=... or "
                             "a model loaded with from_pretrained)")
        prompt = [tokenizer.encode(text) for text in prompt]
    prompts = [_int_ids(_as_list(p)) for p in prompt]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    return prompts, batched, as_text


def _as_list(ids):
    """A Tensor or NumPy array of token ids as a (nested) list; anything else as it is."""
    if isinstance(ids, Tensor):
        ids = ids.detach().numpy(force=True)
    if isinstance(ids, numpy.ndarray):
        if ids.size and ids.dtype.kind not in "iu":  # tolist() would give floats or bools
            raise TypeError(f"generate: prompt token ids must be integers, got dtype "
                            f"{ids.dtype}")
        return ids.tolist()
    return ids


def _int_ids(ids: list) -> list:
    """``ids`` as a list of ints; a float id raises rather than being truncated by int()."""
    for value in ids:
        if not _is_int(value):
            raise TypeError(f"generate: prompt token ids must be integers, got {value!r} "
                            f"({type(value).__name__})")
    return [int(value) for value in ids]


def generate(model, prompt, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eos_id=None,
             seed: int | None = None, stream: bool = False, tokenizer=None,
             generator: Generator | None = None):
    """Continue ``prompt`` with up to ``max_new_tokens`` tokens (the functional form; for
    Hugging Face's conventions use ``model.generate``, which runs the same loop).

    Prompts of different lengths run together, each row sampling from the step after its own
    last prompt token.

    Args:
        model: a language model with ``recurrent()`` (TransformerLM, LSTMLM) or a recurrent
            model ``(tokens (N,), state) -> (logits, state)``.
        prompt: token ids, a text (needs a tokenizer), or a list of either (a batch).
        max_new_tokens: tokens to add per prompt.
        temperature: 0 is greedy; higher is more random.
        top_k, top_p: restrict sampling to the k most likely tokens / the nucleus of mass p.
        eos_id: stop a row after it produces this token (an int or a list of ints).
        seed: makes the sampling reproducible (default: draw from ``generator``).
        stream: return an iterator over the new tokens, or for a text prompt over text pieces
            whose concatenation is the generated text (single prompts only).
        tokenizer: for text prompts (default ``model.tokenizer``).
        generator: the Generator to draw from (default: the global one, ``sl.manual_seed``).
    Returns:
        the new token ids (or text, for text prompts); a list of them for a batch.
    Raises:
        TypeError or ValueError naming the argument that is out of its range (float prompt
        ids, ids outside the vocabulary, a NaN temperature, ...); RuntimeError naming the step
        if the model's logits become NaN (or, when sampling, +inf).
    """
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    prompts, batched, as_text = _prompts(prompt, tokenizer)
    if stream and batched:
        raise ValueError("generate: stream=True takes a single prompt")
    if not (isinstance(temperature, numbers.Real) and temperature >= 0):
        raise ValueError(f"generate: temperature must be >= 0 (0: greedy), got {temperature!r}")
    if seed is not None and generator is not None:
        raise ValueError("generate: give seed or generator, not both")
    vocab_size = _vocab_size(model)
    for ids in prompts:
        _check_prompt_ids(numpy.asarray(ids), vocab_size)
    _check_max_new_tokens(max_new_tokens)
    _check_sampling(temperature > 0, temperature, top_k, top_p)
    eos_ids = _token_list("eos_id", eos_id, vocab_size)
    draw_from = rng(Generator().manual_seed(seed) if seed is not None else generator)
    choose = _chooser(temperature > 0, temperature, top_k, top_p, draw_from)
    steps = _steps(model, prompts, max_new_tokens, choose, eos_ids, temperature > 0)
    if stream:
        return _stream(steps, tokenizer if as_text else None)
    outputs = [[] for _ in prompts]
    for tokens in steps:
        for row, token in enumerate(tokens):
            if token is not None:
                outputs[row].append(token)
    if as_text:
        outputs = [tokenizer.decode(ids) for ids in outputs]
    return outputs if batched else outputs[0]


def _stream(steps, tokenizer):
    """The new tokens of the single row, or (with a tokenizer) their text in final pieces."""
    tokens = (new[0] for new in steps if new[0] is not None)
    if tokenizer is None:
        yield from tokens
        return
    decoder = IncrementalDecoder(tokenizer)
    for token in tokens:
        piece = decoder.push([token])
        if piece:
            yield piece
    piece = decoder.flush()
    if piece:
        yield piece
