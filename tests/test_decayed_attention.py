"""The decayed attentions, "causal-retention" and "causal-gated-linear": NumPy references,
gradchecks, their recurrent twins step by step (fused and not), state_dicts, builders, models."""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl
from seqlib.attention import (
    AttentionLayer,
    CausalLinearAttention,
    CausalRetention,
    GatedCausalLinearAttention,
)
from seqlib.builders import (
    AttentionBuilder,
    RecurrentAttentionBuilder,
    RecurrentEncoderBuilder,
    TransformerEncoderBuilder,
)
from seqlib.masking import FullMask, LengthMask, TriangularCausalMask
from seqlib.models import TransformerLM, TransformerLMConfig
from seqlib.recurrent import (
    RecurrentAttentionLayer,
    RecurrentGatedLinearAttention,
    RecurrentRetention,
    make_mirror,
)
from seqlib.recurrent.step_maths import DecayedAttentionStep, LinearAttentionStep

TYPES = ["causal-retention", "causal-gated-linear"]
SMALL = dict(n_layers=2, n_heads=2, query_dimensions=4, value_dimensions=4,
             feed_forward_dimensions=16, dropout=0.0)


def build(builder, dtype=sl.float32, seed=0, **kwargs):
    sl.set_default_dtype(dtype)
    try:
        sl.manual_seed(seed)
        return builder.from_kwargs(**{**SMALL, **kwargs}).get().eval()
    finally:
        sl.set_default_dtype(sl.float32)


def elu_plus_one(x):
    return numpy.where(x > 0, x + 1, numpy.exp(numpy.minimum(x, 0)))


def retention_reference(q, k, v, gammas, eps=1e-6):
    """``(N, L, H, E)`` inputs, the normalised decayed sums written out with ``gamma^(i-j)``."""
    L = q.shape[1]
    Q, K = elu_plus_one(q), elu_plus_one(k)
    steps = numpy.arange(L)[:, None] - numpy.arange(L)[None, :]
    weights = numpy.where(steps >= 0, numpy.asarray(gammas)[:, None, None] ** steps, 0)  # HLL
    scores = numpy.einsum("nlhe,nshe->nhls", Q, K) * weights
    numerator = numpy.einsum("nhls,nshm->nlhm", scores, v)
    return numerator / (scores.sum(-1).transpose(0, 2, 1)[..., None] + eps)


def gated_reference(q, k, v, weight, bias, temperature):
    """``out_i = LayerNorm(sum_{j<=i} prod_{j<s<=i} alpha_s (q_i . k_j) v_j / sqrt(E))``."""
    L, E = q.shape[1], q.shape[-1]
    logits = k @ weight[0] + bias[0]  # (N, L, H)
    log_alpha = -numpy.logaddexp(0, -logits) / temperature
    b = numpy.cumsum(log_alpha, axis=1).transpose(0, 2, 1)  # (N, H, L)
    weights = numpy.exp(b[..., :, None] - b[..., None, :]) * numpy.tril(numpy.ones((L, L)))
    scores = numpy.einsum("nlhe,nshe->nhls", q, k) / numpy.sqrt(E) * weights
    out = numpy.einsum("nhls,nshm->nlhm", scores, v)
    out = out - out.mean(-1, keepdims=True)
    return out / numpy.sqrt((out ** 2).mean(-1, keepdims=True) + 1e-5)


def _qkv(N=2, L=9, H=3, E=4, M=5, seed=0):
    rng = numpy.random.default_rng(seed)
    return (rng.standard_normal((N, L, H, E)), rng.standard_normal((N, L, H, E)),
            rng.standard_normal((N, L, H, M)))


# ---------------------------------------------------------------------------- references


@pytest.mark.parametrize("decay, gammas", [(None, [1 - 2 ** -5, 1 - 2 ** -6, 1 - 2 ** -7]),
                                           (0.5, [0.5] * 3),
                                           ([0.9, 0.3, 1.0], [0.9, 0.3, 1.0])])
def test_retention_matches_reference(decay, gammas):
    q, k, v = _qkv()
    attention = CausalRetention(4, decay=decay)
    got = attention(*(sl.tensor(x) for x in (q, k, v)), TriangularCausalMask(9), None, None)
    numpy.testing.assert_allclose(got.numpy(), retention_reference(q, k, v, gammas), rtol=1e-10,
                                  atol=1e-12)


