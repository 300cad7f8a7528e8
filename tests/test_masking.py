"""Masks: fast-transformers' constructors, views and flags, plus the max_len pitfall fixed."""

from __future__ import annotations

import tracemalloc

import numpy
import pytest

import seqlib as sl
from seqlib.masking import BaseMask, FullMask, LengthMask, TriangularCausalMask


def test_full_mask_constructors():
    assert FullMask(10).shape == (10, 10)
    assert FullMask(10, 5).shape == (10, 5)
    assert FullMask(N=3, M=4).shape == (3, 4)
    assert FullMask(N=3).shape == (3, 3)
    assert FullMask(4).all_ones
    explicit = sl.tensor([[True, False], [True, True]])
    mask = FullMask(explicit)
    assert mask.bool_matrix.tolist() == explicit.tolist()
    explicit[0, 0] = False  # the mask keeps its own copy
    assert mask.bool_matrix[0, 0].item() is True
    assert not mask.all_ones


def test_full_mask_errors():
    with pytest.raises(ValueError, match="expects the mask to be bool"):
        FullMask(sl.ones(2, 2))
    with pytest.raises(ValueError, match="either mask or N"):
        FullMask()
    with pytest.raises(TypeError, match="bool Tensor or an int"):
        FullMask([[True]])
    with pytest.raises(ValueError, match="non-negative"):
        FullMask(-1)


def test_views_of_a_mask():
    mask = FullMask(sl.tensor([[True, False, False], [True, True, False]]))
    assert mask.float_matrix.tolist() == [[1, 0, 0], [1, 1, 0]]
    assert mask.float_matrix.dtype == sl.float32
    additive = mask.additive_matrix.numpy()
    assert additive[0, 0] == 0 and numpy.isneginf(additive[0, 1])
    numpy.testing.assert_array_equal(mask.additive_matrix_finite.numpy(),
                                     numpy.float32([[0, -1e24, -1e24], [0, 0, -1e24]]))
    assert mask.lengths.tolist() == [1, 2]
    assert mask.lengths.dtype == sl.int64
    assert mask.float_matrix is mask.float_matrix  # cached


def test_lengths_of_a_non_prefix_mask_raise():
    mask = FullMask(sl.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="not a length mask"):
        mask.lengths
    assert not mask.lower_triangular


def test_length_mask():
    mask = LengthMask(sl.tensor([2, 3, 1]))
    assert mask.shape == (3, 3) and mask.max_len == 3
    assert mask.bool_matrix.tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0]]
    assert mask.lengths.tolist() == [2, 3, 1]
    assert not mask.all_ones
    assert LengthMask(sl.tensor([4, 4]), max_len=4).all_ones
    padded = LengthMask(sl.tensor([2, 2]), max_len=5)
    assert padded.shape == (2, 5) and not padded.all_ones


def test_length_mask_fixes_the_max_len_pitfall():
    mask = LengthMask(sl.tensor([3, 3]), max_len=3)
    assert mask.all_ones
    mask.check_length(3)
    with pytest.raises(ValueError, match="max_len=3 applied to a sequence of length 5"):
        mask.check_length(5)
    with pytest.raises(ValueError, match="exceeds max_len"):
        LengthMask(sl.tensor([4, 2]), max_len=3)


def test_length_mask_validates_input():
    with pytest.raises(ValueError, match="1-D integer tensor"):
        LengthMask(sl.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        LengthMask(sl.tensor([-1, 2]))
    assert LengthMask([1, 2]).lengths.tolist() == [1, 2]


def test_triangular_causal_mask():
    mask = TriangularCausalMask(4)
    expected = numpy.tril(numpy.ones((4, 4), dtype=bool))
    numpy.testing.assert_array_equal(mask.bool_matrix.numpy(), expected)
    assert mask.lower_triangular and not mask.all_ones
    assert mask.lengths.tolist() == [1, 2, 3, 4]
    assert FullMask(sl.tensor(expected)).lower_triangular
    assert not FullMask(3, 4).lower_triangular
    assert TriangularCausalMask(1).all_ones


def test_base_mask_is_abstract():
    with pytest.raises(NotImplementedError):
        BaseMask().bool_matrix
    assert "FullMask(shape=(2, 3))" == repr(FullMask(2, 3))


def test_causal_mask_is_lazy():
    """Its shape, device and flags need no L x L matrix (65,536^2 booleans would be 4.3 GB)."""
    tracemalloc.start()
    mask = TriangularCausalMask(65536)
    assert mask.shape == (65536, 65536) and mask.lower_triangular and not mask.all_ones
    assert str(mask.device) == "cpu"
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10e6, peak
    assert "bool_matrix" not in mask.__dict__
    assert bool(TriangularCausalMask(3).bool_matrix[1, 1]) and not bool(
        TriangularCausalMask(3).bool_matrix[0, 1])


def _peak_bytes(model, L: int) -> int:
    x = sl.randn(1, L, 16, requires_grad=True)
    tracemalloc.start()
    model(x, attn_mask=TriangularCausalMask(L)).sum().backward()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_causal_linear_encoder_memory_grows_linearly():
    """4x the length costs ~4x the memory (a materialised causal mask would make it 16x)."""
    from seqlib.builders import TransformerEncoderBuilder

    model = TransformerEncoderBuilder.from_kwargs(
        attention_type="causal-linear", n_layers=1, n_heads=2, query_dimensions=8,
        value_dimensions=8, feed_forward_dimensions=32).get().eval()
    short, long = _peak_bytes(model, 2048), _peak_bytes(model, 8192)
    assert long / short < 5.5, (short, long)
