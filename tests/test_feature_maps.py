"""Feature maps: approximation quality, redraw semantics, seeding, use in linear attention."""

from __future__ import annotations

import numpy
import pytest
from helpers import away_from, check_op
from hypothesis import given
from hypothesis.extra.numpy import array_shapes

import seqlib as sl
from seqlib.feature_maps import (
    ActivationFunctionFeatureMap,
    Favor,
    GeneralizedRandomFeatures,
    RandomFourierFeatures,
    SmoothedRandomFourierFeatures,
    elu_feature_map,
    elu_plus_one_into,
    orthogonal_random_matrix,
)


def points(seed=0, n=64, d=8, scale=0.3):
    return sl.tensor(numpy.random.default_rng(seed).standard_normal((n, d)) * scale)


@pytest.mark.parametrize("orthogonal", [False, True])
def test_random_fourier_features_approximate_the_gaussian_kernel(orthogonal):
    x, y = points(1), points(2)
    feature_map = RandomFourierFeatures(8, n_dims=4000, softmax_temp=1.0, orthogonal=orthogonal,
                                        generator=sl.Generator().manual_seed(0))
    feature_map.new_feature_map("cpu")
    approx = (feature_map(x) @ feature_map(y).T).numpy()
    difference = x.numpy()[:, None] - y.numpy()[None]
    exact = numpy.exp(-0.5 * (difference**2).sum(-1))
    assert numpy.abs(approx - exact).mean() < 0.02


def test_favor_approximates_the_softmax_kernel_with_positive_features():
    x, y = points(3), points(4)
    favor = Favor(8, n_dims=4000, softmax_temp=1.0, generator=sl.Generator().manual_seed(0))
    favor.new_feature_map("cpu")
    phi_x, phi_y = favor(x), favor(y)
    assert (phi_x.numpy() > 0).all()
    exact = numpy.exp(x.numpy() @ y.numpy().T)
    relative = numpy.abs((phi_x @ phi_y.T).numpy() - exact) / exact
    assert relative.mean() < 0.05
    stable = Favor(8, n_dims=64, stabilize=True)
    stable.new_feature_map("cpu")
    with pytest.warns(UserWarning, match="stabilize"):
        stable(points(5))
    big = sl.randn(2, 6, 2, 8) * 30
    assert numpy.isfinite(stable(big).numpy()).all()


def test_smoothed_and_generalized_features():
    smoothed = SmoothedRandomFourierFeatures(8, n_dims=33, smoothing=2.0)
    smoothed.new_feature_map("cpu")
    phi = smoothed(points())
    assert phi.shape == (64, 33)
    numpy.testing.assert_allclose(phi.numpy()[:, -1], 2.0)  # as fast-transformers
    generalized = GeneralizedRandomFeatures(8, n_dims=16)
    generalized.new_feature_map("cpu")
    features = generalized(points())
    assert features.shape == (64, 16) and (features.numpy() >= 0).all()


def test_orthogonal_blocks():
    matrix = orthogonal_random_matrix(6, 14, generator=sl.Generator().manual_seed(1))
    for start in range(0, 14, 6):
        block = matrix[:, start:start + 6]
        gram = block.T @ block
        numpy.testing.assert_allclose(gram - numpy.diag(numpy.diag(gram)), 0, atol=1e-10)


def test_redraw_and_deterministic_eval():
    feature_map = RandomFourierFeatures(4, n_dims=8, redraw=2, deterministic_eval=True)
    feature_map.new_feature_map("cpu")
    first = feature_map.omega.clone()
    feature_map.new_feature_map("cpu")
    assert feature_map.omega.equal(first)  # every second call redraws
    feature_map.new_feature_map("cpu")
    assert not feature_map.omega.equal(first)
    feature_map.eval()
    frozen = feature_map.omega.clone()
    for _ in range(3):
        feature_map.new_feature_map("cpu")
    assert feature_map.omega.equal(frozen)
    assert "omega" in feature_map.state_dict()


def test_seeded_draws_are_reproducible():
    def draw():
        sl.manual_seed(11)
        feature_map = Favor(4, n_dims=8)
        feature_map.new_feature_map("cpu")
        return feature_map.omega

    assert draw().equal(draw())


def test_feature_maps_plug_into_linear_attention_builders():
    from seqlib.builders import TransformerEncoderBuilder

    model = TransformerEncoderBuilder.from_kwargs(
        attention_type="causal-linear", n_layers=1, feature_map=Favor.factory(n_dims=32)).get()
    inner = model.layers[0].attention.inner_attention
    assert isinstance(inner.feature_map, Favor) and inner.feature_map.n_dims == 32
    mask = sl.masking.TriangularCausalMask(5)
    assert model(sl.randn(2, 5, 256), attn_mask=mask).shape == (2, 5, 256)
    custom = ActivationFunctionFeatureMap.factory(lambda x: x.relu() + 1e-3)(4)
    assert custom(sl.tensor([-1.0, 2.0])).tolist() == pytest.approx([1e-3, 2.001])
    assert elu_feature_map(4)(sl.tensor([0.0])).tolist() == [1.0]


@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
def test_elu_feature_map_is_elu_plus_one_with_its_gradient(shape):
    from seqlib.feature_maps import _elu_plus_one

    values = numpy.random.default_rng(len(shape)).standard_normal(shape) * 3
    check_op(_elu_plus_one, lambda x: numpy.where(x > 0, x + 1, numpy.exp(x)),
             away_from(values))
    single = sl.tensor(values.astype(numpy.float32))
    out = _elu_plus_one(single)
    assert out.dtype == sl.float32
    numpy.testing.assert_allclose(out.numpy(), (sl.nn.functional.elu(single) + 1).numpy(),
                                  rtol=1e-6, atol=1e-7)
    assert out.numpy().min() > 0  # a valid feature map: positive features
    in_place = values.astype(numpy.float32)
    assert elu_plus_one_into(in_place, in_place) is in_place  # what the fused step does
    numpy.testing.assert_array_equal(in_place, out.numpy())
