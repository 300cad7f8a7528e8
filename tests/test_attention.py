"""Attention modules against NumPy references, and their masking rules."""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl
from seqlib.attention import AttentionLayer, CausalLinearAttention, FullAttention, LinearAttention
from seqlib.masking import FullMask, LengthMask, TriangularCausalMask


def qkv(N=2, L=5, S=6, H=3, E=4, M=5, seed=0):
    rng = numpy.random.default_rng(seed)
    return (rng.standard_normal((N, L, H, E)), rng.standard_normal((N, S, H, E)),
            rng.standard_normal((N, S, H, M)))


def elu1(x):
    return numpy.where(x > 0, x + 1, numpy.exp(x))


def full_reference(q, k, v, allowed, temperature=None):
    """softmax(q k^T / sqrt(E)) v with ``allowed`` (N, L, S) as a mask."""
    temperature = temperature or 1 / numpy.sqrt(q.shape[-1])
    scores = numpy.einsum("nlhe,nshe->nhls", q, k) * temperature
    scores = numpy.where(allowed[:, None], scores, -numpy.inf)
    weights = numpy.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return numpy.einsum("nhls,nshm->nlhm", weights, v)


def linear_reference(q, k, v, allowed):
    """sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j) over allowed j."""
    sim = numpy.einsum("nlhe,nshe->nhls", elu1(q), elu1(k)) * allowed[:, None]
    return numpy.einsum("nhls,nshm->nlhm", sim, v) / (sim.sum(-1)[..., None].transpose(
        0, 2, 1, 3) + 1e-6)


def tensors(*arrays):
    return [sl.tensor(a, requires_grad=True) for a in arrays]


def lengths_mask(lengths, S):
    return numpy.arange(S)[None, :] < numpy.asarray(lengths)[:, None]


def test_full_attention_with_masks():
    q, k, v = qkv()
    attention = FullAttention(attention_dropout=0.0)
    allowed = numpy.ones((2, 5, 6), bool)
    out = attention(*tensors(q, k, v), FullMask(5, 6), LengthMask(sl.tensor([6, 6]), 6),
                    LengthMask(sl.tensor([6, 6]), 6))
    numpy.testing.assert_allclose(out.detach().numpy(), full_reference(q, k, v, allowed),
                                  rtol=1e-10)
    custom = numpy.random.default_rng(1).random((5, 6)) > 0.3
    custom[:, 0] = True
    key_lengths = [6, 4]
    allowed = custom[None] & lengths_mask(key_lengths, 6)[:, None]
    out = attention(*tensors(q, k, v), FullMask(sl.tensor(custom)),
                    LengthMask(sl.tensor([5, 5]), 5), LengthMask(sl.tensor(key_lengths), 6))
    numpy.testing.assert_allclose(out.detach().numpy(), full_reference(q, k, v, allowed),
                                  rtol=1e-10)


def test_full_attention_softmax_temperature_and_dropout():
    q, k, v = qkv(L=3, S=3)
    masks = (FullMask(3), LengthMask(sl.tensor([3, 3]), 3), LengthMask(sl.tensor([3, 3]), 3))
    scaled = FullAttention(softmax_temp=0.3, attention_dropout=0.0)(*tensors(q, k, v), *masks)
    expected = full_reference(q, k, v, numpy.ones((2, 3, 3), bool), temperature=0.3)
    numpy.testing.assert_allclose(scaled.detach().numpy(), expected, rtol=1e-10)
    dropping = FullAttention(attention_dropout=0.5)
    a = dropping(*tensors(q, k, v), *masks)
    dropping.eval()
    assert not a.allclose(dropping(*tensors(q, k, v), *masks))


def test_linear_attention_matches_reference_with_key_lengths():
    q, k, v = qkv()
    key_lengths = [6, 3]
    out = LinearAttention(4)(*tensors(q, k, v), FullMask(5, 6), LengthMask(sl.tensor([5, 5])),
                             LengthMask(sl.tensor(key_lengths), 6))
    allowed = numpy.broadcast_to(lengths_mask(key_lengths, 6)[:, None], (2, 5, 6))
    numpy.testing.assert_allclose(out.detach().numpy(), linear_reference(q, k, v, allowed),
                                  rtol=1e-8)
    with pytest.raises(RuntimeError, match="does not support arbitrary attention masks"):
        LinearAttention(4)(*tensors(q, k, v), TriangularCausalMask(5), None, None)


