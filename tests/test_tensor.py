"""Tensor basics: creation, dtypes, promotion, devices, conversion, printing, errors."""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl


# ---- creation ----------------------------------------------------------------------------
def test_tensor_from_python_numbers_uses_pytorch_defaults():
    assert sl.tensor([1.0, 2.0]).dtype == sl.float32
    assert sl.tensor([1, 2]).dtype == sl.int64
    assert sl.tensor([True, False]).dtype == sl.bool
    assert sl.tensor(3.5).shape == ()
    assert sl.tensor([[1, 2], [3, 4]], dtype=sl.float64).dtype == sl.float64


def test_tensor_from_numpy_keeps_dtype_and_copies():
    array = numpy.arange(4, dtype=numpy.float64)
    t = sl.tensor(array)
    assert t.dtype == sl.float64
    array[0] = 100
    assert t[0].item() == 0


def test_from_numpy_and_as_tensor_share_memory():
    array = numpy.zeros(3, dtype=numpy.float32)
    shared = sl.from_numpy(array)
    viewed = sl.as_tensor(array)
    array[1] = 7
    assert shared[1].item() == 7 and viewed[1].item() == 7
    with pytest.raises(TypeError, match="numpy.ndarray"):
        sl.from_numpy([1, 2])


def test_tensor_rejects_unconvertible_data():
    with pytest.raises(TypeError, match="could not convert"):
        sl.tensor(["a", "b"])
    with pytest.raises(TypeError, match="unsupported dtype"):
        sl.tensor([1.0], dtype=numpy.complex64)


@pytest.mark.parametrize("make", [sl.zeros, sl.ones, sl.empty])
def test_filled_creation_accepts_varargs_tuple_and_list(make):
    assert make(2, 3).shape == (2, 3)
    assert make((2, 3)).shape == (2, 3)
    assert make([2, 3]).shape == (2, 3)
    assert make(0).shape == (0,)
    assert make(2, dtype=sl.int32).dtype == sl.int32


def test_full_and_like_functions():
    assert sl.full((2, 2), 7).dtype == sl.int64
    assert sl.full((2, 2), 7.0).dtype == sl.float32
    base = sl.ones(3, 2, dtype=sl.float64)
    assert sl.zeros_like(base).dtype == sl.float64
    assert sl.ones_like(base).shape == (3, 2)
    assert sl.full_like(base, 2.5).tolist() == [[2.5, 2.5]] * 3
    assert sl.empty_like(base).shape == (3, 2)
    with pytest.raises(RuntimeError, match="negative dimension"):
        sl.zeros(2, -1)
    with pytest.raises(TypeError, match="sequence of ints"):
        sl.zeros(2.5)


def test_ranges():
    assert sl.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert sl.arange(5).dtype == sl.int64
    assert sl.arange(0, 1, 0.25).dtype == sl.float32
    numpy.testing.assert_allclose(sl.arange(0, 1, 0.25).numpy(), [0, 0.25, 0.5, 0.75])
    numpy.testing.assert_allclose(sl.linspace(0, 1, 5).numpy(), [0, 0.25, 0.5, 0.75, 1])
    assert sl.eye(3).numpy().trace() == 3
    assert sl.eye(2, 3).shape == (2, 3)
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        sl.arange(0, 5, 0)
    with pytest.raises(RuntimeError, match="inconsistent"):
        sl.arange(5, 0, 1)


def test_random_functions_are_reproducible_with_manual_seed():
    sl.manual_seed(42)
    first = [sl.rand(3), sl.randn(3), sl.randint(0, 10, (3,)), sl.randperm(5)]
    sl.manual_seed(42)
    second = [sl.rand(3), sl.randn(3), sl.randint(0, 10, (3,)), sl.randperm(5)]
    for a, b in zip(first, second):
        assert a.equal(b)
    assert first[0].dtype == sl.float32 and first[2].dtype == sl.int64
    assert sorted(first[3].tolist()) == [0, 1, 2, 3, 4]


def test_generator_objects_are_independent_and_restorable():
    g = sl.Generator().manual_seed(3)
    a = sl.randn(4, generator=g)
    state = g.get_state()
    b = sl.randn(4, generator=g)
    g.set_state(state)
    assert sl.randn(4, generator=g).equal(b)
    assert not a.equal(b)
    assert g.initial_seed() == 3
    with pytest.raises(ValueError, match="not a Generator state"):
        g.set_state(sl.tensor([1, 2, 3], dtype=sl.uint8))


