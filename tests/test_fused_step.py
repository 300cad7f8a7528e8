"""Fused recurrent steps are explicit objects that are never stale, and the recurrent twins
(fused or not) equal their parallel models; recurrent attentions own their state format."""

from __future__ import annotations

import copy
import pickle

import numpy
import pytest

import seqlib as sl
from seqlib.builders import RecurrentEncoderBuilder, TransformerEncoderBuilder
from seqlib.masking import TriangularCausalMask
from seqlib.nn import Parameter
from seqlib.recurrent import RecurrentFullAttention, RecurrentLinearAttention, make_mirror
from seqlib.recurrent.transformers import RecurrentTransformerEncoderLayer

SMALL = dict(n_layers=2, n_heads=2, query_dimensions=4, value_dimensions=4,
             feed_forward_dimensions=16, dropout=0.0, attention_dropout=0.0)


def build(builder, dtype=sl.float32, seed=0, **kwargs):
    sl.set_default_dtype(dtype)
    try:
        sl.manual_seed(seed)
        return builder.from_kwargs(**{**SMALL, **kwargs}).get().eval()
    finally:
        sl.set_default_dtype(sl.float32)


def parallel_step(parallel, x):
    """What the parallel model gives at the last of the positions ``x`` ``(N, L, E)``."""
    with sl.no_grad():
        return parallel(x, attn_mask=TriangularCausalMask(x.shape[1]))[:, -1].numpy()


def module_path(model, x, state=None):
    """One step through the modules (gradients recorded, so nothing fuses)."""
    with sl.enable_grad():
        y, state = model(x, state)
    return y.detach().numpy()


# ---------------------------------------------------------------------------- the defect


def test_make_mirror_into_a_twin_that_already_ran_uses_the_new_weights():
    """Issue 16: a twin that had run kept its old weights after make_mirror (0.58 off)."""
    first = build(TransformerEncoderBuilder, seed=1, n_layers=1, attention_type="causal-linear")
    second = build(TransformerEncoderBuilder, seed=2, n_layers=1, attention_type="causal-linear")
    twin = build(RecurrentEncoderBuilder, seed=3, n_layers=1, attention_type="causal-linear")
    x = sl.randn(2, 1, 8, generator=sl.Generator().manual_seed(4))
    make_mirror(first, twin)
    with sl.no_grad():
        before, _ = twin(x[:, 0])
    numpy.testing.assert_allclose(before.numpy(), parallel_step(first, x), rtol=1e-5, atol=1e-5)
    make_mirror(second, twin)
    with sl.no_grad():
        after, _ = twin(x[:, 0])
    expected = parallel_step(second, x)
    assert not numpy.allclose(expected, parallel_step(first, x), atol=1e-3)
    numpy.testing.assert_allclose(after.numpy(), expected, rtol=1e-5, atol=1e-5)
    numpy.testing.assert_allclose(after.numpy(), module_path(twin, x[:, 0]), rtol=1e-6,
                                  atol=1e-6)


# ---------------------------------------------------------------------------- parallel == twin


