"""model.generate with Hugging Face's semantics: greedy == argmax of the parallel model, sampling
rules and seeds, eos and padding, the streamer protocol, input forms and errors."""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl
from seqlib.generation import generate_ids
from seqlib.models import LSTMLM, LSTMLMConfig, TransformerLM, TransformerLMConfig
from seqlib.nn import Module

VOCAB = 13


def build(kind: str):
    """A small float64 model with seeded random weights, in eval mode."""
    sl.set_default_dtype(sl.float64)
    try:
        sl.manual_seed(0)
        if kind == "lstm":
            model = LSTMLM(LSTMLMConfig(vocab_size=VOCAB, embedding_dim=8, hidden_size=12,
                                        dropout=0.0))
        else:
            options = {"attention_dropout": 0.0} if kind == "full" else {}
            model = TransformerLM(TransformerLMConfig(
                vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2, dropout=0.0,
                attention_type=kind, attention_options=options))
    finally:
        sl.set_default_dtype(sl.float32)
    with sl.no_grad():  # more spread than the initialisation: continuations depend on prompts
        for parameter in model.parameters():
            parameter.add_(sl.randn(*parameter.shape, dtype=parameter.dtype) * 0.5)
    return model.eval()


KINDS = ["causal-linear", "full", "lstm"]
PROMPTS = [[1, 2, 3], [7, 0, 12], [5, 5, 5]]


class Recorder:
    """A streamer that keeps every call."""

    def __init__(self):
        self.calls = []

    def put(self, value):
        self.calls.append(("put", value.tolist()))

    def end(self):
        self.calls.append(("end", None))


class FixedLogits(Module):
    """A recurrent "model" whose next-token logits are always ``logits``."""

    def __init__(self, logits):
        super().__init__()
        self.logits = numpy.asarray(logits, dtype=numpy.float64)

    def forward(self, tokens, state=None):
        return sl.tensor(numpy.tile(self.logits, (tokens.shape[0], 1))), state


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_generate_is_the_argmax_of_the_parallel_logits_step_by_step(kind):
    model = build(kind)
    out = model.generate(PROMPTS, max_new_tokens=8)
    assert isinstance(out, sl.Tensor) and out.dtype == sl.int64 and tuple(out.shape) == (3, 11)
    ids = out.numpy()
    assert ids[:, :3].tolist() == PROMPTS
    for length in range(3, 11):  # each new token is the argmax after everything before it
        logits, _ = model(sl.tensor(ids[:, :length]))
        numpy.testing.assert_array_equal(ids[:, length], logits.detach().numpy()[:, -1].argmax(-1))


@pytest.mark.parametrize("kind", KINDS)
def test_generate_takes_lists_arrays_and_tensors_of_one_or_many_prompts(kind):
    model = build(kind)
    batch = model.generate(PROMPTS, max_new_tokens=5).tolist()
    assert model.generate(numpy.array(PROMPTS), max_new_tokens=5).tolist() == batch
    assert model.generate(sl.tensor(PROMPTS), max_new_tokens=5).tolist() == batch
    assert model.generate(tuple(map(tuple, PROMPTS)), max_new_tokens=5).tolist() == batch
    for prompt, row in zip(PROMPTS, batch):
        single = model.generate(prompt, max_new_tokens=5)  # (L,) in, (L + new,) out
        assert tuple(single.shape) == (8,) and single.tolist() == row
        assert model.generate(numpy.array(prompt, numpy.int32), max_new_tokens=5).tolist() == row


@pytest.mark.parametrize("kind", KINDS)
def test_model_generate_and_sl_generate_run_the_same_loop(kind):
    model = build(kind)
    greedy = model.generate(PROMPTS[0], max_new_tokens=6).tolist()
    assert sl.generate(model, PROMPTS[0], 6, temperature=0) == greedy[3:]
    sampled = model.generate(PROMPTS[0], max_new_tokens=6, do_sample=True, temperature=1.5,
                             top_k=5, top_p=0.9, generator=sl.Generator().manual_seed(3))
    assert sl.generate(model, PROMPTS[0], 6, temperature=1.5, top_k=5, top_p=0.9,
                       seed=3) == sampled.tolist()[3:]


