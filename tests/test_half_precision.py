"""float16 is computed right or refused: every op, forward and backward, against float64.

Inputs are chosen so that the results fit float16 while naive intermediates (squares, sums of
squares, normalisers) would not; ops that accumulate compute in float32, as PyTorch's CPU
kernels do. Tolerance: 2e-3 of the largest reference value (float16 keeps 11 bits, 4.9e-4).
"""

from __future__ import annotations

import numpy
import pytest

import seqlib as sl
import seqlib.nn.functional as F
from seqlib.builders import TransformerEncoderBuilder
from seqlib.masking import TriangularCausalMask

TOLERANCE = 2e-3
rng = numpy.random.default_rng(0)
LARGE = rng.uniform(-300, 300, (4, 8))  # squares reach 9e4 > float16's 65,504
POSITIVE = rng.uniform(0.5, 400, (4, 8))
NORMAL = rng.standard_normal((4, 8))
TARGETS = sl.tensor([1, 2, 3, 0])

OPS = {
    "add": (lambda a, b: a + b, [LARGE, LARGE[::-1]]),
    "mul": (lambda a, b: a * b, [NORMAL * 10, NORMAL]),
    "div": (lambda a, b: a / b, [NORMAL, POSITIVE]),
    "pow": (lambda a: a ** 2, [NORMAL * 10]),
    "sqrt": (lambda a: a.sqrt(), [POSITIVE]),
    "exp": (lambda a: a.exp(), [NORMAL]),
    "log": (lambda a: a.log(), [POSITIVE]),
    "tanh": (lambda a: a.tanh(), [NORMAL]),
    "sigmoid": (lambda a: a.sigmoid(), [NORMAL * 5]),
    "relu": (lambda a: F.relu(a), [NORMAL]),
    "gelu": (lambda a: F.gelu(a), [NORMAL * 3]),
    "gelu_tanh": (lambda a: F.gelu(a, approximate="tanh"), [NORMAL * 3]),
    "silu": (lambda a: F.silu(a), [NORMAL * 3]),
    "elu": (lambda a: F.elu(a), [NORMAL * 3]),
    "softmax": (lambda a: F.softmax(a, -1), [NORMAL * 5]),
    "log_softmax": (lambda a: F.log_softmax(a, -1), [LARGE]),
    "logsumexp": (lambda a: a.logsumexp(-1), [LARGE]),
    "layer_norm": (lambda a, w, b: F.layer_norm(a, (8,), w, b),
                   [LARGE, rng.standard_normal(8), rng.standard_normal(8)]),
    "linear": (lambda a, w, b: F.linear(a, w, b),
               [NORMAL * 10, rng.standard_normal((16, 8)), rng.standard_normal(16)]),
    "matmul": (lambda a, b: a @ b, [LARGE, rng.standard_normal((8, 5))]),
    "einsum": (lambda a, b: sl.einsum("ij,jk->ik", a, b), [LARGE, rng.standard_normal((8, 5))]),
    "sum": (lambda a: a.sum(), [LARGE]),
    "mean": (lambda a: a.mean(-1), [LARGE]),
    "var": (lambda a: a.var(-1), [LARGE]),
    "std": (lambda a: a.std(-1), [LARGE]),
    "norm": (lambda a: a.norm(), [LARGE]),
    "cumsum": (lambda a: a.cumsum(-1), [LARGE]),
    "prod": (lambda a: a.prod(-1), [1 + NORMAL / 10]),
    "amax": (lambda a: a.amax(-1), [LARGE]),
    "cross_entropy": (lambda a: F.cross_entropy(a, TARGETS), [LARGE / 10]),
    "nll_loss": (lambda a: F.nll_loss(F.log_softmax(a, -1), TARGETS), [LARGE / 10]),
    "mse_loss": (lambda a, b: F.mse_loss(a, b), [LARGE / 2, LARGE[::-1] / 2]),
    "l1_loss": (lambda a, b: F.l1_loss(a, b), [LARGE, LARGE[::-1]]),
    "bce_with_logits": (lambda a, b: F.binary_cross_entropy_with_logits(a, b),
                        [NORMAL * 5, rng.uniform(0, 1, (4, 8))]),
    "embedding": (lambda w: F.embedding(TARGETS, w), [LARGE]),
    "dropout_eval": (lambda a: F.dropout(a, 0.5, training=False), [LARGE]),
    "transpose_view": (lambda a: a.t().reshape(-1)[3:20], [LARGE]),
    "bmm": (lambda a, b: sl.bmm(a, b), [LARGE.reshape(2, 2, 8), rng.standard_normal((2, 8, 3))]),
    "cumprod": (lambda a: a.cumprod(-1), [1 + NORMAL / 10]),
    "gather": (lambda a: a.gather(1, sl.tensor([[0, 3], [1, 1], [7, 2], [5, 5]])), [LARGE]),
    "sort": (lambda a: a.sort(-1).values, [LARGE]),
    "topk": (lambda a: a.topk(3).values, [LARGE]),
    "repeat_interleave": (lambda a: a.repeat_interleave(2, dim=0), [LARGE]),
    "index_add": (lambda a, b: a.index_add(0, sl.tensor([0, 2]), b), [LARGE, LARGE[:2]]),
    "scatter_add": (lambda a, b: a.scatter_add(1, sl.tensor([[0, 1], [2, 3], [4, 5], [6, 7]]), b),
                    [LARGE, LARGE[:, :2]]),
    "softmax_module_level": (lambda a: sl.softmax(a, -1), [NORMAL * 5]),
}