def test_retention_with_decay_one_is_causal_linear_attention():
    q, k, v = (sl.tensor(x) for x in _qkv(seed=1))
    mask, lengths = TriangularCausalMask(9), LengthMask(sl.tensor([9, 6]), 9)
    retention = CausalRetention(4, decay=1.0)(q, k, v, mask, None, lengths)
    linear = CausalLinearAttention(4)(q, k, v, mask, None, lengths)
    numpy.testing.assert_allclose(retention.numpy(), linear.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 16.0])
def test_gated_attention_matches_reference(temperature):
    q, k, v = _qkv(seed=2)
    attention = GatedCausalLinearAttention(4, gate_temperature=temperature).to(sl.float64)
    got = attention(*(sl.tensor(x) for x in (q, k, v)), TriangularCausalMask(9), None, None)
    weight = attention.gate_projection.weight.detach().numpy()
    bias = attention.gate_projection.bias.detach().numpy()
    numpy.testing.assert_allclose(got.detach().numpy(), gated_reference(q, k, v, weight, bias,
                                                               temperature),
                                  rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", [CausalRetention, GatedCausalLinearAttention])
def test_padded_keys_change_nothing_before_them_and_masks_must_be_causal(cls):
    q, k, v = (sl.tensor(x) for x in _qkv(seed=3))
    attention = cls(4).to(sl.float64)
    lengths = LengthMask(sl.tensor([9, 6]), 9)
    padded = attention(q, k, v, TriangularCausalMask(9), None, lengths)
    cut = attention(q[1:, :6], k[1:, :6], v[1:, :6], TriangularCausalMask(6), None, None)
    numpy.testing.assert_allclose(padded[1:, :6].detach().numpy(), cut.detach().numpy(),
                                  rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="lower triangular"):
        attention(q, k, v, FullMask(9), None, None)


@pytest.mark.parametrize("cls", [CausalRetention, GatedCausalLinearAttention])
def test_attention_layers_gradcheck(cls):
    sl.set_default_dtype(sl.float64)
    try:
        sl.manual_seed(4)
        layer = AttentionLayer(cls(3), 6, 2)
    finally:
        sl.set_default_dtype(sl.float32)
    x = sl.randn(2, 7, 6, dtype=sl.float64, requires_grad=True)
    parameters = list(layer.parameters())

    def fn(x, *_):
        return layer(x, x, x, attn_mask=TriangularCausalMask(7))

    assert sl.gradcheck(fn, [x, *parameters])


def test_bad_decays_and_temperatures_are_refused_when_built():
    for bad in (0.0, 1.5, [0.5, -1], "0.5", []):
        with pytest.raises(ValueError, match="decay must be a float in \\(0, 1\\]"):
            CausalRetention(4, decay=bad)
    with pytest.raises(ValueError, match="decay lists 2 values but the attention has 3 heads"):
        q, k, v = (sl.tensor(x) for x in _qkv())
        CausalRetention(4, decay=[0.5, 0.5])(q, k, v, TriangularCausalMask(9), None, None)
    with pytest.raises(ValueError, match="gate_temperature must be > 0, got 0"):
        GatedCausalLinearAttention(4, gate_temperature=0)


# ---------------------------------------------------------------------------- twins


@pytest.mark.parametrize("dtype, tolerance", [(sl.float32, 1e-5), (sl.float64, 1e-10)])
@pytest.mark.parametrize("attention_type", TYPES)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("connect", ["load_state_dict", "make_mirror"])
def test_parallel_equals_recurrent_step_by_step(dtype, tolerance, attention_type, fused,
                                                connect):
    """70 positions: past the 64-position chunk, so the chunk-to-chunk decay is exercised."""
    parallel = build(TransformerEncoderBuilder, dtype, attention_type=attention_type)
    recurrent = build(RecurrentEncoderBuilder, dtype, seed=5, attention_type=attention_type)
    if connect == "load_state_dict":
        recurrent.load_state_dict(parallel.state_dict())
    else:
        make_mirror(parallel, recurrent)
    x = sl.randn(3, 70, 8, dtype=dtype)
    expected = parallel(x, attn_mask=TriangularCausalMask(70)).detach().numpy()
    state = None
    with sl.set_grad_enabled(not fused):
        assert recurrent.step_fn().fusable
        for i in range(70):
            assert (recurrent.step_fn()(x[:, i], state) is not None) == fused
            y, state = recurrent(x[:, i], state)
            numpy.testing.assert_allclose(y.detach().numpy(), expected[:, i], rtol=tolerance,
                                          atol=tolerance)


@pytest.mark.parametrize("attention_type", TYPES)
def test_twin_loads_the_parallel_state_dict_by_name(attention_type):
    parallel = build(TransformerEncoderBuilder, attention_type=attention_type)
    recurrent = build(RecurrentEncoderBuilder, seed=1, attention_type=attention_type)
    shapes = {name: tuple(t.shape) for name, t in parallel.state_dict().items()}
    assert shapes == {name: tuple(t.shape) for name, t in recurrent.state_dict().items()}
    if attention_type == "causal-gated-linear":
        assert shapes["layers.0.attention.inner_attention.gate_projection.weight"] == (1, 4)
        assert shapes["layers.1.attention.inner_attention.gate_projection.bias"] == (1,)
    recurrent.load_state_dict(parallel.state_dict())  # strict


@pytest.mark.parametrize("attention_type", TYPES)
def test_gradients_through_the_twin_equal_the_parallel_ones(attention_type):
    """Training on the twin (the module path, gate gradients included) gives the parallel
    model's gradients."""
    parallel = build(TransformerEncoderBuilder, sl.float64, attention_type=attention_type)
    recurrent = build(RecurrentEncoderBuilder, sl.float64, attention_type=attention_type)
    make_mirror(parallel, recurrent)
    x = sl.randn(2, 11, 8, dtype=sl.float64)
    weights = sl.randn(2, 11, 8, dtype=sl.float64)
    (parallel(x, attn_mask=TriangularCausalMask(11)) * weights).sum().backward()
    expected = {name: p.grad.numpy().copy() for name, p in parallel.named_parameters()}
    parallel.zero_grad()
    state, total = None, 0
    for i in range(11):
        y, state = recurrent(x[:, i], state)
        total = total + (y * weights[:, i]).sum()
    total.backward()
    for name, p in recurrent.named_parameters():
        numpy.testing.assert_allclose(p.grad.numpy(), expected[name], rtol=1e-9, atol=1e-11,
                                      err_msg=name)


def _stepped_state(attention, keys, values):
    state = None
    for p in range(keys.shape[1]):
        _, state = attention(keys[:, p], keys[:, p], values[:, p], state)
    return state


@pytest.mark.parametrize("cls", [RecurrentRetention, RecurrentGatedLinearAttention])
@pytest.mark.parametrize("dtype, tolerance", [(sl.float32, 1e-5), (sl.float64, 1e-10)])
def test_state_from_equals_stepping_position_by_position(cls, dtype, tolerance):
    sl.manual_seed(6)
    attention = cls(4).to(dtype).eval()
    keys, values = sl.randn(2, 70, 3, 4, dtype=dtype), sl.randn(2, 70, 3, 6, dtype=dtype)
    prefilled = attention.state_from(keys, values)
    stepped = _stepped_state(attention, keys, values)
    shapes = attention.state_shapes(2, 3, 4, 6)
    assert len(prefilled) == len(stepped) == len(shapes)
    for a, b, shape in zip(prefilled, stepped, shapes.values()):
        assert tuple(a.shape) == shape
        scale = 1 + numpy.abs(b.detach().numpy()).max()
        numpy.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tolerance,
                                      atol=tolerance * scale)
    with pytest.raises(ValueError, match=r"state must be \[.*another model or another batch"):
        attention(keys[:1, 0], keys[:1, 0], values[:1, 0], prefilled)  # another batch size