def test_sampling_is_reproducible_with_a_generator_or_the_global_seed():
    model = build("causal-linear")

    def draw(**kwargs):
        return model.generate(PROMPTS, max_new_tokens=12, do_sample=True, temperature=2.0,
                              **kwargs).tolist()

    first = draw(generator=sl.Generator().manual_seed(7))
    assert draw(generator=sl.Generator().manual_seed(7)) == first
    assert draw(generator=sl.Generator().manual_seed(8)) != first
    sl.manual_seed(7)
    global_first = draw()
    sl.manual_seed(7)
    assert draw() == global_first
    assert first != model.generate(PROMPTS, max_new_tokens=12).tolist()  # sampling, not greedy


def test_generate_runs_in_eval_mode_and_restores_the_mode():
    model = build("causal-linear")
    for layer in model.encoder.layers:  # would scramble the parallel prefill in training mode
        layer.dropout.p = 0.9

    def run():
        return model.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=2.0,
                              generator=sl.Generator().manual_seed(0)).tolist()

    in_eval = run()
    model.train()
    assert run() == in_eval
    assert model.training and model.encoder.layers[0].dropout.training


def test_top_k_1_and_a_tiny_top_p_sample_the_greedy_sequence():
    model = build("causal-linear")
    greedy = model.generate(PROMPTS, max_new_tokens=8).tolist()
    for options in ({"top_k": 1}, {"top_p": 1e-9}):
        sampled = model.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=3.0,
                                 generator=sl.Generator().manual_seed(0), **options)
        assert sampled.tolist() == greedy


@pytest.mark.parametrize("temperature, top_k, top_p, expected", [
    (1.0, None, None, [0.5, 0.2, 0.15, 0.1, 0.05]),
    (0.5, None, None, numpy.array([0.5, 0.2, 0.15, 0.1, 0.05]) ** 2 / 0.325),
    (1.0, 2, None, [0.5 / 0.7, 0.2 / 0.7, 0, 0, 0]),
    (1.0, None, 0.8, [0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0]),
])
def test_sampled_first_tokens_follow_the_warped_distribution(temperature, top_k, top_p,
                                                              expected):
    model = FixedLogits(numpy.log([0.5, 0.2, 0.15, 0.1, 0.05]))
    out = generate_ids(model, numpy.zeros((20000, 1), numpy.int64), max_new_tokens=1,
                       do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p,
                       generator=sl.Generator().manual_seed(0))
    frequencies = numpy.bincount(out.numpy()[:, 1], minlength=5) / 20000
    numpy.testing.assert_allclose(frequencies, expected, atol=0.01)


def test_rows_stop_at_eos_and_are_padded_until_every_row_has_stopped():
    model = build("causal-linear")

    def run(prompts, **kwargs):  # the same draws each time, whichever rows have stopped
        return model.generate(prompts, max_new_tokens=10, do_sample=True, temperature=2.0,
                              generator=sl.Generator().manual_seed(4), **kwargs).numpy()

    free = run(PROMPTS)[:, 3:]
    for pad, eos_ids in [(4, [int(free[0, 2])]), (None, [int(free[1, 4]), int(free[2, 1])])]:
        stops = [next((i + 1 for i, t in enumerate(row) if t in eos_ids), 10) for row in free]
        assert len(set(stops)) > 1  # rows stop at different steps, or the test shows nothing
        out = run(PROMPTS, eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
                  pad_token_id=pad)[:, 3:]
        assert out.shape[1] == max(stops)
        for row, stop in enumerate(stops):
            assert out[row, :stop].tolist() == free[row, :stop].tolist()
            assert (out[row, stop:] == (eos_ids[0] if pad is None else pad)).all()
    alone = run(PROMPTS[0])[3:].tolist()  # (L,): one row, so other draws than in the batch
    stop = alone.index(alone[2]) + 1
    assert run(PROMPTS[0], eos_token_id=alone[2]).tolist() == PROMPTS[0] + alone[:stop]