@pytest.mark.parametrize("S", [5, 3, 8])
def test_causal_linear_attention_matches_reference(S):
    q, k, v = qkv(L=5, S=S)
    out = CausalLinearAttention(4)(*tensors(q, k, v), TriangularCausalMask(5),
                                   LengthMask(sl.tensor([5, 5])), LengthMask(sl.tensor([S, S])))
    padded_k = numpy.zeros((2, 5, 3, 4))
    padded_v = numpy.zeros((2, 5, 3, 5))
    n = min(S, 5)
    padded_k[:, :n], padded_v[:, :n] = k[:, :n], v[:, :n]
    phi_k = elu1(padded_k)
    phi_k[:, n:] = 0  # padded keys contribute nothing
    sim = numpy.einsum("nlhe,nshe->nhls", elu1(q), phi_k) * numpy.tril(numpy.ones((5, 5)))
    expected = numpy.einsum("nhls,nshm->nlhm", sim, padded_v) / (
        sim.sum(-1)[..., None].transpose(0, 2, 1, 3) + 1e-6)
    numpy.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-8, atol=1e-12)


def test_causal_linear_requires_a_triangular_mask_and_gradchecks():
    q, k, v = qkv(N=1, L=4, S=4, H=2, E=2, M=2)
    attention = CausalLinearAttention(2)
    with pytest.raises(RuntimeError, match="lower triangular"):
        attention(*tensors(q, k, v), FullMask(4), None, None)
    masks = (TriangularCausalMask(4), LengthMask(sl.tensor([4])), LengthMask(sl.tensor([4])))
    sl.gradcheck(lambda a, b, c: attention(a, b, c, *masks), tensors(q, k, v))


def test_attention_layer_shapes_defaults_and_mask_checks():
    x = sl.randn(2, 5, 12)
    memory = sl.randn(2, 7, 12)
    layer = AttentionLayer(FullAttention(), 12, 3)
    assert layer.query_projection.weight.shape == (12, 12)
    assert layer(x, memory, memory).shape == (2, 5, 12)
    wide = AttentionLayer(FullAttention(), 12, 3, d_keys=8, d_values=6)
    assert wide.key_projection.weight.shape == (24, 12)
    assert wide.out_projection.weight.shape == (12, 18)
    assert wide(x, x, x).shape == (2, 5, 12)
    with pytest.raises(ValueError, match="key_lengths has shape \\(2, 3\\) but the inputs need "
                                         "\\(2, 5\\)"):
        layer(x, x, x, key_lengths=LengthMask(sl.tensor([3, 3]), max_len=3))
    with pytest.raises(ValueError, match="attn_mask has shape"):
        layer(x, x, x, attn_mask=FullMask(4))


def test_gradcheck_through_full_attention_layer():
    sl.set_default_dtype(sl.float64)
    try:
        layer = AttentionLayer(FullAttention(attention_dropout=0.0), 4, 2)
    finally:
        sl.set_default_dtype(sl.float32)
    x = sl.randn(1, 3, 4, dtype=sl.float64, requires_grad=True)
    mask = TriangularCausalMask(3)
    sl.gradcheck(lambda x, *p: layer(x, x, x, attn_mask=mask), [x, *layer.parameters()],
                 directions=6)


from seqlib.attention import ConditionalFullAttention, ExactTopKAttention, LocalAttention  # noqa: E402
from seqlib.builders import AttentionBuilder, TransformerEncoderBuilder  # noqa: E402


