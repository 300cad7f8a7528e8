"""Autograd engine semantics: accumulation, graph freeing, hooks, modes, errors, deep graphs."""

from __future__ import annotations

import gc
import weakref

import numpy
import pytest
from seqlib.core.autograd.function import Function

import seqlib as sl


def test_leaf_gradients_accumulate_across_backward_calls():
    x = sl.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    assert x.grad.tolist() == [3 + 2, 3 + 4]


def test_shared_gradient_arrays_are_not_aliased_between_leaves():
    a = sl.ones(2, requires_grad=True)
    b = sl.ones(2, requires_grad=True)
    (a + b).sum().backward()
    a.grad.mul_(10)
    assert b.grad.tolist() == [1.0, 1.0]


def test_a_tensor_used_twice_gets_the_sum_of_both_paths():
    x = sl.tensor(3.0, requires_grad=True)
    y = x * x + x.exp() * x
    y.backward()
    assert x.grad.item() == pytest.approx(2 * 3 + numpy.exp(3) * 4, rel=1e-6)


def test_gradients_of_a_0d_tensor_summed_over_paths_stay_arrays():
    # NumPy adds two 0-d arrays into a scalar, not an array (found by tests/test_fuzz.py)
    x = sl.tensor(2.0, dtype=sl.float64, requires_grad=True)
    (grad,) = sl.autograd.grad(x * x + x, [x])
    assert type(grad.array) is numpy.ndarray and grad.item() == 5.0
    y = x * x + x
    y.backward()
    assert type(x.grad.array) is numpy.ndarray and x.grad.item() == 5.0


def test_second_backward_through_freed_graph_raises():
    x = sl.ones(2, requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = sl.ones(2, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.clone()
    y.backward()
    numpy.testing.assert_allclose(x.grad.numpy(), 2 * first.numpy())


def test_non_scalar_backward_needs_gradient():
    x = sl.ones(3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        y.backward()
    y.backward(gradient=sl.tensor([1.0, 2.0, 3.0]))
    assert x.grad.tolist() == [2.0, 4.0, 6.0]
    with pytest.raises(RuntimeError, match="mismatch in shape"):
        (x * 2).backward(sl.ones(2))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        sl.ones(2).sum().backward()


def test_non_leaf_grads_are_not_kept_unless_retained():
    x = sl.ones(2, requires_grad=True)
    hidden = x * 2
    kept = x * 3
    kept.retain_grad()
    (hidden * kept).sum().backward()
    with pytest.warns(UserWarning, match="not a leaf"):
        assert hidden.grad is None
    assert kept.grad.tolist() == [2.0, 2.0]
    assert kept.retains_grad and not hidden.retains_grad


def test_saved_tensor_modified_in_place_is_detected():
    x = sl.ones(3, requires_grad=True)
    y = x * 2
    z = y * y  # saves y
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*version 1; "
                                           "expected version 0"):
        z.sum().backward()


def test_in_place_on_leaf_requiring_grad_is_an_error():
    x = sl.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x[0] = 3.0
    with sl.no_grad():
        x.add_(1)  # allowed: what optimizers do
    assert x.tolist() == [2.0, 2.0]


def test_in_place_ops_rebase_history():
    x = sl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    y.mul_(x)  # y = x * x
    y.add_(x, alpha=2)  # y = x * x + 2 x
    y.sum().backward()
    assert x.grad.tolist() == [2 * 1 + 2, 2 * 2 + 2]
    assert y._version[0] == 2


def test_setitem_is_differentiable():
    x = sl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = sl.tensor(5.0, requires_grad=True)
    y = x * 2
    y[1] = v * v
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 2.0]
    assert v.grad.item() == 10.0


def test_in_place_on_a_view_of_a_graph_tensor_reaches_its_base():
    x = sl.ones(2, 2, requires_grad=True)
    y = x * 1
    row = y[0]
    row.mul_(2)  # y's history becomes CopySlices: row 0 through the mul, row 1 unchanged
    assert y.grad_fn.name() == "CopySlices" and y.tolist() == [[2, 2], [1, 1]]
    y.sum().backward()
    assert x.grad.tolist() == [[2, 2], [1, 1]]


def test_in_place_on_a_view_of_a_leaf_requiring_grad_is_refused():
    x = sl.ones(2, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf Variable that requires grad"):
        x[0].mul_(2)


def test_version_counter_is_shared_with_views_and_detach():
    x = sl.zeros(4)
    v = x.view(2, 2)
    d = x.detach()
    x.add_(1)
    assert v._version[0] == d._version[0] == 1
    assert v.tolist() == [[1, 1], [1, 1]]


def test_hooks_see_and_replace_gradients():
    x = sl.ones(2, requires_grad=True)
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.tolist()))
    y = x * 3
    y.register_hook(lambda g: g * 10)
    y.sum().backward()
    assert seen == [[30.0, 30.0]]
    assert x.grad.tolist() == [30.0, 30.0]
    handle.remove()
    (x * 1).sum().backward()
    assert len(seen) == 1
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        sl.ones(1).register_hook(print)


