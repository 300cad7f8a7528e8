"""gradcheck catches wrong gradients; to_dot draws the graph."""

from __future__ import annotations

import shutil

import numpy
import pytest
from seqlib.core.autograd.function import Function

import seqlib as sl


class WrongSquare(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x  # should be 2 * x


def test_gradcheck_passes_for_correct_gradients():
    x = sl.randn(3, 2, dtype=sl.float64, requires_grad=True)
    w = sl.randn(2, dtype=sl.float64, requires_grad=True)
    assert sl.gradcheck(lambda a, b: (a * b).tanh(), [x, w])


def test_gradcheck_catches_a_wrong_gradient():
    x = sl.randn(4, dtype=sl.float64, requires_grad=True)
    with pytest.raises(sl.GradcheckError, match="Jacobian mismatch for input 0"):
        sl.gradcheck(WrongSquare.apply, [x])


def test_directional_gradcheck_for_large_inputs():
    x = sl.randn(64, 64, dtype=sl.float64, requires_grad=True)
    assert sl.gradcheck(lambda a: (a @ a).sin(), [x], directions=4)
    with pytest.raises(sl.GradcheckError, match="direction 0"):
        sl.gradcheck(WrongSquare.apply, [x], directions=2)


def test_gradcheck_checks_multiple_outputs_and_rejects_float32():
    x = sl.randn(6, dtype=sl.float64, requires_grad=True)
    assert sl.gradcheck(lambda t: t.split(2), [x])
    with pytest.raises(TypeError, match="float64"):
        sl.gradcheck(lambda t: t * 2, [sl.ones(2, requires_grad=True)])
    with pytest.raises(ValueError, match="no input requires grad"):
        sl.gradcheck(lambda t: t * 2, [sl.ones(2, dtype=sl.float64)])


def test_to_dot_lists_ops_leaves_and_shapes():
    w = sl.randn(3, 2, requires_grad=True)
    x = sl.randn(4, 3)
    y = (x @ w).relu().sum()
    dot = sl.autograd.to_dot(y, params={"weight": w})
    assert dot.startswith("digraph")
    for expected in ("SumBackward", "ReLUBackward", "MatMulBackward", "weight\\n(3, 2)",
                     "output\\n()"):
        assert expected in dot
    assert dot.count("->") == 4  # matmul->relu->sum->output, weight->matmul
    assert "digraph" in sl.autograd.to_dot(sl.ones(2))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_render_writes_a_png(tmp_path):
    x = sl.ones(2, requires_grad=True)
    path = sl.autograd.render((x * 2).sum(), str(tmp_path / "graph.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_render_without_graphviz_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Graphviz 'dot' program"):
        sl.autograd.render(sl.ones(1, requires_grad=True) * 2, str(tmp_path / "g.png"))
    with pytest.raises(ValueError, match="format"):
        sl.autograd.render(sl.ones(1), "x.gif", format="gif")


def test_numpy_reference_for_gradcheck_example():
    x = sl.tensor(numpy.linspace(-1, 1, 5), requires_grad=True)
    (x.exp() * x).sum().backward()
    values = x.detach().numpy()
    numpy.testing.assert_allclose(x.grad.numpy(), numpy.exp(values) * (1 + values))
