"""Language models and generation: parallel == recurrent, sampling rules, save/load."""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl
from seqlib.generation import filter_logits
from seqlib.models import (
    LSTMLM,
    LSTMLMConfig,
    SinusoidalPositionalEncoding,
    TransformerLM,
    TransformerLMConfig,
    from_pretrained,
)
from seqlib.tokenizers import CharTokenizer

VOCAB = 13


def transformer(attention="causal-linear", positional="sinusoidal", dtype=sl.float64, **extra):
    sl.set_default_dtype(dtype)
    try:
        sl.manual_seed(0)
        options = {"attention_dropout": 0.0} if attention == "full" else {}
        options.update(extra.pop("attention_options", {}))
        config = TransformerLMConfig(vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2,
                                     dropout=0.0, attention_type=attention,
                                     positional_encoding=positional,
                                     attention_options=options, **extra)
        return TransformerLM(config).eval()
    finally:
        sl.set_default_dtype(sl.float32)


def lstm(dtype=sl.float64):
    sl.set_default_dtype(dtype)
    try:
        sl.manual_seed(0)
        return LSTMLM(LSTMLMConfig(vocab_size=VOCAB, embedding_dim=8, hidden_size=12,
                                   dropout=0.0)).eval()
    finally:
        sl.set_default_dtype(sl.float32)


MODELS = {
    "linear-sinusoidal": lambda: transformer(),
    "linear-learned": lambda: transformer(positional="learned"),
    "softmax": lambda: transformer("full"),
    "lstm": lstm,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parallel_logits_equal_recurrent_logits_step_by_step(name):
    model = MODELS[name]()
    tokens = sl.randint(0, VOCAB, (3, 9))
    logits, loss = model(tokens, tokens)
    assert logits.shape == (3, 9, VOCAB) and loss.shape == ()
    assert abs(loss.item() - numpy.log(VOCAB)) < 1.0
    recurrent, state = model.recurrent(), None
    for t in range(9):
        step, state = recurrent(tokens[:, t], state)
        numpy.testing.assert_allclose(step.detach().numpy(), logits[:, t].detach().numpy(),
                                      rtol=1e-10, atol=1e-12)


def test_recurrent_twin_shares_parameters_and_linear_state_stays_constant():
    model = transformer()
    recurrent = model.recurrent()
    assert recurrent.head.weight is model.token_embedding.weight  # tied and shared
    assert recurrent.encoder.layers[0].linear1.weight is model.encoder.layers[0].linear1.weight
    state, sizes = None, []
    with sl.no_grad():
        for t in range(40):
            _, state = recurrent(sl.tensor([t % VOCAB]), state)
            sizes.append(sum(s.numel() for layer in state[1] for s in layer))
    assert len(set(sizes)) == 1 and state[0] == 40  # constant memory per token
    softmax = transformer("full").recurrent()
    state = None
    with sl.no_grad():
        for _ in range(3):
            _, state = softmax(sl.tensor([1]), state)
    assert state[1][0][0].shape[2] == 3  # the KV cache grows


def test_learned_positions_have_a_limit_and_configs_are_checked():
    model = transformer(positional="learned", max_length=4)
    with pytest.raises(ValueError, match="beyond the learned positional encoding's max_length 4"):
        model(sl.zeros(1, 5, dtype=sl.int64))
    with pytest.raises(ValueError, match="divisible by n_heads"):
        TransformerLM(TransformerLMConfig(vocab_size=5, d_model=10, n_heads=3))
    with pytest.raises(ValueError, match="positional_encoding"):
        TransformerLM(TransformerLMConfig(vocab_size=5, positional_encoding="rotary"))
    with pytest.raises(ValueError, match="tie_weights needs"):
        LSTMLM(LSTMLMConfig(vocab_size=5, tie_weights=True))


def test_filter_logits_top_k_and_top_p_on_a_fixed_distribution():
    probs = numpy.array([[0.5, 0.2, 0.15, 0.1, 0.05]])
    logits = numpy.log(probs)
    top2 = filter_logits(logits, top_k=2)
    assert numpy.isfinite(top2).sum() == 2 and numpy.isfinite(top2[0, :2]).all()
    nucleus = filter_logits(logits, top_p=0.8)  # 0.5 + 0.2 < 0.8 <= 0.85: three tokens
    assert numpy.isfinite(nucleus[0]).tolist() == [True, True, True, False, False]
    assert numpy.isfinite(filter_logits(logits, top_p=0.3)[0]).tolist() == [True] + [False] * 4
    both = filter_logits(logits, top_k=4, top_p=0.99)
    assert numpy.isfinite(both[0]).tolist() == [True, True, True, True, False]
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, top_p=0)
    with pytest.raises(ValueError, match="top_k"):
        filter_logits(logits, top_k=0)