@pytest.mark.parametrize("with_state", [False, True])
def test_step_functions_gradcheck(with_state):
    generator = sl.Generator().manual_seed(7)

    def leaf(*shape, positive=False):
        x = sl.randn(*shape, dtype=sl.float64, generator=generator)
        return (x.abs() + 0.5 if positive else x).requires_grad_()

    q, k, v = leaf(2, 3, 4), leaf(2, 3, 4), leaf(2, 3, 5)
    S = leaf(2, 3, 4, 5) if with_state else None
    log_decay = leaf(2, 3)
    assert sl.gradcheck(lambda q, k, v, a, *S: DecayedAttentionStep.apply(
        q, k, v, S[0] if S else None, a), [q, k, v, log_decay, *([S] if with_state else [])])
    Q, K = leaf(2, 3, 4, positive=True), leaf(2, 3, 4, positive=True)
    Z = leaf(2, 3, 4, positive=True) if with_state else None
    decay = numpy.array([0.5, 0.9, 1.0])
    states = [S, Z] if with_state else []
    assert sl.gradcheck(lambda Q, K, v, *s: LinearAttentionStep.apply(
        Q, K, v, *(s or (None, None)), 1e-6, decay), [Q, K, v, *states])


# ---------------------------------------------------------------------------- builders


