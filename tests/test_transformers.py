"""Transformers, recurrent twins and builders: parallel == recurrent step by step."""

from __future__ import annotations

import argparse

import numpy
import pytest

import seqlib as sl
from seqlib.builders import (
    AttentionBuilder,
    RecurrentDecoderBuilder,
    RecurrentEncoderBuilder,
    TransformerDecoderBuilder,
    TransformerEncoderBuilder,
)
from seqlib.events import (
    AttentionEvent,
    EventDispatcher,
    IntermediateOutput,
    QKVEvent,
    event_class,
    layer_name_contains,
)
from seqlib.masking import LengthMask, TriangularCausalMask
from seqlib.recurrent import make_mirror

SMALL = dict(n_layers=2, n_heads=2, query_dimensions=4, value_dimensions=4,
             feed_forward_dimensions=16, dropout=0.0, attention_dropout=0.0)


def build(builder, dtype, **kwargs):
    sl.set_default_dtype(dtype)
    try:
        sl.manual_seed(0)
        return builder.from_kwargs(**{**SMALL, **kwargs}).get().eval()
    finally:
        sl.set_default_dtype(sl.float32)


@pytest.mark.parametrize("dtype, tolerance", [(sl.float32, 1e-5), (sl.float64, 1e-10)])
@pytest.mark.parametrize("attention_type", ["full", "causal-linear"])
@pytest.mark.parametrize("connect", ["load_state_dict", "make_mirror"])
def test_encoder_parallel_equals_recurrent_step_by_step(dtype, tolerance, attention_type,
                                                        connect):
    parallel = build(TransformerEncoderBuilder, dtype, attention_type=attention_type)
    recurrent = build(RecurrentEncoderBuilder, dtype, attention_type=attention_type)
    if connect == "load_state_dict":
        recurrent.load_state_dict(parallel.state_dict())
    else:
        make_mirror(parallel, recurrent)
        assert recurrent.layers[0].linear1.weight is parallel.layers[0].linear1.weight
    x = sl.randn(3, 9, 8, dtype=dtype)
    expected = parallel(x, attn_mask=TriangularCausalMask(9)).detach().numpy()
    state = None
    for i in range(9):
        y, state = recurrent(x[:, i], state)
        numpy.testing.assert_allclose(y.detach().numpy(), expected[:, i], rtol=tolerance,
                                      atol=tolerance)


@pytest.mark.parametrize("dtype, tolerance", [(sl.float32, 1e-5), (sl.float64, 1e-10)])
@pytest.mark.parametrize("self_type, cross_type", [("full", "full"), ("causal-linear", "linear"),
                                                   ("causal-linear", "full")])
def test_decoder_parallel_equals_recurrent_step_by_step(dtype, tolerance, self_type, cross_type):
    kwargs = dict(self_attention_type=self_type, cross_attention_type=cross_type)
    parallel = build(TransformerDecoderBuilder, dtype, **kwargs)
    recurrent = build(RecurrentDecoderBuilder, dtype, **kwargs)
    recurrent.load_state_dict(parallel.state_dict())
    x, memory = sl.randn(2, 6, 8, dtype=dtype), sl.randn(2, 5, 8, dtype=dtype)
    memory_lengths = LengthMask(sl.tensor([5, 3]), 5)
    expected = parallel(x, memory, x_mask=TriangularCausalMask(6),
                        memory_length_mask=memory_lengths).detach().numpy()
    state = None
    for i in range(6):
        y, state = recurrent(x[:, i], memory, memory_lengths, state)
        numpy.testing.assert_allclose(y.detach().numpy(), expected[:, i], rtol=tolerance,
                                      atol=tolerance)