def test_sampling_frequencies_follow_the_filtered_distribution():
    from seqlib.generation import sample

    logits = numpy.log(numpy.array([[0.5, 0.2, 0.15, 0.1, 0.05]] * 20000))
    draws = sample(logits, 1.0, None, 0.8, numpy.random.default_rng(0))
    frequencies = numpy.bincount(draws, minlength=5) / len(draws)
    numpy.testing.assert_allclose(frequencies, [0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0],
                                  atol=0.01)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_generation_is_reproducible_and_streams(name):
    model = MODELS[name]()
    first = sl.generate(model, [1, 2, 3], 8, seed=5)
    assert first == sl.generate(model, [1, 2, 3], 8, seed=5)
    assert len(first) == 8 and all(0 <= t < VOCAB for t in first)
    assert list(sl.generate(model, [1, 2, 3], 8, seed=5, stream=True)) == first
    greedy = sl.generate(model, [4, 5], 6, temperature=0)
    assert greedy == sl.generate(model, [4, 5], 6, temperature=0, seed=99)


def test_batched_prompts_of_different_lengths_match_single_prompts():
    model = transformer()
    prompts = [[1, 2, 3, 4, 5], [6], [7, 8]]
    batch = sl.generate(model, prompts, 5, temperature=0)
    assert batch == [sl.generate(model, p, 5, temperature=0) for p in prompts]


def test_eos_text_prompts_and_errors():
    model = transformer()
    greedy = sl.generate(model, [1, 2], 10, temperature=0)
    stopped = sl.generate(model, [1, 2], 10, temperature=0, eos_id=greedy[2])
    assert stopped == greedy[: greedy.index(greedy[2]) + 1]
    tokenizer = CharTokenizer(list("abcdefghijklm"))
    text = sl.generate(model, "abc", 4, seed=1, tokenizer=tokenizer)
    assert isinstance(text, str) and len(text) == 4
    assert sl.generate(model, ["ab", "c"], 2, temperature=0, tokenizer=tokenizer)[1] == \
        sl.generate(model, "c", 2, temperature=0, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        sl.generate(model, "abc", 2)
    with pytest.raises(ValueError, match="at least one token"):
        sl.generate(model, [], 2)
    with pytest.raises(ValueError, match="single prompt"):
        sl.generate(model, [[1], [2]], 2, stream=True)
    with pytest.raises(ValueError, match="temperature"):
        sl.generate(model, [1], 2, temperature=-1)


@pytest.mark.parametrize("name", ["linear-learned", "lstm"])
def test_save_pretrained_round_trip(tmp_path, name):
    model = MODELS[name]()
    tokenizer = CharTokenizer(list("abcdefghijklm"))
    model.save_pretrained(tmp_path / "model", tokenizer=tokenizer)
    loaded = from_pretrained(tmp_path / "model")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.tokenizer.vocab == tokenizer.vocab
    tokens = sl.randint(0, VOCAB, (2, 6))
    numpy.testing.assert_array_equal(loaded(tokens)[0].detach().numpy(),
                                     model(tokens)[0].detach().numpy())
    if name != "lstm":
        assert loaded.head.weight is loaded.token_embedding.weight
        assert type(model).from_pretrained(tmp_path / "model").config == model.config
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        from_pretrained(tmp_path)
    if name == "lstm":
        with pytest.raises(TypeError, match="holds a LSTMLM, not a TransformerLM"):
            TransformerLM.from_pretrained(tmp_path / "model")


@pytest.mark.parametrize("attention", ["causal-linear", "full"])
def test_parallel_prefill_gives_the_recurrent_state(attention):
    model = transformer(attention)
    tokens = sl.randint(0, VOCAB, (2, 9))
    recurrent = model.recurrent()
    with sl.no_grad():
        state = model.prefill(tokens[:, :6])
        after_prefill, _ = recurrent(tokens[:, 6], state)
        stepwise = None
        for t in range(7):
            step, stepwise = recurrent(tokens[:, t], stepwise)
    assert state[0] == 6
    numpy.testing.assert_allclose(after_prefill.numpy(), step.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="has no recurrent twin"):
        transformer("local", attention_options={"local_context": 3}).prefill(tokens)


def test_sinusoidal_positions_follow_the_formula_on_the_requested_device():
    encoding = SinusoidalPositionalEncoding(6)
    table = encoding([0, 3, 7]).numpy()
    for row, p in enumerate((0, 3, 7)):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert table[row, 2 * i] == pytest.approx(numpy.sin(angle), abs=1e-6)
            assert table[row, 2 * i + 1] == pytest.approx(numpy.cos(angle), abs=1e-6)
    assert encoding([1], device="cpu").device == sl.device("cpu")
    assert encoding([1, 2]).dtype == sl.float32
    odd = SinusoidalPositionalEncoding(5)([2]).numpy()  # an odd size drops the last cosine
    assert odd.shape == (1, 5) and odd[0, 4] == pytest.approx(numpy.sin(2 / 10000 ** 0.8))