def test_no_grad_enable_grad_and_set_grad_enabled():
    x = sl.ones(2, requires_grad=True)
    with sl.no_grad():
        assert not (x * 2).requires_grad
        with sl.enable_grad():
            assert (x * 2).requires_grad
    assert sl.is_grad_enabled()

    @sl.no_grad()
    def inference(t):
        return t * 2

    assert not inference(x).requires_grad
    with sl.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert sl.is_grad_enabled()
    sl.set_grad_enabled(False)
    assert not sl.is_grad_enabled()
    sl.set_grad_enabled(True)

    @sl.enable_grad()
    def trains(t):
        return t * 2

    with sl.no_grad():
        assert trains(x).requires_grad


def test_inference_mode_is_no_grad_as_context_and_decorator():
    x = sl.ones(2, requires_grad=True)
    with sl.inference_mode():
        y = x * 2
        assert not y.requires_grad and y.grad_fn is None
        assert sl.is_inference_mode_enabled() and not sl.is_grad_enabled()
        with sl.inference_mode(False):  # as PyTorch: recording on again inside
            assert (x * 2).requires_grad and not sl.is_inference_mode_enabled()
        assert sl.is_inference_mode_enabled()
    assert sl.is_grad_enabled() and not sl.is_inference_mode_enabled()
    assert (y * x).requires_grad  # an ordinary tensor: usable by autograd later

    @sl.inference_mode
    def bare(t):
        return t * 2, sl.is_inference_mode_enabled()

    @sl.inference_mode()
    def called(t):
        return bare(t)[0] * 2  # nested and re-entered: the outer mode survives the inner exit

    @sl.autograd.inference_mode(False)
    def records(t):
        return t * 2

    out, flag = bare(x)
    assert not out.requires_grad and flag
    assert not called(x).requires_grad
    with sl.no_grad():
        assert records(x).requires_grad
    assert bare.__name__ == "bare" and sl.is_grad_enabled()


def test_autograd_grad_does_not_touch_dot_grad():
    x = sl.tensor([1.0, 2.0], requires_grad=True)
    w = sl.tensor([3.0, 4.0], requires_grad=True)
    hidden = x * w
    out = (hidden * hidden).sum()
    gx, gh = sl.autograd.grad(out, [x, hidden])
    assert gx.tolist() == [2 * 3 * 3 * 1, 2 * 4 * 4 * 2]
    assert gh.tolist() == [2 * 3, 2 * 8]
    assert x.grad is None and w.grad is None


def test_autograd_grad_unused_inputs():
    x = sl.ones(1, requires_grad=True)
    unused = sl.ones(1, requires_grad=True)
    with pytest.raises(RuntimeError, match="not have been used"):
        sl.autograd.grad((x * 2).sum(), [x, unused])
    gx, gu = sl.autograd.grad((x * 2).sum(), [x, unused], allow_unused=True)
    assert gx.tolist() == [2.0] and gu is None
    with pytest.raises(NotImplementedError, match="double backward"):
        sl.autograd.grad((x * 2).sum(), x, create_graph=True)