def test_recurrent_states_are_plain_lists_that_can_be_sliced():
    recurrent = build(RecurrentEncoderBuilder, sl.float64, attention_type="causal-linear")
    x = sl.randn(3, 4, 8, dtype=sl.float64)
    state = None
    for i in range(4):
        y, state = recurrent(x[:, i], state)
    S, Z = state[0]
    assert isinstance(state, list) and S.shape == (3, 2, 4, 4) and Z.shape == (3, 2, 4)
    kept = [[s[[0, 2]] for s in layer] for layer in state]  # drop batch row 1
    full_next, _ = recurrent(sl.randn(3, 8, dtype=sl.float64, generator=sl.Generator()
                                      .manual_seed(1)), state)
    part_next, _ = recurrent(sl.randn(3, 8, dtype=sl.float64, generator=sl.Generator()
                                      .manual_seed(1))[[0, 2]], kept)
    numpy.testing.assert_allclose(part_next.detach().numpy(), full_next.detach().numpy()[[0, 2]],
                                  rtol=1e-12)
    with pytest.raises(ValueError, match=r"state must be \[S \(2, 2, 4, 4\).*another batch"):
        recurrent(sl.randn(2, 8, dtype=sl.float64), state)
    with pytest.raises(ValueError, match="one per layer"):
        recurrent(sl.randn(3, 8, dtype=sl.float64), state[:1])


def test_builder_defaults_match_fast_transformers():
    builder = TransformerEncoderBuilder()
    assert (builder.n_layers, builder.n_heads, builder.query_dimensions, builder.value_dimensions,
            builder.feed_forward_dimensions, builder.dropout, builder.activation,
            builder.final_normalization, builder.attention_type) == (
        4, 4, 64, 64, 1024, 0.1, "relu", True, "full")
    model = builder.get()
    assert len(model.layers) == 4 and model.norm is not None
    assert model.layers[0].linear1.weight.shape == (1024, 256)
    assert model.layers[0].attention.inner_attention.softmax_temp is None
    assert model.layers[0].attention.inner_attention.dropout.p == 0.1
    assert TransformerEncoderBuilder.from_kwargs(final_normalization=False).get().norm is None
    linear = TransformerEncoderBuilder.from_kwargs(attention_type="linear").get()
    assert linear.layers[0].attention.inner_attention.feature_map.query_dims == 64
    assert {"causal-linear", "full", "linear", "local", "exact-topk", "conditional-full"} <= set(
        AttentionBuilder().available_attentions)


def test_builder_errors_name_the_parameter_and_choices():
    with pytest.raises(ValueError, match="unknown attention 'lineer' \\(did you mean 'linear'"):
        TransformerEncoderBuilder.from_kwargs(attention_type="lineer")
    with pytest.raises(AttributeError, match="no parameter 'n_layer' \\(did you mean 'n_layers'"):
        TransformerEncoderBuilder.from_kwargs(n_layer=2)
    with pytest.raises(ValueError, match="n_heads: expected Int >= 1, got '4'"):
        TransformerEncoderBuilder.from_kwargs(n_heads="4")
    for name in ("n_layers", "n_heads", "feed_forward_dimensions", "query_dimensions"):
        with pytest.raises(ValueError, match=f"{name}: expected Int >= 1, got 0"):
            TransformerEncoderBuilder.from_kwargs(**{name: 0})
    with pytest.raises(ValueError, match=r"dropout: expected Float in \[0, 1\], got 1.5"):
        RecurrentEncoderBuilder.from_kwargs(dropout=1.5)
    with pytest.raises(ValueError, match="activation: expected Choice"):
        TransformerEncoderBuilder.from_kwargs(activation="tanh")
    with pytest.raises(ValueError, match="attention_dropout: expected Optional\\[Float\\]"):
        TransformerEncoderBuilder.from_kwargs(attention_dropout="high")
    loose = TransformerEncoderBuilder.from_kwargs(strict=False, n_layers=1, learning_rate=3)
    assert loose.n_layers == 1


def test_builder_from_dictionary_namespace_and_forwarding():
    builder = TransformerEncoderBuilder.from_dictionary({"n_layers": 1, "softmax_temp": 0.5})
    assert builder.attention.softmax_temp == 0.5
    assert builder.get().layers[0].attention.inner_attention.softmax_temp == 0.5
    args = argparse.Namespace(n_heads=2, value_dimensions=8, epochs=10)
    assert TransformerEncoderBuilder.from_namespace(args).n_heads == 2
    with pytest.raises(AttributeError, match="'epochs'"):
        TransformerEncoderBuilder.from_namespace(args, strict=True)
    builder.query_dimensions = 16
    assert builder.get().layers[0].attention.query_projection.weight.shape == (64, 256)


