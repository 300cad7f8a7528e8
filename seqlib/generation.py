"""Sampling text from a language model one token at a time on its recurrent twin."""

from __future__ import annotations

import numpy

from seqlib.core.autograd.grad_mode import no_grad
from seqlib.core.creation import tensor
from seqlib.core.random import Generator


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
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, logits.shape[-1])
        kth = numpy.sort(logits, axis=-1)[:, -k][:, None]
        logits[logits < kth] = -numpy.inf
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        order = numpy.argsort(-logits, axis=-1)
        ranked = numpy.take_along_axis(logits, order, axis=-1)
        probs = numpy.exp(ranked - ranked[:, :1])
        probs /= probs.sum(-1, keepdims=True)
        before = numpy.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above
        drop = before >= top_p
        numpy.put_along_axis(logits, order, numpy.where(drop, -numpy.inf, ranked), axis=-1)
    return logits


def sample(logits: numpy.ndarray, temperature: float, top_k, top_p, rng) -> numpy.ndarray:
    """Draw one token id per row of ``(N, V)`` logits (greedy when temperature is 0)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(-1)
    filtered = filter_logits(logits / temperature, top_k, top_p)
    probs = numpy.exp(filtered - filtered.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    draws = rng.random((probs.shape[0], 1))
    return (numpy.cumsum(probs, -1) < draws).sum(-1).clip(0, probs.shape[-1] - 1)


def _prompts(prompt, tokenizer):
    """``(list of id lists, batched, as_text)`` from text, ids, or a batch of either."""
    if isinstance(prompt, str):
        prompt, as_text, batched = [prompt], True, False
    elif prompt and isinstance(prompt[0], str):
        as_text, batched = True, True
    elif prompt and isinstance(prompt[0], (list, tuple)):
        as_text, batched = False, True
    else:
        prompt, as_text, batched = [list(prompt)], False, False
    if as_text:
        if tokenizer is None:
            raise ValueError("generate: a text prompt needs a tokenizer (tokenizer=... or "
                             "a model loaded with from_pretrained)")
        prompt = [tokenizer.encode(text) for text in prompt]
    prompts = [list(map(int, p)) for p in prompt]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    return prompts, batched, as_text


def generate(model, prompt, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
             seed: int | None = None, stream: bool = False, tokenizer=None):
    """Continue ``prompt`` with up to ``max_new_tokens`` sampled tokens.

    The prompt prefix that all rows share in length is read in one parallel pass
    (``model.prefill``) where the model has one; the rest of each prompt and every new token go
    through the recurrent twin (``model.recurrent()``) one step at a time: per-token time and
    memory stay constant for linear attention. Prompts of different lengths run together, each
    row sampling from the step after its own last prompt token.

    Args:
        model: a language model with ``recurrent()`` (TransformerLM, LSTMLM) or a recurrent
            model ``(tokens (N,), state) -> (logits, state)``.
        prompt: token ids, a text (needs a tokenizer), or a list of either (a batch).
        max_new_tokens: tokens to add per prompt.
        temperature: 0 is greedy; higher is more random.
        top_k, top_p: restrict sampling to the k most likely tokens / the nucleus of mass p.
        eos_id: stop a row after it samples this token.
        seed: makes the sampling reproducible.
        stream: return an iterator yielding each new token (or text piece) as it is sampled
            (single prompts only).
        tokenizer: for text prompts (default ``model.tokenizer``).
    Returns:
        the new token ids (or text, for text prompts); a list of them for a batch.
    """
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    prompts, batched, as_text = _prompts(prompt, tokenizer)
    if stream and batched:
        raise ValueError("generate: stream=True takes a single prompt")
    steps = _steps(model, prompts, max_new_tokens, temperature, top_k, top_p, eos_id, seed)
    if stream:
        return (tokenizer.decode([token]) if as_text else token for token in
                (tokens[0] for tokens in steps if tokens[0] is not None))
    outputs = [[] for _ in prompts]
    for tokens in steps:
        for row, token in enumerate(tokens):
            if token is not None:
                outputs[row].append(token)
    if as_text:
        outputs = [tokenizer.decode(ids) for ids in outputs]
    return outputs if batched else outputs[0]


def _steps(model, prompts, max_new_tokens, temperature, top_k, top_p, eos_id, seed):
    """Yield, per step, one new token or None per row."""
    recurrent = model.recurrent() if hasattr(model, "recurrent") else model
    was_training = recurrent.training
    recurrent.eval()
    rng = (Generator().manual_seed(seed) if seed is not None else Generator()).numpy_generator
    lengths = [len(p) for p in prompts]
    produced = [0] * len(prompts)
    done = [max_new_tokens <= 0] * len(prompts)
    state, start = None, 0
    shared = min(lengths) - 1  # positions every prompt has before its last token
    try:
        with no_grad():
            if shared > 0 and hasattr(model, "prefill"):  # one parallel pass for the prefix
                state = model.prefill(tensor([p[:shared] for p in prompts]))
                start = shared
            current = [p[start] for p in prompts]
            for t in range(start, max(lengths) + max_new_tokens - 1):
                if all(done):
                    return
                logits, state = recurrent(tensor(current), state)
                chosen = sample(logits.detach().numpy(force=True), temperature, top_k, top_p,
                                rng)
                new = [None] * len(prompts)
                for row, length in enumerate(lengths):
                    if t + 1 < length:
                        current[row] = prompts[row][t + 1]  # still reading the prompt
                        continue
                    if not done[row]:
                        new[row] = int(chosen[row])
                        produced[row] += 1
                        done[row] = produced[row] >= max_new_tokens or new[row] == eos_id
                    current[row] = int(chosen[row])
                yield new
    finally:
        recurrent.train(was_training)