def test_random_value_ranges():
    u = sl.rand(10000)
    assert 0 <= u.min().item() and u.max().item() < 1
    r = sl.randint(3, 7, (1000,))
    assert r.min().item() == 3 and r.max().item() == 6
    assert sl.randint(5, (4,)).max().item() < 5
    n = sl.normal(2.0, 0.5, (20000,))
    assert abs(n.mean().item() - 2) < 0.02 and abs(n.std().item() - 0.5) < 0.02
    m = sl.normal(sl.zeros(3), sl.ones(3) * 0.0)
    assert m.tolist() == [0.0, 0.0, 0.0]
    assert sl.rand_like(sl.ones(2, 2, dtype=sl.float64)).dtype == sl.float64
    assert sl.randn_like(sl.ones(2, 5)).shape == (2, 5)
    with pytest.raises(RuntimeError, match="low < high"):
        sl.randint(5, 5, (2,))


# ---- dtypes ------------------------------------------------------------------------------
def test_default_dtype_can_change_and_back():
    assert sl.get_default_dtype() == sl.float32
    sl.set_default_dtype(sl.float64)
    try:
        assert sl.tensor([1.0]).dtype == sl.float64
        assert sl.zeros(1).dtype == sl.float64
    finally:
        sl.set_default_dtype(sl.float32)
    with pytest.raises(TypeError, match="floating"):
        sl.set_default_dtype(sl.int64)


@pytest.mark.parametrize("a_dtype, b_dtype, expected", [
    (sl.float32, sl.float32, sl.float32),
    (sl.float32, sl.float64, sl.float64),
    (sl.float32, sl.int64, sl.float32),  # NumPy alone would give float64
    (sl.float16, sl.int32, sl.float16),
    (sl.int32, sl.int64, sl.int64),
    (sl.bool, sl.int32, sl.int32),
])
def test_binary_promotion_follows_pytorch_categories(a_dtype, b_dtype, expected):
    a, b = sl.ones(2, dtype=a_dtype), sl.ones(2, dtype=b_dtype)
    assert (a + b).dtype == expected
    assert (b * a).dtype == expected


