"""A PyTorch name that seqlib lacks raises an AttributeError that says so and names seqlib's
equivalent; other missing names keep Python's message; hasattr and normal lookups are
untouched."""

from __future__ import annotations

import copy
import pickle
import re

import numpy
import pytest
from seqlib.core import missing
from seqlib.core.pytorch_names import FUNCTIONAL, NN, NN_UTILS, TENSOR, TORCH

import seqlib as sl
import seqlib.nn.functional as F

OWNERS = {"torch": sl, "torch.nn": sl.nn, "torch.nn.functional": F, "torch.nn.utils": sl.nn.utils,
          "torch.Tensor": sl.Tensor}


@pytest.mark.parametrize("get, message", [
    (lambda: sl.fft, "module 'seqlib' has no attribute 'fft': seqlib does not provide "
     "PyTorch's torch.fft$"),
    (lambda: sl.compile, "torch.compile; drop the call: seqlib runs eagerly"),
    (lambda: sl.mm, r"torch.mm; use sl.matmul \(or the @ operator\)"),
    (lambda: sl.nn.Conv2d, "module 'seqlib.nn' has no attribute 'Conv2d': seqlib does not "
     "provide PyTorch's torch.nn.Conv2d$"),
    (lambda: sl.nn.MultiheadAttention, r"use seqlib.attention.AttentionLayer\("
     r"seqlib.attention.FullAttention\(\), d_model, n_heads\)"),
    (lambda: sl.nn.TransformerEncoderLayer, "use seqlib.transformers.TransformerEncoderLayer, "
     "or build a stack with seqlib.builders.TransformerEncoderBuilder"),
    (lambda: sl.nn.GRU, "torch.nn.GRU; use sl.nn.LSTM"),
    (lambda: sl.nn.utils.rnn, "torch.nn.utils.rnn; use the lengths= argument of sl.nn.LSTM"),
    (lambda: F.scaled_dot_product_attention, "use seqlib.attention.FullAttention"),
    (lambda: F.relu_, r"torch.nn.functional.relu_; use relu and assign its result \(seqlib "
     "has it out of place only\\)"),
    (lambda: sl.ones(2).stride, "'Tensor' object has no attribute 'stride': seqlib does not "
     r"provide PyTorch's torch.Tensor.stride; use Tensor.array.strides"),
    (lambda: sl.ones(2).sigmoid_, "torch.Tensor.sigmoid_; use sigmoid and assign its result"),
    (lambda: sl.ones(2).mm, r"torch.Tensor.mm; use Tensor.matmul \(or @\)"),
    (lambda: sl.nn.Parameter(sl.ones(2)).nelement, "'Parameter' object has no attribute "
     "'nelement': seqlib does not provide PyTorch's torch.Tensor.nelement; use Tensor.numel"),
])
def test_pytorch_names_say_so_and_name_the_equivalent(get, message):
    with pytest.raises(AttributeError, match=message):
        get()


@pytest.mark.parametrize("owner, name, text", [
    (sl, "no_such_thing", "module 'seqlib' has no attribute 'no_such_thing'"),
    (sl.nn, "Lstm", "module 'seqlib.nn' has no attribute 'Lstm'"),
    (sl.ones(1), "lenght", "'Tensor' object has no attribute 'lenght'"),
    (sl.ones(1), "__array_priority__", "'Tensor' object has no attribute '__array_priority__'"),
])
def test_other_missing_names_keep_pythons_message(owner, name, text):
    with pytest.raises(AttributeError) as raised:
        getattr(owner, name)
    assert str(raised.value) == text
    assert raised.value.name == name and raised.value.obj is owner  # "Did you mean" reads these


def test_hasattr_and_getattr_with_a_default_still_work():
    tensor = sl.ones(2)
    assert not hasattr(sl, "fft") and not hasattr(sl.nn, "GRU") and not hasattr(tensor, "stride")
    assert getattr(tensor, "stride", None) is None and getattr(F, "conv2d", 3) == 3
    assert hasattr(sl, "inference_mode") and hasattr(tensor, "topk")
    # no __getattr__ hook on Tensor: it would slow every attribute lookup (core/missing.py)
    assert "__getattr__" not in vars(sl.Tensor) and "__getattribute__" not in vars(sl.Tensor)
    with pytest.raises(AttributeError, match="type object 'Tensor' has no attribute 'stride': "
                       "seqlib does not provide PyTorch's torch.Tensor.stride"):
        sl.Tensor.stride
    from seqlib import serialization  # noqa: F401 - submodule imports still resolve

    assert "topk" in dir(tensor) and "stride" not in dir(tensor)  # names that only raise
    assert pickle.loads(pickle.dumps(tensor)).tolist() == [1.0, 1.0]
    assert copy.deepcopy(tensor).tolist() == [1.0, 1.0]
    assert numpy.asarray(tensor).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("namespace", sorted(missing.EQUIVALENTS))
def test_every_equivalent_is_for_a_pytorch_name_seqlib_lacks(namespace):
    names = {"torch": TORCH, "torch.nn": NN, "torch.nn.functional": FUNCTIONAL,
             "torch.nn.utils": NN_UTILS, "torch.Tensor": TENSOR}[namespace]
    for name in missing.EQUIVALENTS[namespace]:
        assert name in names, f"{namespace}.{name} is not a PyTorch name"
        assert not hasattr(OWNERS[namespace], name), f"seqlib has {name} now: drop its entry"


def _resolve(reference: str):
    head, *path = reference.split(".")
    obj = {"sl": sl, "seqlib": sl, "Tensor": sl.Tensor, "Module": sl.nn.Module}[head]
    for part in path:
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("namespace", sorted(missing.EQUIVALENTS))
def test_every_seqlib_name_in_the_equivalents_exists(namespace):
    for hint in missing.EQUIVALENTS[namespace].values():
        for reference in re.findall(r"(?<!')\b(?:sl|seqlib)(?:\.\w+)+", hint):  # not quoted
            _resolve(reference)
        for reference in re.findall(r"\b(?:Tensor|Module)\.\w+", hint):
            _resolve(reference)
