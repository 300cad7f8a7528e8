"""Optimizers and schedulers against hand-written float64 references of PyTorch's rules."""

from __future__ import annotations

import math

import numpy
import pytest

import seqlib as sl
from seqlib import nn, optim
from seqlib.optim import lr_scheduler

STEPS = 5


def gradients(shape=(3, 4), seed=0):
    rng = numpy.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(STEPS)]


def run(optimizer_class, kwargs, w0, grads):
    p = nn.Parameter(sl.tensor(w0, dtype=sl.float64))
    opt = optimizer_class([p], **kwargs)
    for g in grads:
        p.grad = sl.tensor(g, dtype=sl.float64)
        opt.step()
    return p.detach().numpy()


def sgd_reference(w, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                  maximize=False):
    w, buffer = w.copy(), None
    for g in grads:
        g = -g if maximize else g
        g = g + weight_decay * w
        if momentum:
            buffer = g.copy() if buffer is None else momentum * buffer + (1 - dampening) * g
            g = g + momentum * buffer if nesterov else buffer
        w = w - lr * g
    return w


def adam_reference(w, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   amsgrad=False, decoupled=False):
    w, m, v, v_max = w.copy(), 0 * w, 0 * w, 0 * w
    for t, g in enumerate(grads, 1):
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        v_max = numpy.maximum(v_max, v)
        second = v_max if amsgrad else v
        denominator = numpy.sqrt(second) / math.sqrt(1 - betas[1] ** t) + eps
        w = w - lr / (1 - betas[0] ** t) * m / denominator
    return w


def rmsprop_reference(w, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                      centered=False):
    w, square, average, buffer = w.copy(), 0 * w, 0 * w, 0 * w
    for g in grads:
        g = g + weight_decay * w
        square = alpha * square + (1 - alpha) * g * g
        average = alpha * average + (1 - alpha) * g
        scale = numpy.sqrt(square - average**2 if centered else square) + eps
        if momentum:
            buffer = momentum * buffer + g / scale
            w = w - lr * buffer
        else:
            w = w - lr * g / scale
    return w


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(lr=0.1, weight_decay=0.1), dict(lr=0.1, momentum=0.5, maximize=True),
])
def test_sgd_trajectory(kwargs):
    w0, grads = numpy.random.default_rng(1).standard_normal((3, 4)), gradients()
    numpy.testing.assert_allclose(run(optim.SGD, kwargs, w0, grads),
                                  sgd_reference(w0, grads, **kwargs), rtol=1e-12)


@pytest.mark.parametrize("cls, kwargs", [
    (optim.Adam, dict(lr=0.01)), (optim.Adam, dict(lr=0.01, betas=(0.8, 0.9), eps=1e-3)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.1)), (optim.Adam, dict(lr=0.01, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01)), (optim.AdamW, dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
])
def test_adam_trajectories(cls, kwargs):
    w0, grads = numpy.random.default_rng(1).standard_normal((3, 4)), gradients()
    expected_kwargs = dict(kwargs)
    if cls is optim.AdamW:
        expected_kwargs.setdefault("weight_decay", 1e-2)
    expected = adam_reference(w0, grads, decoupled=cls is optim.AdamW, **expected_kwargs)
    numpy.testing.assert_allclose(run(cls, kwargs, w0, grads), expected, rtol=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.01), dict(lr=0.01, alpha=0.9, momentum=0.9),
    dict(lr=0.01, centered=True, weight_decay=0.1), dict(lr=0.01, centered=True, momentum=0.5),
])
def test_rmsprop_trajectory(kwargs):
    w0, grads = numpy.random.default_rng(1).standard_normal((3, 4)), gradients()
    numpy.testing.assert_allclose(run(optim.RMSprop, kwargs, w0, grads),
                                  rmsprop_reference(w0, grads, **kwargs), rtol=1e-12)


def test_float32_parameters_stay_float32():
    p = nn.Parameter(sl.ones(3))
    opt = optim.Adam([p], lr=0.1)
    p.grad = sl.ones(3)
    opt.step()
    assert p.dtype == sl.float32 and opt.state[p]["exp_avg"].dtype == numpy.float32