def test_python_scalars_are_weak():
    x = sl.ones(2, dtype=sl.float32)
    assert (x * 2.0).dtype == sl.float32
    assert (2 * x).dtype == sl.float32
    assert (x + numpy.float32(1)).dtype == sl.float32
    i = sl.ones(2, dtype=sl.int64)
    assert (i * 2).dtype == sl.int64
    assert (i * 2.5).dtype == sl.float32
    assert (i / i).dtype == sl.float32
    assert (i // 2).dtype == sl.int64
    assert (sl.tensor([True]) + 1).dtype == sl.int64


def test_integer_division_modes():
    a = sl.tensor([7, -7])
    assert (a // 2).tolist() == [3, -4]
    assert sl.div(a, 2, rounding_mode="trunc").tolist() == [3, -3]
    assert (a % 3).tolist() == [1, 2]
    f = sl.tensor([7.5, -7.5])
    assert sl.div(f, 2, rounding_mode="floor").tolist() == [3.0, -4.0]
    with pytest.raises(ValueError, match="rounding_mode"):
        sl.div(a, 2, rounding_mode="up")


# ---- properties, conversion --------------------------------------------------------------
def test_shape_properties():
    t = sl.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.size() == (2, 3, 4) and t.size(-1) == 4
    assert t.ndim == 3 and t.dim() == 3 and t.numel() == 24 and len(t) == 2
    assert t.element_size() == 4 and t.nbytes == 96
    assert t.device == "cpu" and t.device == sl.device("cpu") and not t.is_cuda
    assert t.is_floating_point() and t.is_contiguous()
    assert not t.transpose(0, 1).is_contiguous()
    assert t.transpose(0, 1).contiguous().is_contiguous()
    with pytest.raises(TypeError, match="0-d"):
        len(sl.tensor(1.0))


def test_item_tolist_and_python_conversions():
    t = sl.tensor([[1.5, 2.0]])
    assert t.tolist() == [[1.5, 2.0]]
    assert sl.tensor([3]).item() == 3
    assert float(sl.tensor(2.5)) == 2.5 and int(sl.tensor(4)) == 4
    assert [1, 2, 3][sl.tensor(1)] == 2
    assert bool(sl.tensor([True]))
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)


def test_numpy_conversion_rules():
    t = sl.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        t.numpy()
    assert isinstance(t.detach().numpy(), numpy.ndarray)
    assert numpy.asarray(sl.ones(2)).shape == (2,)
    # NumPy arrays on the left defer to the tensor
    result = numpy.ones(2, dtype=numpy.float32) + sl.ones(2)
    assert isinstance(result, sl.Tensor)


def test_to_dtype_and_device():
    t = sl.ones(2)
    assert t.to(sl.float64).dtype == sl.float64
    assert t.double().dtype == sl.float64 and t.half().dtype == sl.float16
    assert t.long().dtype == sl.int64 and t.int().dtype == sl.int32 and t.bool().dtype == sl.bool
    assert t.to("cpu") is t
    assert t.cpu() is t
    assert t.to(sl.float32) is t
    assert t.to(sl.ones(1, dtype=sl.float64)).dtype == sl.float64
    assert t.type_as(sl.ones(1, dtype=sl.int32)).dtype == sl.int32
    assert t.to(copy=True) is not t


@pytest.mark.parametrize("dtype, name", [
    (sl.float32, "FloatTensor"), (sl.float64, "DoubleTensor"), (sl.float16, "HalfTensor"),
    (sl.uint8, "ByteTensor"), (sl.int8, "CharTensor"), (sl.int16, "ShortTensor"),
    (sl.int32, "IntTensor"), (sl.int64, "LongTensor"), (sl.bool, "BoolTensor"),
])
def test_type_names_and_converts(dtype, name):
    t = sl.ones(2, dtype=dtype)
    assert t.type() == f"seqlib.{name}"  # PyTorch's names, seqlib's prefix
    assert t.type(f"seqlib.{name}") is t and t.type(dtype) is t
    converted = sl.ones(2).type(f"torch.{name}")  # code ported from PyTorch
    assert converted.dtype == dtype and converted.tolist() == t.tolist()
    assert sl.ones(2).type(dtype=dtype).dtype == dtype


def test_type_conversion_is_differentiable_and_errors_are_clear():
    x = sl.ones(2, requires_grad=True)
    x.type(sl.float64).sum().backward()
    assert x.grad.dtype == sl.float32 and x.grad.tolist() == [1.0, 1.0]
    for bad in ("LongTensor", "float64", "torch.float64", "seqlib.FooTensor"):
        with pytest.raises(ValueError, match=f"type: invalid type '{bad}'; expected a dtype or"):
            x.type(bad)
    with pytest.raises(TypeError, match="type: unsupported dtype complex128"):
        x.type(numpy.complex128)


@pytest.mark.skipif(sl.cuda.is_available(), reason="checks the error without a GPU")
def test_type_with_a_cuda_name_moves_to_the_gpu():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        sl.ones(2).type("torch.cuda.FloatTensor")


def test_devices_parse_and_compare():
    assert sl.device("cuda") == sl.device("cuda:0")
    assert str(sl.device("cuda:1")) == "cuda:1"
    assert repr(sl.device("cpu")) == "device(type='cpu')"
    with pytest.raises(ValueError, match="expected 'cpu', 'cuda'"):
        sl.device("tpu")
    with pytest.raises(ValueError, match="bad device index"):
        sl.device("cuda:x")
    assert sl.cuda.device_count() >= 0
    assert isinstance(sl.cuda.is_available(), bool)


@pytest.mark.skipif(sl.cuda.is_available(), reason="checks the error without a GPU")
def test_moving_to_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        sl.ones(2).cuda()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        sl.zeros(2, device="cuda")


def test_data_is_a_detached_alias():
    t = sl.ones(3, requires_grad=True)
    d = t.data
    assert not d.requires_grad
    d[0] = 5
    assert t[0].item() == 5
    t.data = sl.zeros(3)
    assert t.sum().item() == 0 and t.requires_grad
    assert t.array is t.data.array


def test_new_tensor_helpers_inherit_dtype():
    t = sl.ones(2, dtype=sl.float64)
    assert t.new_zeros(3).dtype == sl.float64
    assert t.new_ones((2, 2)).shape == (2, 2)
    assert t.new_full((2,), 3.0).tolist() == [3.0, 3.0]
    assert t.new_tensor([1, 2]).dtype == sl.float64
    assert t.new_empty(4).shape == (4,)


def test_repr_reads_like_pytorch():
    assert repr(sl.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(sl.tensor([1, 2])) == "tensor([1, 2])"
    assert "dtype=float64" in repr(sl.tensor([1.0], dtype=sl.float64))
    assert "requires_grad=True" in repr(sl.ones(1, requires_grad=True))
    assert "grad_fn=<MulBackward>" in repr(sl.ones(1, requires_grad=True) * 2)
    assert "size=(0, 3)" in repr(sl.zeros(0, 3))
    big = repr(sl.zeros(2000))
    assert "..." in big and len(big) < 200


def test_tensor_constructor():
    t = sl.Tensor([1, 2, 3])
    assert t.shape == (3,)
    assert sl.is_tensor(t) and not sl.is_tensor([1])


def test_iteration_and_hash():
    rows = list(sl.arange(6).view(2, 3))
    assert len(rows) == 2 and rows[1].tolist() == [3, 4, 5]
    t = sl.ones(1)
    assert {t: 1}[t] == 1


def test_comparisons_and_logic():
    a, b = sl.tensor([1, 2, 3]), sl.tensor([3, 2, 1])
    assert (a == b).tolist() == [False, True, False]
    assert (a != b).tolist() == [True, False, True]
    assert (a < b).tolist() == [True, False, False]
    assert (a <= 2).tolist() == [True, True, False]
    assert (a > b).tolist() == [False, False, True] and (a >= 3).tolist() == [False, False, True]
    m = a > 1
    assert (m & (b > 1)).tolist() == [False, True, False]
    assert (m | (b > 2)).tolist() == [True, True, True]
    assert (m ^ True).tolist() == [True, False, False]
    assert (~m).tolist() == [True, False, False]
    assert sl.logical_not(m).tolist() == [True, False, False]
    assert sl.logical_and(m, b > 1).tolist() == [False, True, False]
    assert sl.logical_or(m, b > 2).tolist() == [True, True, True]
    assert sl.tensor([1.0, float("nan"), float("inf")]).isnan().tolist() == [False, True, False]
    assert sl.tensor([1.0, float("inf")]).isinf().tolist() == [False, True]
    assert sl.tensor([1.0, float("inf")]).isfinite().tolist() == [True, False]
    assert sl.allclose(sl.tensor([1.0]), sl.tensor([1.0 + 1e-9]))
    assert sl.isclose(sl.tensor([1.0, 2.0]), sl.tensor([1.0, 2.1])).tolist() == [True, False]
    assert a.equal(sl.tensor([1, 2, 3])) and not a.equal(sl.tensor([1, 2]))
    with pytest.raises(TypeError, match="bool and integer"):
        sl.ones(2) & sl.ones(2)
    with pytest.raises(RuntimeError, match="equal"):
        a == sl.ones(2)


@pytest.mark.parametrize("op, value", [
    (sl.logical_not, True), (lambda t: ~t, True), (lambda t: sl.logical_and(t, t), True),
    (lambda t: sl.logical_or(t, t), True), (sl.isnan, 1.5), (sl.isinf, 1.5), (sl.isfinite, 1.5),
    (sl.sign, -3),
])
def test_logic_and_sign_of_a_0d_tensor_give_a_0d_tensor(op, value):
    # NumPy gives scalars for 0-d arrays; a Tensor around one failed in repr and .numpy()
    # (found by tests/test_fuzz.py)
    out = op(sl.tensor(value))
    assert type(out.array) is numpy.ndarray and out.shape == ()
    assert out.dtype == (sl.int64 if type(value) is int else sl.bool)
    repr(out)


# ---- errors name the op, the argument and the shapes -------------------------------------
def test_broadcast_error_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: .*\(2, 3\).*\(4,\)"):
        sl.ones(2, 3) + sl.ones(4)


def test_matmul_error_names_shapes():
    with pytest.raises(RuntimeError, match=r"matmul: shapes \(2, 3\) and \(4, 5\).*3 != 4"):
        sl.ones(2, 3) @ sl.ones(4, 5)
    with pytest.raises(RuntimeError, match="at least 1 dimension"):
        sl.matmul(sl.tensor(1.0), sl.ones(2))


def test_bad_dims_raise_index_errors():
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of "
                                         r"\[-2, 1\], but got 2\)"):
        sl.ones(2, 3).sum(2)
    with pytest.raises(TypeError, match="dim must be an int"):
        sl.ones(2).sum("x")


def test_requires_grad_on_integer_tensor_is_an_error():
    with pytest.raises(RuntimeError, match="floating point dtype can require gradients"):
        sl.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        sl.ones(2, dtype=sl.int64).requires_grad_()
