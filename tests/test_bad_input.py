"""Nonsense gets a clear error, never a silent result or a crash deep inside NumPy."""

from __future__ import annotations

import functools

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import seqlib as sl
from seqlib.generation import generate_ids


@pytest.mark.parametrize("op", ["//", "%"])
@pytest.mark.parametrize("divisor", [0, "tensor"])
def test_integer_division_by_zero_raises_as_pytorch(op, divisor):
    a = sl.tensor([5, 7])
    b = sl.tensor([0, 2]) if divisor == "tensor" else divisor
    with pytest.raises(ZeroDivisionError, match="division or modulo by zero"):
        a // b if op == "//" else a % b
    with pytest.raises(RuntimeError):  # PyTorch raises a RuntimeError: both catch it
        a // b if op == "//" else a % b
    assert (a // 2).tolist() == [2, 3] and (a % sl.tensor([2, 4])).tolist() == [1, 3]
    assert sl.div(a, 2, rounding_mode="trunc").tolist() == [2, 3]
    with numpy.errstate(divide="ignore"):  # floats divide by zero to inf, as in PyTorch
        assert (sl.tensor([1.0]) // 0).tolist() == [float("inf")]


@pytest.mark.parametrize("max_norm", [-1.0, float("nan")])
def test_clip_grad_norm_refuses_a_negative_or_nan_max_norm(max_norm):
    p = sl.nn.Parameter(sl.ones(3))
    p.grad = sl.ones(3)
    with pytest.raises(ValueError, match="max_norm"):
        sl.nn.utils.clip_grad_norm_([p], max_norm)
    assert p.grad.tolist() == [1.0, 1.0, 1.0]


def _nan_grads():
    params = [sl.nn.Parameter(sl.ones(2)), sl.nn.Parameter(sl.ones(2))]
    params[0].grad = sl.tensor([float("nan"), 1.0])
    params[1].grad = sl.tensor([2.0, 2.0])
    return params


def test_clip_grad_norm_with_a_nan_gradient_as_pytorch():
    with pytest.raises(RuntimeError, match="non-finite"):  # NaN in the inf-norm is not skipped
        sl.nn.utils.clip_grad_norm_(_nan_grads(), 1.0, norm_type="inf",
                                    error_if_nonfinite=True)
    params = _nan_grads()
    norm = sl.nn.utils.clip_grad_norm_(params, 1.0)
    assert numpy.isnan(norm.item()) and numpy.isnan(params[1].grad.numpy()).all()


def _stack(builder, **kwargs):
    config = dict(attention_type="causal-linear", n_layers=1, n_heads=2, query_dimensions=4,
                  value_dimensions=4, feed_forward_dimensions=8)
    return builder.from_kwargs(**{**config, **kwargs}).get().eval()


def test_recurrent_twin_names_the_input_and_state_it_expected():
    from seqlib.builders import RecurrentEncoderBuilder

    twin = _stack(RecurrentEncoderBuilder)
    with pytest.raises(ValueError, match=r"x must be \(N, 8\), one position per call, got "
                                         r"\(2, 5, 8\)"):
        twin(sl.randn(2, 5, 8))
    other = _stack(RecurrentEncoderBuilder, n_heads=4, query_dimensions=2, value_dimensions=2)
    _, foreign = other(sl.randn(2, 8))
    with pytest.raises(ValueError, match=r"state must be \[S \(2, 2, 4, 4\), Z \(2, 2, 4\)\] "
                                         r"for this input, got \[\(2, 4, 2, 2\), \(2, 4, 2\)\]"):
        twin(sl.randn(2, 8), foreign)
    _, softmax_state = _stack(RecurrentEncoderBuilder, attention_type="full")(sl.randn(2, 8))
    with pytest.raises(ValueError, match="RecurrentLinearAttention: the state must be"):
        twin(sl.randn(2, 8), softmax_state)
    _, own = twin(sl.randn(2, 8))
    with pytest.raises(ValueError, match=r"RecurrentFullAttention: the state must be \[keys "
                                         r"\(2, 2, \*, 4\), values \(2, 2, \*, 4\)\]"):
        _stack(RecurrentEncoderBuilder, attention_type="full")(sl.randn(2, 8), own)


@pytest.mark.parametrize("name", ["n_layers", "n_heads"])
def test_builders_refuse_fewer_than_one_layer_or_head(name):
    from seqlib.builders import TransformerEncoderBuilder

    with pytest.raises(ValueError, match=f"{name}: expected Int >= 1, got 0"):
        _stack(TransformerEncoderBuilder, **{name: 0})


def test_masks_of_the_wrong_type_get_a_type_error():
    from seqlib.builders import TransformerEncoderBuilder

    model = _stack(TransformerEncoderBuilder)
    x = sl.randn(2, 5, 8)
    with pytest.raises(TypeError, match=r"attn_mask must be a mask .* got Tensor; wrap a bool "
                                        r"tensor as FullMask\(tensor\)"):
        model(x, attn_mask=sl.ones(5, 5, dtype=sl.bool))
    with pytest.raises(TypeError, match="length_mask must be a mask .* got list; build one with "
                                        "LengthMask"):
        model(x, length_mask=[5, 5])


@pytest.mark.parametrize("attention", ["causal-linear", "full", "linear"])
def test_transformers_take_length_zero_sequences(attention):
    from seqlib.builders import TransformerEncoderBuilder
    from seqlib.masking import TriangularCausalMask

    model = _stack(TransformerEncoderBuilder, attention_type=attention)
    x = sl.randn(2, 0, 8, requires_grad=True)
    mask = TriangularCausalMask(0) if attention == "causal-linear" else None
    y = model(x, attn_mask=mask)
    assert y.shape == (2, 0, 8)
    y.sum().backward()
    assert x.grad.shape == (2, 0, 8)


def test_lstm_and_causal_product_at_length_zero():
    with pytest.raises(ValueError, match="no time steps; expected a sequence length of at "
                                         "least 1"):
        sl.nn.LSTM(8, 4, batch_first=True)(sl.randn(2, 0, 8))
    from seqlib.causal_product import causal_dot_product

    q = sl.randn(1, 2, 0, 4, requires_grad=True)
    out, state = causal_dot_product(q, q, sl.randn(1, 2, 0, 3), return_final_state=True)
    assert out.shape == (1, 2, 0, 3) and state.shape == (1, 2, 4, 3)
    out.sum().backward()
    assert q.grad.shape == (1, 2, 0, 4)


# ---------------------------------------------------------------------------- optimizers

OPTIMIZERS = {"SGD": (sl.optim.SGD, {"lr": 0.1}), "Adam": (sl.optim.Adam, {}),
              "AdamW": (sl.optim.AdamW, {}), "RMSprop": (sl.optim.RMSprop, {})}
# the options each checks, and how PyTorch's messages name them
CHECKED = {"SGD": {"lr": "learning rate", "momentum": "momentum value",
                   "weight_decay": "weight_decay value"},
           "Adam": {"lr": "learning rate", "eps": "epsilon value",
                    "weight_decay": "weight_decay value"},
           "RMSprop": {"lr": "learning rate", "eps": "epsilon value", "alpha": "alpha value",
                       "momentum": "momentum value", "weight_decay": "weight_decay value"}}
CHECKED["AdamW"] = CHECKED["Adam"]
NEGATIVE_OR_NAN = (st.floats(max_value=-1e-300) | st.just(float("nan"))
                   | st.integers(max_value=-1)
                   | st.floats(-1e30, -1e-30).map(numpy.float32))
NOT_A_NUMBER = st.sampled_from(["0.1", None, [0.1], True, 1j])


def _optimizer_option(draw_value):
    return st.sampled_from(sorted(OPTIMIZERS)).flatmap(
        lambda name: st.tuples(st.just(name), st.sampled_from(sorted(CHECKED[name])),
                               draw_value, st.booleans()))


def _make_with(name: str, option: str, value, in_a_group: bool):
    """The optimizer given ``option=value`` in its constructor, or in an added group."""
    cls, required = OPTIMIZERS[name]
    if not in_a_group:
        return cls([sl.nn.Parameter(sl.ones(2))], **{**required, option: value})
    optimizer = cls([sl.nn.Parameter(sl.ones(2))], **required)
    optimizer.add_param_group({"params": [sl.nn.Parameter(sl.ones(2))], option: value})
    return optimizer


@given(case=_optimizer_option(NEGATIVE_OR_NAN))
def test_optimizers_refuse_negative_or_nan_options_with_pytorchs_message(case):
    name, option, value, in_a_group = case
    with pytest.raises(ValueError, match=f"^Invalid {CHECKED[name][option]}: "):
        _make_with(name, option, value, in_a_group)


@given(case=_optimizer_option(NOT_A_NUMBER))
def test_optimizers_refuse_options_that_are_not_numbers_naming_them(case):
    name, option, value, in_a_group = case
    with pytest.raises(TypeError, match=f"Invalid {CHECKED[name][option]}: .*\\({option} must "
                                        "be a real number, got "):
        _make_with(name, option, value, in_a_group)


@given(case=_optimizer_option(st.floats(0, 10) | st.integers(0, 10) | st.just(float("inf"))))
def test_optimizers_take_options_in_range(case):
    name, option, value, in_a_group = case
    assert _make_with(name, option, value, in_a_group).param_groups[-1][option] == value


@given(beta=st.floats(max_value=-1e-300) | st.floats(min_value=1.0) | st.just(float("nan")),
       index=st.integers(0, 1), adamw=st.booleans())
def test_adam_refuses_betas_outside_0_1_naming_the_index(beta, index, adamw):
    betas = [0.9, 0.999]
    betas[index] = beta
    cls = sl.optim.AdamW if adamw else sl.optim.Adam
    with pytest.raises(ValueError, match=f"^Invalid beta parameter at index {index}: "):
        cls([sl.nn.Parameter(sl.ones(2))], betas=tuple(betas))
    optimizer = cls([sl.nn.Parameter(sl.ones(2))])
    with pytest.raises(ValueError, match=f"^Invalid beta parameter at index {index}: "):
        optimizer.add_param_group({"params": [sl.nn.Parameter(sl.ones(2))], "betas": betas})
    assert len(optimizer.param_groups) == 1


def test_adam_betas_must_be_a_pair():
    params = [sl.nn.Parameter(sl.ones(2))]
    with pytest.raises(ValueError, match=r"Invalid betas: \(0.9,\) \(expected a pair"):
        sl.optim.Adam(params, betas=(0.9,))
    with pytest.raises(TypeError, match="Invalid betas: 0.9 .*got float"):
        sl.optim.Adam(params, betas=0.9)
    with pytest.raises(TypeError, match=r"Invalid beta parameter at index 1: '0.9' \(betas\[1\]"):
        sl.optim.Adam(params, betas=(0.9, "0.9"))


def test_sgd_refuses_a_nan_dampening_and_nesterov_in_an_added_group():
    params = [sl.nn.Parameter(sl.ones(2))]
    with pytest.raises(ValueError, match="Invalid dampening value: nan"):
        sl.optim.SGD(params, lr=0.1, momentum=0.9, dampening=float("nan"))
    assert sl.optim.SGD(params, lr=0.1, dampening=-1).defaults["dampening"] == -1  # as PyTorch
    optimizer = sl.optim.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum"):
        optimizer.add_param_group({"params": [sl.nn.Parameter(sl.ones(1))], "nesterov": True})
    with pytest.raises(ValueError, match="didn't specify a value of required optimization "
                                         "parameter lr"):
        sl.optim.SGD(params).add_param_group({"params": [sl.nn.Parameter(sl.ones(1))]})


# ---------------------------------------------------------------------------- generation

VOCAB = 7
NAN, INF = float("nan"), float("inf")


@functools.cache
def _lm():
    from seqlib.models import TransformerLM, TransformerLMConfig

    sl.manual_seed(0)
    return TransformerLM(TransformerLMConfig(vocab_size=VOCAB, d_model=8, n_layers=1,
                                             n_heads=2, dropout=0.0)).eval()


BAD_SAMPLING = st.one_of(
    st.tuples(st.just("temperature"), st.sampled_from([NAN, -INF, -1e-9, -2, "1", None])),
    st.tuples(st.just("top_k"), st.sampled_from([0, -1, 1.0, 2.5, True, NAN, "3"])),
    st.tuples(st.just("top_p"), st.sampled_from([0, 0.0, -0.5, 1.0001, INF, NAN, "0.9"])))


@given(case=BAD_SAMPLING, functional=st.booleans())
def test_generate_refuses_bad_sampling_arguments_naming_them(case, functional):
    name, value = case
    with pytest.raises((ValueError, TypeError), match=f"generate: {name} must be"):
        if functional:
            sl.generate(_lm(), [1, 2], 3, **{name: value})
        else:
            _lm().generate([1, 2], 3, do_sample=True, **{name: value})


@given(eos=st.integers(max_value=-1) | st.integers(min_value=VOCAB), as_list=st.booleans(),
       functional=st.booleans())
def test_generate_refuses_eos_ids_outside_the_vocabulary(eos, as_list, functional):
    name = "eos_id" if functional else "eos_token_id"
    with pytest.raises(ValueError, match=f"generate: {name} {eos} is not in the vocabulary "
                                         f"\\[0, {VOCAB}\\)"):
        if functional:
            sl.generate(_lm(), [1], 2, eos_id=[0, eos] if as_list else eos)
        else:
            _lm().generate([1], 2, eos_token_id=[0, eos] if as_list else eos)


@given(ids=st.lists(st.floats(0, VOCAB - 1), min_size=1, max_size=4),
       form=st.sampled_from(["list", "numpy", "tensor", "batch"]), functional=st.booleans())
def test_float_prompt_ids_are_refused_not_truncated(ids, form, functional):
    prompt = {"list": ids, "numpy": numpy.array(ids), "tensor": sl.tensor(ids),
              "batch": [ids, ids]}[form]
    with pytest.raises(TypeError, match=r"ids must be integer.*got (dtype float|.* \(float\))"):
        if functional:
            sl.generate(_lm(), prompt, 2)
        else:
            _lm().generate(prompt, 2)


class _Diverging(sl.nn.Module):
    """A recurrent "model" whose logits turn to ``value`` at its ``bad_call``-th step."""

    def __init__(self, bad_call: int, value: float):
        super().__init__()
        self.bad_call, self.value = bad_call, value

    def forward(self, tokens, state=None):
        calls = 1 if state is None else state + 1
        logits = numpy.zeros((tokens.shape[0], VOCAB))
        logits[:, 3] = 1.0
        if calls == self.bad_call:
            logits[-1, 2] = self.value
        return sl.tensor(logits), calls


@given(bad_call=st.integers(1, 4), prompt_length=st.integers(1, 3), functional=st.booleans(),
       sampling=st.booleans())
def test_logits_that_become_nan_raise_naming_the_step(bad_call, prompt_length, functional,
                                                      sampling):
    model = _Diverging(bad_call, NAN)
    prompt = [1] * prompt_length

    def run():
        if functional:
            return sl.generate(model, [prompt, prompt], 6, temperature=float(sampling), seed=0)
        return generate_ids(model, [prompt, prompt], 6, do_sample=sampling,
                            generator=sl.Generator())

    if bad_call < prompt_length:  # the row is still reading its prompt: nothing is chosen
        run()
        return
    step = bad_call - prompt_length + 1
    with pytest.raises(RuntimeError, match=f"generate: step {step} of sequence 1 \\(position "
                                           f"{bad_call}\\): the model's logits are NaN"):
        run()


def test_infinite_logits_raise_when_sampling_and_win_when_greedy():
    model = _Diverging(1, INF)
    assert generate_ids(model, [[1]], 1).tolist() == [[1, 2]]  # greedy: argmax is defined
    with pytest.raises(RuntimeError, match=r"step 1 of sequence 0 \(position 1\): the model's "
                                           "logits are \\+inf, so sampling probabilities"):
        generate_ids(model, [1], 1, do_sample=True)
    minus = _Diverging(1, -INF)
    minus.forward = lambda tokens, state=None: (sl.full((1, VOCAB), -INF), 1)
    with pytest.raises(RuntimeError, match="logits are -inf for every token"):
        sl.generate(minus, [1], 1, temperature=0)


def test_sample_and_filter_logits_refuse_nonsense():
    from seqlib.generation import filter_logits, sample

    logits = numpy.zeros((1, VOCAB))
    draw_from = numpy.random.default_rng(0)
    with pytest.raises(ValueError, match="temperature must be >= 0, got nan"):
        sample(logits, NAN, None, None, draw_from)
    with pytest.raises(ValueError, match="sample: the logits hold NaN"):
        sample(numpy.full((1, VOCAB), NAN), 0, None, None, draw_from)
    with pytest.raises(ValueError, match="top_k must be an int >= 1, got 1.5"):
        filter_logits(logits, top_k=1.5)
    with pytest.raises(ValueError, match="top_p must be in \\(0, 1\\], got nan"):
        filter_logits(logits, top_p=NAN)
    with pytest.raises(RuntimeError, match="cannot sample: the probabilities are NaN"):
        sample(numpy.array([[0.0, INF]]), 1.0, None, None, draw_from)


# ---------------------------------------------------------------------------- tokenizers


@functools.cache
def _tokenizers():
    from seqlib.tokenizers import CharTokenizer, SentencePieceTokenizer

    return {"char": CharTokenizer("abcdefg"),
            "sentencepiece": SentencePieceTokenizer.train(iterator=["to be or not"] * 20,
                                                          vocab_size=300)}


@given(kind=st.sampled_from(["char", "sentencepiece"]), data=st.data())
def test_decode_refuses_ids_outside_the_vocabulary_naming_the_id(kind, data):
    tokenizer = _tokenizers()[kind]
    size = tokenizer.vocab_size
    bad = data.draw(st.integers(max_value=-1) | st.integers(min_value=size), label="bad id")
    position = data.draw(st.integers(0, 3), label="position")
    ids = [4] * position + [bad]
    forms = ["list", "numpy", "tensor"] if -2**63 <= bad < 2**63 else ["list"]  # int64 or not
    form = data.draw(st.sampled_from(forms), label="form")
    ids = {"list": list, "numpy": numpy.array, "tensor": sl.tensor}[form](ids)
    with pytest.raises(ValueError, match=f"decode: token id {bad} at position {position} is not "
                                         f"in the vocabulary \\[0, {size}\\)"):
        tokenizer.decode(ids)


@given(kind=st.sampled_from(["char", "sentencepiece"]),
       bad=st.sampled_from([1.0, 2.5, NAN, "1", None, True, [1]]))
def test_decode_refuses_ids_that_are_not_ints_naming_them(kind, bad):
    with pytest.raises(TypeError, match=r"decode: token ids must be ints, got .* at position 1"):
        _tokenizers()[kind].decode([4, bad])


def test_decode_takes_ids_as_lists_arrays_tensors_and_numpy_scalars():
    char = _tokenizers()["char"]
    assert char.decode([0, 1]) == char.decode(numpy.array([0, 1])) == "ab"
    assert char.decode(sl.tensor([0, 1])) == char.decode([numpy.int32(0), sl.tensor(1)]) == "ab"
    assert char.decode([]) == ""
    with pytest.raises(TypeError, match="ids must be a sequence of token ids, got 3"):
        char.decode(3)


@pytest.mark.parametrize("topk", [0, -3])
def test_exact_topk_attention_refuses_topk_below_one(topk):
    from seqlib.attention import ExactTopKAttention
    from seqlib.builders import TransformerEncoderBuilder

    with pytest.raises(ValueError, match=f"topk must be an int >= 1, got {topk}"):
        ExactTopKAttention(topk=topk)
    with pytest.raises(ValueError, match=rf"topk: expected Optional\[Int >= 1\], got {topk}"):
        TransformerEncoderBuilder.from_kwargs(attention_type="exact-topk", topk=topk)