@pytest.mark.parametrize("context", [1, 2, 5, 30])
def test_local_attention_equals_banded_full_attention(context):
    q, k, v = qkv(L=9, S=9, seed=3)
    offsets = numpy.arange(9)[None, :] - numpy.arange(9)[:, None]  # s - l
    band = (offsets >= -(context // 2)) & (offsets < (context + 1) // 2)
    key_lengths = LengthMask(sl.tensor([9, 6]), 9)
    masks = (LengthMask(sl.tensor([9, 9])), key_lengths)
    local = LocalAttention(context, attention_dropout=0.0)(*tensors(q, k, v), FullMask(9), *masks)
    full = FullAttention(attention_dropout=0.0)(*tensors(q, k, v), FullMask(sl.tensor(band)),
                                                *masks)
    attended = (band[None] & lengths_mask([9, 6], 9)[:, None]).any(-1)  # (N, L) rows with keys
    numpy.testing.assert_allclose(local.detach().numpy()[attended],
                                  full.detach().numpy()[attended], rtol=1e-10, atol=1e-12)


def test_local_attention_gradcheck_and_errors():
    q, k, v = qkv(N=1, L=5, S=5, H=1, E=2, M=2, seed=4)
    attention = LocalAttention(3, attention_dropout=0.0)
    masks = (FullMask(5), LengthMask(sl.tensor([5])), LengthMask(sl.tensor([5])))
    sl.gradcheck(lambda a, b, c: attention(a, b, c, *masks), tensors(q, k, v))
    with pytest.raises(ValueError, match="local_context must be >= 1"):
        LocalAttention(0)


def test_exact_topk_attention():
    q, k, v = qkv(L=4, S=6, seed=5)
    masks = (FullMask(4, 6), LengthMask(sl.tensor([4, 4])), LengthMask(sl.tensor([6, 6])))
    everything = ExactTopKAttention(topk=6, attention_dropout=0.0)(*tensors(q, k, v), *masks)
    full = FullAttention(attention_dropout=0.0)(*tensors(q, k, v), *masks)
    numpy.testing.assert_allclose(everything.detach().numpy(), full.detach().numpy(), rtol=1e-10)
    top2 = ExactTopKAttention(topk=2, attention_dropout=0.0)(*tensors(q, k, v), *masks)
    scores = numpy.einsum("nlhe,nshe->nhls", q, k)
    keep = scores >= numpy.sort(scores, -1)[..., -2:-1]
    allowed = keep.transpose(0, 2, 1, 3)  # (N, L, H, S) -> per head masks
    expected = numpy.stack([full_reference(q[:, :, h:h + 1], k[:, :, h:h + 1], v[:, :, h:h + 1],
                                           allowed[:, :, h])[:, :, 0] for h in range(3)], 2)
    numpy.testing.assert_allclose(top2.detach().numpy(), expected, rtol=1e-10)


def test_conditional_full_switches_by_length_and_composes_in_builders():
    builder = AttentionBuilder()
    builder.local_context = 3
    builder.length_limit = 4
    builder.attention_dropout = 0.0
    attention = builder.get("conditional-full:local")
    assert isinstance(attention, ConditionalFullAttention)
    assert isinstance(attention.other_attention, LocalAttention)
    short, long_ = qkv(L=4, S=4, seed=6), qkv(L=7, S=7, seed=6)
    for (q, k, v), expected_type in ((short, FullAttention), (long_, LocalAttention)):
        L = q.shape[1]
        masks = (FullMask(L), LengthMask(sl.tensor([L, L])), LengthMask(sl.tensor([L, L])))
        chosen = expected_type(**({"local_context": 3} if expected_type is LocalAttention
                                  else {}), attention_dropout=0.0)
        numpy.testing.assert_allclose(attention(*tensors(q, k, v), *masks).detach().numpy(),
                                      chosen(*tensors(q, k, v), *masks).detach().numpy(),
                                      rtol=1e-10)
    with pytest.raises(ValueError, match="conditional-full needs"):
        builder.get("conditional-full")
    model = TransformerEncoderBuilder.from_kwargs(attention_type="conditional-full:local",
                                                  local_context=4, n_layers=1).get()
    assert model(sl.randn(1, 6, 256)).shape == (1, 6, 256)


def test_local_attention_event_reports_window_weights():
    from seqlib.events import AttentionEvent, EventDispatcher

    dispatcher = EventDispatcher()
    seen = []
    dispatcher.listen(AttentionEvent, lambda event: seen.append(event.attention_matrix))
    q, k, v = qkv(N=1, L=7, S=7, seed=8)
    LocalAttention(3, attention_dropout=0.0, event_dispatcher=dispatcher)(
        *tensors(q, k, v), FullMask(7), LengthMask(sl.tensor([7])), LengthMask(sl.tensor([7])))
    (weights,) = seen
    assert weights.shape == (1, 3, 7, 3)
    numpy.testing.assert_allclose(weights.detach().numpy().sum(-1), 1.0, rtol=1e-10)
    assert weights[0, 0, 0, 0].item() == 0  # position -1 does not exist