def test_param_groups_and_validation():
    a, b = nn.Parameter(sl.ones(1)), nn.Parameter(sl.ones(1))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9
    a.grad, b.grad = sl.ones(1), sl.ones(1)
    opt.step()
    assert a.item() == pytest.approx(0.9) and b.item() == pytest.approx(0.5)
    c = nn.Parameter(sl.ones(1))
    opt.add_param_group({"params": c, "lr": 0.01})
    assert len(opt.param_groups) == 3
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        optim.SGD([a])
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.Adam(a)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.Adam([a], lr=-1)
    with pytest.raises(ValueError, match="Invalid beta"):
        optim.Adam([a], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([a * 2], lr=0.1)
    assert "Parameter Group 1" in repr(opt)


def test_zero_grad_and_closure():
    p = nn.Parameter(sl.tensor([2.0]))
    opt = optim.SGD([p], lr=0.1)
    p.grad = sl.ones(1)
    opt.zero_grad(set_to_none=False)
    assert p.grad.tolist() == [0.0]
    opt.zero_grad()
    assert p.grad is None

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 4.0
    assert p.item() == pytest.approx(2.0 - 0.1 * 4.0)
    opt.zero_grad()
    opt.step()  # no gradient: nothing happens
    assert p.item() == pytest.approx(1.6)


def test_state_dict_round_trip_continues_identically():
    w0, grads = numpy.random.default_rng(2).standard_normal(4), gradients((4,), 3)
    p = nn.Parameter(sl.tensor(w0))
    opt = optim.Adam([p], lr=0.05, amsgrad=True)
    for g in grads[:2]:
        p.grad = sl.tensor(g)
        opt.step()
    saved = opt.state_dict()
    assert saved["param_groups"][0]["params"] == [0] and saved["state"][0]["step"] == 2
    clone = nn.Parameter(p.detach().clone())
    restored = optim.Adam([clone], lr=0.5)
    restored.load_state_dict(saved)
    assert restored.param_groups[0]["lr"] == 0.05
    for g in grads[2:]:
        for param, o in ((p, opt), (clone, restored)):
            param.grad = sl.tensor(g)
            o.step()
    assert p.equal(clone)
    saved["state"][0]["exp_avg"]._array[:] = 99  # the state dict holds copies
    assert not (opt.state[p]["exp_avg"] == 99).any()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam([{"params": [clone]}, {"params": [nn.Parameter(sl.ones(1))]}]).load_state_dict(
            saved)


# ---- schedulers --------------------------------------------------------------------------
def lrs(make, steps=10, lr=0.5):
    p = nn.Parameter(sl.zeros(1))
    opt = optim.SGD([p], lr=lr)
    scheduler = make(opt)
    seen = []
    for _ in range(steps):
        seen.append(scheduler.get_last_lr()[0])
        assert opt.param_groups[0]["lr"] == seen[-1]
        opt.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("make, formula", [
    (lambda o: lr_scheduler.StepLR(o, 3, 0.5), lambda e: 0.5 * 0.5 ** (e // 3)),
    (lambda o: lr_scheduler.MultiStepLR(o, [2, 5], 0.3),
     lambda e: 0.5 * 0.3 ** ((e >= 2) + (e >= 5))),
    (lambda o: lr_scheduler.ExponentialLR(o, 0.9), lambda e: 0.5 * 0.9**e),
    (lambda o: lr_scheduler.CosineAnnealingLR(o, 5, 0.01),
     lambda e: 0.01 + (0.5 - 0.01) * (1 + math.cos(math.pi * e / 5)) / 2),
    (lambda o: lr_scheduler.LinearLR(o, 0.2, 1.0, 4), lambda e: 0.5 * (0.2 + 0.8 * min(e, 4) / 4)),
    (lambda o: lr_scheduler.LambdaLR(o, lambda e: 1 / (e + 1)), lambda e: 0.5 / (e + 1)),
    (lambda o: lr_scheduler.SequentialLR(
        o, [lr_scheduler.LinearLR(o, 0.1, 1.0, 3), lr_scheduler.ExponentialLR(o, 0.5)], [3]),
     lambda e: 0.5 * (0.1 + 0.9 * e / 3) if e < 3 else 0.5 * 0.5 ** (e - 3)),
])
def test_scheduler_closed_forms(make, formula):
    numpy.testing.assert_allclose(lrs(make), [formula(e) for e in range(10)], rtol=1e-12)


def test_warmup_cosine():
    seen = lrs(lambda o: lr_scheduler.warmup_cosine(o, 4, 10, min_lr_ratio=0.1), steps=12)
    assert seen[:4] == pytest.approx([0.125, 0.25, 0.375, 0.5])
    assert seen[4] == pytest.approx(0.5) and seen[10] == pytest.approx(0.05)
    assert seen[11] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(seen[4:], seen[5:]))
    with pytest.raises(ValueError, match="must exceed"):
        lr_scheduler.warmup_cosine(optim.SGD([nn.Parameter(sl.ones(1))], lr=1), 5, 5)


def test_scheduler_state_dict_resumes():
    def make():
        p = nn.Parameter(sl.zeros(1))
        opt = optim.SGD([p], lr=1.0)
        return opt, lr_scheduler.StepLR(opt, 2, 0.5)

    opt, scheduler = make()
    for _ in range(3):
        scheduler.step()
    state = scheduler.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 3
    opt2, scheduler2 = make()
    scheduler2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.5
    scheduler.step()
    scheduler2.step()
    assert scheduler2.get_last_lr() == scheduler.get_last_lr() == [0.25]
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR(object(), 1)