@pytest.mark.parametrize("dtype, tolerance", [(sl.float32, 1e-5), (sl.float64, 1e-10)])
@pytest.mark.parametrize("attention_type", ["full", "linear", "causal-linear"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_parallel_equals_recurrent_step_by_step(dtype, tolerance, attention_type, fused,
                                                activation):
    """Every recurrent attention, on the fused path (no grad) and the module path. The
    recurrent "linear" is causal linear attention, the twin of the parallel "causal-linear"
    (the parallel "linear" attends to the future)."""
    parallel_type = "causal-linear" if attention_type == "linear" else attention_type
    parallel = build(TransformerEncoderBuilder, dtype, attention_type=parallel_type,
                     activation=activation)
    recurrent = build(RecurrentEncoderBuilder, dtype, seed=5, attention_type=attention_type,
                      activation=activation)
    recurrent.load_state_dict(parallel.state_dict())
    x = sl.randn(3, 7, 8, dtype=dtype)
    expected = parallel(x, attn_mask=TriangularCausalMask(7)).detach().numpy()
    state = None
    with sl.set_grad_enabled(not fused):
        assert recurrent.step_fn().fusable
        for i in range(7):
            assert (recurrent.step_fn()(x[:, i], state) is not None) == fused
            y, state = recurrent(x[:, i], state)
            numpy.testing.assert_allclose(y.detach().numpy(), expected[:, i], rtol=tolerance,
                                          atol=tolerance)


# ---------------------------------------------------------------------------- invalidation


def _other_parallel(dtype=sl.float32):
    return build(TransformerEncoderBuilder, dtype, seed=9, attention_type="causal-linear")


def _new_weight(parameter):
    return Parameter(sl.randn(*parameter.shape, dtype=parameter.dtype,
                              generator=sl.Generator().manual_seed(7)))


CHANGES = {
    "make_mirror": lambda twin: make_mirror(_other_parallel(), twin),
    "load_state_dict": lambda twin: twin.load_state_dict(_other_parallel().state_dict()),
    "to(dtype)": lambda twin: twin.to(sl.float64),
    "train": lambda twin: twin.train(),
    "setattr": lambda twin: setattr(twin.layers[1].linear1, "weight",
                                    _new_weight(twin.layers[1].linear1.weight)),
    "_parameters": lambda twin: twin.layers[1].linear1._parameters.__setitem__(
        "weight", _new_weight(twin.layers[1].linear1.weight)),
    "param.data": lambda twin: setattr(twin.layers[0].norm2.weight, "data",
                                       sl.full((8,), 2.0)),
    "submodule": lambda twin: setattr(twin.layers[0], "norm1", sl.nn.LayerNorm(8, eps=0.5)),
    "attribute": lambda twin: setattr(twin.layers[0].attention.inner_attention, "eps", 10.0),
    "del layer": lambda twin: twin.layers.__delitem__(1),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_held_fused_step_is_invalidated_by(change):
    twin = build(RecurrentEncoderBuilder, attention_type="causal-linear")
    x = sl.randn(2, 8, generator=sl.Generator().manual_seed(3))
    with sl.no_grad():
        step = twin.step_fn()
        before, _ = step(x)
        assert step.valid() and twin.step_fn() is step
        CHANGES[change](twin)
        assert not step.valid()
        assert step(x) is None  # a stale step refuses to run
        x = x.to(twin.layers[0].linear1.weight.dtype)
        if change == "train":
            assert twin.step_fn()(x) is None  # dropout is active now
            twin.eval()
        fresh = twin.step_fn()
        assert fresh is not step and fresh.valid() and fresh.fusable
        after, _ = twin(x)
    if change == "to(dtype)":
        assert after.dtype == sl.float64
    else:
        assert not numpy.allclose(after.numpy(), before.numpy()) or change == "train"
    numpy.testing.assert_allclose(after.numpy(), module_path(twin, x), rtol=1e-6, atol=1e-6)


def test_a_weight_changed_in_place_is_read_without_rebuilding():
    twin = build(RecurrentEncoderBuilder, attention_type="causal-linear")
    x = sl.randn(2, 8)
    with sl.no_grad():
        step = twin.step_fn()
        before, _ = twin(x)
        twin.layers[0].linear1.weight.mul_(3.0)  # an optimizer step, say
        assert step.valid() and twin.step_fn() is step
        after, _ = twin(x)
    assert not numpy.allclose(after.numpy(), before.numpy())
    numpy.testing.assert_allclose(after.numpy(), module_path(twin, x), rtol=1e-6, atol=1e-6)


def test_subclasses_that_change_forward_run_their_own_forward():
    class Doubled(RecurrentTransformerEncoderLayer):
        def forward(self, x, state=None):
            y, state = super().forward(x, state)
            return 2 * y, state

    twin = build(RecurrentEncoderBuilder, attention_type="causal-linear")
    plain = twin.layers[0]
    doubled = Doubled(plain.attention, 8, 16, dropout=0.0).eval()
    doubled.load_state_dict(plain.state_dict())
    twin.layers[0] = doubled
    x = sl.randn(2, 8)
    with sl.no_grad():
        assert not twin.step_fn().fusable
        y, _ = twin(x)
    numpy.testing.assert_allclose(y.numpy(), module_path(twin, x), rtol=1e-6)


def test_copies_and_pickles_of_a_twin_build_their_own_step():
    twin = build(RecurrentEncoderBuilder, attention_type="causal-linear")
    x = sl.randn(2, 8)
    with sl.no_grad():
        original, _ = twin(x)  # holds a fused step now
        for clone in (copy.deepcopy(twin), pickle.loads(pickle.dumps(twin))):
            assert clone.step_fn() is not twin.step_fn()
            clone.layers[0].linear1.weight.mul_(2)
            y, _ = clone(x)
            numpy.testing.assert_allclose(y.numpy(), module_path(clone, x), rtol=1e-6)
            numpy.testing.assert_array_equal(twin(x)[0].numpy(), original.numpy())


# ---------------------------------------------------------------------------- state formats


def _stepped_state(attention, keys, values):
    """The state after stepping ``attention`` through every position (queries irrelevant)."""
    state = None
    for p in range(keys.shape[1]):
        _, state = attention(keys[:, p], keys[:, p], values[:, p], state)
    return state


@pytest.mark.parametrize("attention", [RecurrentLinearAttention(4), RecurrentFullAttention()])
@pytest.mark.parametrize("dtype, tolerance", [(sl.float32, 1e-5), (sl.float64, 1e-10)])
def test_state_from_equals_stepping_position_by_position(attention, dtype, tolerance):
    keys, values = sl.randn(2, 5, 3, 4, dtype=dtype), sl.randn(2, 5, 3, 6, dtype=dtype)
    attention.eval()
    prefilled = attention.state_from(keys, values)
    stepped = _stepped_state(attention, keys, values)
    shapes = attention.state_shapes(2, 3, 4, 6)
    assert len(prefilled) == len(stepped) == len(shapes)
    for a, b in zip(prefilled, stepped):
        numpy.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tolerance,
                                      atol=tolerance)
    with pytest.raises(ValueError, match=r"state must be \[.*another model or another batch"):
        attention(keys[:1, 0], keys[:1, 0], values[:1, 0], prefilled)  # another batch size


def test_the_softmax_cache_must_hold_as_many_keys_as_values():
    attention = RecurrentFullAttention().eval()
    keys, values = sl.randn(1, 4, 2, 3), sl.randn(1, 4, 2, 3)
    state = attention.state_from(keys, values)
    with pytest.raises(ValueError, match=r"keys \(1, 2, \*, 3\), values \(1, 2, \*, 3\)\] .*"
                                         r"got \[\(1, 2, 4, 3\), \(1, 2, 2, 3\)\]"):
        attention(keys[:, 0], keys[:, 0], values[:, 0], [state[0], state[1][:, :, :2]])