def test_builders_accept_the_new_types_with_their_parameters():
    retention = AttentionBuilder.from_kwargs(query_dimensions=8, decay=[0.9, 0.8]).get(
        "causal-retention")
    assert isinstance(retention, CausalRetention) and retention.decay == (0.9, 0.8)
    gated = RecurrentAttentionBuilder.from_kwargs(query_dimensions=8, gate_temperature=4.0).get(
        "causal-gated-linear")
    assert isinstance(gated, RecurrentGatedLinearAttention) and gated.gate_temperature == 4.0
    model = build(RecurrentEncoderBuilder, attention_type="causal-retention", decay=0.5)
    assert isinstance(model.layers[0].attention, RecurrentAttentionLayer)
    assert model.layers[1].attention.inner_attention.decay == 0.5


def test_builder_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"unknown attention 'causal-retentoin' \(did you mean "
                                         r"'causal-retention'\?\); available: \[.*"
                                         r"'causal-gated-linear'.*'causal-retention'"):
        TransformerEncoderBuilder.from_kwargs(attention_type="causal-retentoin")
    with pytest.raises(ValueError, match=r"unknown recurrent attention 'gated'.*available: "
                                         r"\[.*'causal-gated-linear'"):
        RecurrentEncoderBuilder.from_kwargs(attention_type="gated")
    with pytest.raises(ValueError, match=r"decay: expected Optional\[Float in \(0, 1\] or a "
                                         r"list of them, one per head\], got 2"):
        TransformerEncoderBuilder.from_kwargs(decay=2)
    with pytest.raises(ValueError, match=r"gate_temperature: expected Optional\[Float\]"):
        TransformerEncoderBuilder.from_kwargs(gate_temperature="hot")


# ---------------------------------------------------------------------------- models


@pytest.mark.parametrize("attention_type", TYPES)
def test_language_model_twin_and_prefill(attention_type):
    config = TransformerLMConfig(20, d_model=8, n_layers=2, n_heads=2, dropout=0.0,
                                 attention_type=attention_type)
    sl.set_default_dtype(sl.float64)
    try:
        model = TransformerLM(config).eval()
    finally:
        sl.set_default_dtype(sl.float32)
    tokens = sl.randint(0, 20, (2, 9))
    recurrent = model.recurrent()
    with sl.no_grad():
        logits, _ = model(tokens)
        state = model.prefill(tokens[:, :6])
        after_prefill, _ = recurrent(tokens[:, 6], state)
        stepwise = None
        for t in range(9):
            step, stepwise = recurrent(tokens[:, t], stepwise)
            numpy.testing.assert_allclose(step.numpy(), logits[:, t].numpy(), rtol=1e-10,
                                          atol=1e-10)
            if t == 6:
                numpy.testing.assert_allclose(after_prefill.numpy(), step.numpy(), rtol=1e-10,
                                              atol=1e-10)


# ---------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("attention_type", TYPES)
def test_layers_on_cuda_equal_the_cpu(attention_type):
    cpu = build(TransformerEncoderBuilder, attention_type=attention_type)
    gpu = build(TransformerEncoderBuilder, seed=1, attention_type=attention_type).to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = sl.randn(2, 300, 8)
    mask = TriangularCausalMask(300)
    expected = cpu(x, attn_mask=mask)
    got = gpu(x.to("cuda"), attn_mask=TriangularCausalMask(300, device="cuda"))
    numpy.testing.assert_allclose(got.cpu().detach().numpy(), expected.detach().numpy(),
                                  rtol=1e-4, atol=1e-4)
    recurrent = build(RecurrentEncoderBuilder, attention_type=attention_type).to("cuda")
    recurrent.load_state_dict(cpu.state_dict())
    state = None
    with sl.no_grad():
        for i in range(5):
            y, state = recurrent(x[:, i].to("cuda"), state)
            numpy.testing.assert_allclose(y.cpu().numpy(), expected[:, i].detach().numpy(),
                                          rtol=1e-4, atol=1e-4)
