"""``Tensor.to`` and ``Module.to`` read PyTorch's argument forms through one helper."""

from __future__ import annotations

import pytest
from seqlib.core.ops.convert import to_arguments

import seqlib as sl

FORMS = [
    ((sl.float64,), {}, (None, sl.float64)),
    ((), {"dtype": "float64"}, (None, sl.float64)),
    (("cpu",), {}, ("cpu", None)),
    (("cpu", sl.float64), {}, ("cpu", sl.float64)),
    ((), {"device": "cpu", "dtype": "float64"}, ("cpu", sl.float64)),
    ((sl.device("cpu"),), {"dtype": sl.float16}, ("cpu", sl.float16)),
    ((sl.zeros(1, dtype=sl.float64),), {}, ("cpu", sl.float64)),
    ((), {}, (None, None)),
]


@pytest.mark.parametrize("args, kwargs, expected", FORMS)
def test_every_form_gives_a_device_and_a_dtype(args, kwargs, expected):
    device, dtype = to_arguments(args, **kwargs)
    assert (device, dtype) == (None if expected[0] is None else sl.device(expected[0]),
                               expected[1])


@pytest.mark.parametrize("args, kwargs, expected", FORMS)
def test_tensor_and_module_agree(args, kwargs, expected):
    tensor = sl.zeros(2).to(*args, **kwargs)
    module = sl.nn.Linear(2, 2).to(*args, **kwargs)
    assert tensor.dtype == module.weight.dtype == (expected[1] or sl.float32)
    assert tensor.device == module.weight.device == sl.device("cpu")


def test_strings_are_devices_and_a_bad_dtype_names_to():
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda'"):
        sl.nn.Linear(2, 2).to("float64")  # as in PyTorch, a string is a device
    with pytest.raises((TypeError, ValueError), match="to"):
        sl.nn.Linear(2, 2).to(dtype="float99")