def test_parallel_and_recurrent_builders_give_identical_keys_and_shapes():
    for parallel, recurrent, kw in [
        (TransformerEncoderBuilder, RecurrentEncoderBuilder, dict(attention_type="causal-linear")),
        (TransformerDecoderBuilder, RecurrentDecoderBuilder, dict(cross_attention_type="linear")),
    ]:
        a = build(parallel, sl.float32, **kw).state_dict()
        b = build(recurrent, sl.float32, **kw).state_dict()
        assert list(a) == list(b)
        assert all(a[key].shape == b[key].shape for key in a)


def test_fast_transformers_state_dict_names_load_without_remapping():
    names = ["layers.0.attention.query_projection.weight", "layers.0.attention.out_projection.bias",
             "layers.0.linear1.weight", "layers.0.norm1.weight", "layers.1.norm2.bias",
             "norm.weight"]
    encoder = build(TransformerEncoderBuilder, sl.float32)
    state = encoder.state_dict()
    assert all(name in state for name in names)
    foreign = {key: sl.full(tuple(value.shape), 0.5) for key, value in state.items()}
    encoder.load_state_dict(foreign)
    assert encoder.layers[0].linear1.weight.detach().allclose(sl.full((16, 8), 0.5))
    decoder = build(TransformerDecoderBuilder, sl.float32).state_dict()
    for name in ("layers.0.self_attention.query_projection.weight",
                 "layers.0.cross_attention.key_projection.bias", "layers.0.norm3.weight"):
        assert name in decoder


def test_events_fire_only_when_listened_to():
    dispatcher = EventDispatcher()
    model = build(TransformerEncoderBuilder, sl.float32, event_dispatcher=dispatcher)
    seen = []
    dispatcher.listen(AttentionEvent, lambda event: seen.append(event.attention_matrix.shape))
    model(sl.randn(2, 5, 8))
    assert seen == [(2, 2, 5, 5)] * 2
    qkv = []
    only_first = event_class(QKVEvent) & layer_name_contains(model, "layers.0")
    dispatcher.listen(only_first, lambda event: qkv.append(event.queries.shape))
    model(sl.randn(1, 3, 8))
    assert qkv == [(1, 3, 2, 4)] and len(seen) == 4
    outputs = []
    dispatcher.listen(IntermediateOutput, lambda event: outputs.append(event.source))
    model(sl.randn(1, 3, 8))
    assert outputs == list(model.layers)
    dispatcher.clear()
    model(sl.randn(1, 3, 8))
    assert len(seen) == 6 and not dispatcher.listening
    assert EventDispatcher.get("shared") is EventDispatcher.get("shared")
    assert EventDispatcher.get(dispatcher) is dispatcher


def test_encoder_forward_shapes_and_length_masks():
    model = build(TransformerEncoderBuilder, sl.float32)
    x = sl.randn(2, 6, 8)
    assert model(x).shape == (2, 6, 8)
    masked = model(x, length_mask=LengthMask(sl.tensor([6, 3]), 6))
    alone = model(x[1:, :3])
    numpy.testing.assert_allclose(masked[1, :3].detach().numpy(), alone[0].detach().numpy(),
                                  rtol=1e-5, atol=1e-5)


def _module_path_step(model, x, state):
    """One step through the modules (grad enabled, so nothing fuses), detached."""
    y, state = model(x, state)
    return y.detach(), _detach_state(state)


def _detach_state(state):
    if isinstance(state, sl.Tensor):
        return state.detach()
    return [_detach_state(s) for s in state]


def _assert_states_close(a, b, tolerance):
    if isinstance(a, sl.Tensor):
        numpy.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tolerance, atol=tolerance)
        return
    assert len(a) == len(b)
    for x, y in zip(a, b):
        _assert_states_close(x, y, tolerance)