def test_backward_with_inputs_only_fills_those():
    a = sl.ones(1, requires_grad=True)
    b = sl.ones(1, requires_grad=True)
    (a * b * 2).sum().backward(inputs=[a])
    assert a.grad.tolist() == [2.0] and b.grad is None


def test_deep_chain_of_ten_thousand_ops_has_no_recursion_limit():
    x = sl.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001**10_000, rel=1e-3)


def test_wide_diamond_graph_gets_every_contribution():
    x = sl.tensor(2.0, requires_grad=True)
    branches = [x * float(i) for i in range(50)]
    total = branches[0]
    for b in branches[1:]:
        total = total + b
    (total * x).backward()
    expected = sum(range(50)) * 2 * 2
    assert x.grad.item() == pytest.approx(expected)


def test_graph_memory_is_released_after_backward():
    x = sl.ones(1000, requires_grad=True)
    y = x.exp()
    node = weakref.ref(y.grad_fn)
    y.sum().backward()
    del y
    gc.collect()
    assert node() is None


def test_custom_function_with_ctx_and_needs_input_grad():
    class Cube(Function):
        @staticmethod
        def forward(ctx, x, scale):
            ctx.save_for_backward(x)
            ctx.scale = scale
            return x**3 * scale

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            assert ctx.needs_input_grad == (True, False)
            return g * 3 * x**2 * ctx.scale, None

    x = sl.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x, 2.0)
    assert y.grad_fn.name() == "CubeBackward"
    y.sum().backward()
    assert x.grad.tolist() == [6.0, 24.0]


def test_function_returning_wrong_gradient_shape_is_reported():
    class Broken(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g[:1]

    x = sl.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="BrokenBackward returned an invalid gradient"):
        Broken.apply(x).sum().backward()


def test_integer_outputs_never_require_grad():
    x = sl.randn(3, 4, requires_grad=True)
    values, indices = x.max(dim=1)
    assert values.requires_grad and not indices.requires_grad
    assert not (x > 0).requires_grad
    assert not x.argmax().requires_grad


def test_detach_and_requires_grad_flags():
    x = sl.ones(2, requires_grad=True)
    y = x * 2
    assert not y.is_leaf and x.is_leaf
    d = y.detach()
    assert d.is_leaf and not d.requires_grad
    with pytest.raises(RuntimeError, match="only change requires_grad flags of leaf"):
        y.requires_grad = False
    y.detach_()
    assert y.is_leaf and not y.requires_grad


def test_grad_setter_checks_shape():
    x = sl.ones(2, requires_grad=True)
    x.grad = sl.zeros(2)
    with pytest.raises(RuntimeError, match="assigned grad has shape"):
        x.grad = sl.zeros(3)
    x.grad = None
    assert x.grad is None


def test_next_functions_describe_the_graph():
    x = sl.ones(2, requires_grad=True)
    y = (x * 2).exp()
    (node, _), = y.grad_fn.next_functions
    assert node.name() == "MulBackward"
    assert node.next_functions[0][0] is x


def test_backward_into_a_node_freed_by_an_earlier_backward_says_so():
    x = sl.ones(2, requires_grad=True)
    shared = x * 1
    (x * shared).sum().backward()  # frees shared's node
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        (x * shared).sum().backward()


def test_grad_mode_is_per_thread():
    """As in PyTorch: no_grad in one thread leaves another recording; new threads record."""
    import threading

    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def worker():
        inside.wait(5)
        x = sl.ones(2, requires_grad=True)
        seen["worker"] = (sl.is_grad_enabled(), (x * 2).requires_grad)
        release.set()

    thread = threading.Thread(target=worker)
    thread.start()
    with sl.no_grad():
        inside.set()
        release.wait(5)
        seen["main"] = sl.is_grad_enabled()
    thread.join(5)
    assert seen == {"worker": (True, True), "main": False}
    assert sl.is_grad_enabled()