def _run(fn, arrays, dtype):
    tensors = [sl.tensor(numpy.ascontiguousarray(a), dtype=dtype, requires_grad=True)
               for a in arrays]
    out = fn(*tensors)
    seed = numpy.random.default_rng(1).standard_normal(tuple(out.shape))
    out.backward(sl.tensor(seed, dtype=dtype))
    grads = [t.grad.numpy().astype(numpy.float64) for t in tensors]
    return out.detach().numpy().astype(numpy.float64), grads


def _assert_close(half, reference, what):
    assert numpy.isfinite(half).all(), f"{what}: not finite in float16"
    scale = max(numpy.abs(reference).max(initial=0.0), 1e-3)
    error = numpy.abs(half - reference).max(initial=0.0) / scale
    assert error < TOLERANCE, f"{what}: float16 off by {error:.2e} of the largest value"


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_in_float16_matches_float64(name):
    fn, arrays = OPS[name]
    out64, grads64 = _run(fn, arrays, sl.float64)
    out16, grads16 = _run(fn, arrays, sl.float16)
    _assert_close(out16, out64, f"{name} forward")
    for i, (half, reference) in enumerate(zip(grads16, grads64)):
        _assert_close(half, reference, f"{name} gradient of input {i}")


def test_results_keep_float16():
    x = sl.tensor(LARGE, dtype=sl.float16, requires_grad=True)
    y = F.layer_norm(x, (8,)).sum()
    y.backward()
    assert y.dtype == sl.float16 and x.grad.dtype == sl.float16
    assert x.sum(dtype=sl.float64).dtype == sl.float64


def test_division_gradient_when_the_square_of_the_divisor_overflows():
    a = sl.tensor([1.0], dtype=sl.float16, requires_grad=True)
    b = sl.tensor([300.0], dtype=sl.float16, requires_grad=True)
    (a / b).sum().backward()
    assert b.grad.item() == pytest.approx(-1 / 300 ** 2, rel=5e-3)  # a subnormal
    assert sl.tensor([300.0], dtype=sl.float16).norm().item() == 300.0


def test_causal_linear_encoder_in_float16_matches_float64():
    """The normaliser and the causal product accumulate in float32: Q/K gradients were off by
    60-800% when they ran in float16."""
    sl.manual_seed(0)
    model = TransformerEncoderBuilder.from_kwargs(
        attention_type="causal-linear", n_layers=2, n_heads=2, query_dimensions=16,
        value_dimensions=16, feed_forward_dimensions=64, dropout=0.0,
        activation="gelu").get().eval()
    x = numpy.random.default_rng(2).standard_normal((1, 512, 32))
    seed = numpy.random.default_rng(3).standard_normal((1, 512, 32))
    results = {}
    for dtype in (sl.float64, sl.float16):
        model.to(dtype)
        model.zero_grad()
        inputs = sl.tensor(x, dtype=dtype, requires_grad=True)
        out = model(inputs, attn_mask=TriangularCausalMask(512))
        out.backward(sl.tensor(seed, dtype=dtype))
        results[dtype] = {"output": out.detach().numpy(), "input": inputs.grad.numpy(),
                          **{name: p.grad.numpy() for name, p in model.named_parameters()}}
    for name, reference in results[sl.float64].items():
        half = results[sl.float16][name].astype(numpy.float64)
        scale = numpy.abs(reference).max()
        assert numpy.abs(half - reference).max() / scale < 1e-2, name