@pytest.mark.parametrize("attention_type", ["causal-linear", "full"])
@pytest.mark.parametrize("dtype, tolerance", [(sl.float32, 1e-5), (sl.float64, 1e-12)])
@pytest.mark.parametrize("batch", [1, 2])
def test_fused_inference_step_equals_the_module_path(attention_type, dtype, tolerance, batch):
    recurrent = build(RecurrentEncoderBuilder, dtype, attention_type=attention_type)
    layer = recurrent.layers[0]
    x = sl.randn(batch, 6, 8, dtype=dtype)
    fused_state = module_state = fused_layer_state = module_layer_state = None
    for i in range(6):
        with sl.no_grad():
            assert recurrent.step_fn().fusable and layer.step_fn().fusable
            kept = fused_state
            kept_copy = None if kept is None else _detach_state([[t.clone() for t in s]
                                                                 for s in kept])
            fused, fused_state = recurrent(x[:, i], fused_state)
            fused_layer, fused_layer_state = layer(x[:, i], fused_layer_state)
            if kept is not None:  # the step made new state arrays; the old ones are intact
                _assert_states_close(kept, kept_copy, 0)
        slow, module_state = _module_path_step(recurrent, x[:, i], module_state)
        slow_layer, module_layer_state = _module_path_step(layer, x[:, i], module_layer_state)
        numpy.testing.assert_allclose(fused.numpy(), slow.numpy(), rtol=tolerance, atol=tolerance)
        _assert_states_close(fused_state, module_state, tolerance)
        numpy.testing.assert_allclose(fused_layer.numpy(), slow_layer.numpy(), rtol=tolerance,
                                      atol=tolerance)
        _assert_states_close(fused_layer_state, module_layer_state, tolerance)


def _fuses(model, x, state=None) -> bool:
    """Whether ``model``'s fused step runs for ``x`` (and gives what ``model`` gives)."""
    fused = model.step_fn()(x, state)
    if fused is None:
        return False
    numpy.testing.assert_array_equal(fused[0].numpy(), model(x, state)[0].numpy())
    return True


def test_fused_step_notices_hooks_modes_listeners_and_changed_weights():
    recurrent = build(RecurrentEncoderBuilder, sl.float64, attention_type="causal-linear")
    x = sl.randn(1, 8, dtype=sl.float64)
    with sl.no_grad():
        assert _fuses(recurrent, x)
        handle = recurrent.layers[1].linear2.register_forward_hook(lambda *args: None)
        assert not _fuses(recurrent, x)  # a hook deep inside
        assert not _fuses(recurrent.layers[1], x)
        handle.remove()
        assert _fuses(recurrent, x)
        recurrent.train()
        assert not _fuses(recurrent, x)
        recurrent.eval()
        dispatcher = recurrent.layers[0].event_dispatcher
        dispatcher.listen(lambda event: True, print)
        full = build(RecurrentEncoderBuilder, sl.float64, attention_type="full")
        assert not _fuses(full, x)  # softmax attention would dispatch its weights
        assert _fuses(recurrent, x)  # linear attention dispatches nothing
        dispatcher.clear()
        assert _fuses(full, x)
        feature_map = recurrent.layers[0].attention.inner_attention.feature_map
        known = feature_map.activation_function
        feature_map.activation_function = abs
        assert not _fuses(recurrent, x)  # a feature map without an array form
        feature_map.activation_function = known
        assert _fuses(recurrent, x)
        before, _ = recurrent(x)
        recurrent.layers[1].linear1.weight.data.mul_(3)  # in place: the same array
        after, _ = recurrent(x)
    reference, _ = _module_path_step(recurrent, x, None)
    assert not numpy.allclose(before.numpy(), after.numpy())
    numpy.testing.assert_allclose(after.numpy(), reference.numpy(), rtol=1e-12)


def test_fused_step_leaves_bad_input_to_the_modules_errors():
    recurrent = build(RecurrentEncoderBuilder, sl.float32, attention_type="causal-linear")
    with sl.no_grad():
        _, state = recurrent(sl.randn(2, 8))
        with pytest.raises(ValueError, match="another model or another batch"):
            recurrent(sl.randn(3, 8), state)
        with pytest.raises(ValueError, match="one per layer"):
            recurrent(sl.randn(2, 8), state[:1])
        with pytest.raises((TypeError, RuntimeError, ValueError), match="float64|dtype|Float"):
            recurrent(sl.randn(2, 8, dtype=sl.float64), state)


def test_fused_step_leaves_mismatched_state_dtypes_to_the_modules():
    recurrent = build(RecurrentEncoderBuilder, sl.float32, attention_type="causal-linear")
    x = sl.randn(2, 8)
    with sl.no_grad():
        _, state = recurrent(x)
        wide = [[t.double() for t in s] for s in state]
        assert recurrent.step_fn()(x, wide) is None
        assert recurrent.step_fn()(x, state) is not None
        with pytest.raises(RuntimeError, match="same dtype"):  # the modules' own error
            recurrent(x, wide)