def test_the_streamer_gets_the_prompt_then_each_step_then_end():
    model = build("lstm")
    recorder = Recorder()
    out = model.generate(PROMPTS, max_new_tokens=4, streamer=recorder).numpy()
    assert recorder.calls[0] == ("put", PROMPTS)
    assert recorder.calls[1:5] == [("put", out[:, 3 + i].tolist()) for i in range(4)]
    assert recorder.calls[5:] == [("end", None)]
    recorder = Recorder()
    model.generate(PROMPTS[1], max_new_tokens=2, streamer=recorder)  # a 1-D prompt: (1, L)
    assert recorder.calls[0] == ("put", [PROMPTS[1]]) and len(recorder.calls) == 4


def test_no_new_tokens_and_an_empty_batch_return_the_prompt():
    model = build("causal-linear")
    assert model.generate(PROMPTS, max_new_tokens=0).tolist() == PROMPTS
    empty = model.generate(numpy.zeros((0, 4), numpy.int64), max_new_tokens=3)
    assert tuple(empty.shape) == (0, 4)
    recorder = Recorder()
    model.generate([1], max_new_tokens=0, streamer=recorder)
    assert recorder.calls == [("put", [[1]]), ("end", None)]


def test_generate_rejects_bad_arguments_with_clear_errors():
    model = build("causal-linear")
    bad = [
        (dict(do_sample=True, temperature=0), ValueError, "temperature must be > 0 when sampl"),
        (dict(do_sample=True, temperature=-1.0), ValueError, "temperature must be > 0"),
        (dict(top_k=0), ValueError, r"top_k must be an int >= 1 .*, got 0"),
        (dict(top_k=2.5), ValueError, "top_k must be an int >= 1"),
        (dict(top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), ValueError, r"top_p must be in \(0, 1\]"),
        (dict(eos_token_id=VOCAB), ValueError, r"eos_token_id 13 is not in the vocabulary \[0, 13"),
        (dict(eos_token_id=[1, -1]), ValueError, "eos_token_id -1 is not in the vocabulary"),
        (dict(eos_token_id="2"), TypeError, "eos_token_id must be an int or a list of ints"),
        (dict(pad_token_id=99), ValueError, "pad_token_id 99 is not in the vocabulary"),
        (dict(pad_token_id=[1]), TypeError, r"pad_token_id must be an int, got \[1\]"),
        (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be an int >= 0, got -1"),
    ]
    for kwargs, error, message in bad:
        with pytest.raises(error, match=message):
            model.generate(PROMPTS, **kwargs)
    with pytest.raises(ValueError, match=r"one length, got lengths \[3, 1\]"):
        model.generate([[1, 2, 3], [4]], max_new_tokens=2)
    with pytest.raises(TypeError, match="got text"):
        model.generate("abc")
    with pytest.raises(TypeError, match="integer token ids, got dtype float64"):
        model.generate(numpy.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(L,\) or \(N, L\), got \(1, 1, 2\)"):
        model.generate(numpy.ones((1, 1, 2), numpy.int64))
    with pytest.raises(ValueError, match="at least one token"):
        model.generate([[]])
    with pytest.raises(ValueError, match=r"prompt token id 13 is not in the vocabulary \[0, 13\)"):
        model.generate([1, 13])
    with pytest.raises(TypeError, match="expected a Generator"):
        model.generate([1], do_sample=True, generator=5)


def test_sampling_arguments_without_do_sample_warn_and_decode_greedily():
    model = build("causal-linear")
    greedy = model.generate(PROMPTS, max_new_tokens=4).tolist()
    with pytest.warns(UserWarning, match="temperature=0.7, top_k=3 has no effect"):
        out = model.generate(PROMPTS, max_new_tokens=4, temperature=0.7, top_k=3)
    assert out.tolist() == greedy
