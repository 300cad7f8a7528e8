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
    # as PyTorch: zeroed in place (the same tensor), taken out of autograd
    grad = sl.ones(1, requires_grad=True)
    p.grad = grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad and grad.tolist() == [0.0] and not grad.requires_grad

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


# ---- PyTorch's implementation switches: accepted, stored, no effect on the update ----------
IMPLEMENTATION_OPTIONS = {  # torch 2.13's option names and defaults, per optimizer
    optim.SGD: dict(foreach=None, differentiable=False, fused=None),
    optim.Adam: dict(foreach=None, capturable=False, differentiable=False, fused=None),
    optim.AdamW: dict(foreach=None, capturable=False, differentiable=False, fused=None),
    optim.RMSprop: dict(foreach=None, capturable=False, differentiable=False),
}


@pytest.mark.parametrize("cls", list(IMPLEMENTATION_OPTIONS))
def test_implementation_options_are_stored_and_change_nothing(cls):
    defaults = IMPLEMENTATION_OPTIONS[cls]
    a = nn.Parameter(sl.zeros(1))
    opt = cls([a], lr=0.1)
    assert {k: opt.defaults[k] for k in defaults} == defaults
    assert {k: opt.param_groups[0][k] for k in defaults} == defaults
    w0, grads = numpy.random.default_rng(1).standard_normal((3, 4)), gradients()
    kwargs = dict(lr=0.01, momentum=0.9) if cls in (optim.SGD, optim.RMSprop) else dict(lr=0.01)
    plain = run(cls, kwargs, w0, grads)
    switched = [dict(foreach=True), dict(foreach=False)]
    if "fused" in defaults:
        switched.append(dict(fused=True))  # torch 2.13 runs fused=True on a CPU too
    if "capturable" in defaults:
        switched.append(dict(capturable=True, foreach=False))
    for options in switched:
        numpy.testing.assert_array_equal(run(cls, {**kwargs, **options}, w0, grads), plain)
    # the options travel with the groups through state_dict, as in PyTorch
    chosen = {name: True for name in ("fused", "capturable") if name in defaults}
    saved = cls([nn.Parameter(sl.zeros(1))], lr=0.1, foreach=not chosen, **chosen).state_dict()
    fresh = cls([nn.Parameter(sl.zeros(1))], lr=0.1)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["foreach"] is (not chosen)
    assert all(fresh.param_groups[0][name] is True for name in chosen)
    # a state dict saved before these options existed leaves the optimizer's own values
    old = {"state": {}, "param_groups": [{k: v for k, v in saved["param_groups"][0].items()
                                          if k not in defaults}]}
    fresh = cls([nn.Parameter(sl.zeros(1))], lr=0.1, foreach=True)
    fresh.load_state_dict(old)
    assert fresh.param_groups[0]["foreach"] is True


@pytest.mark.parametrize("cls", list(IMPLEMENTATION_OPTIONS))
def test_implementation_options_are_checked_as_torch_checks_them(cls):
    a = nn.Parameter(sl.zeros(1))
    with pytest.raises(NotImplementedError, match="differentiable=True is not supported"):
        cls([a], lr=0.1, differentiable=True)
    if "fused" in IMPLEMENTATION_OPTIONS[cls]:
        with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
            cls([a], lr=0.1, fused=True, foreach=True)
        with pytest.raises(RuntimeError, match="`fused` does not support `differentiable`"):
            cls([a], lr=0.1, fused=True, differentiable=True)
    else:
        with pytest.raises(TypeError, match="fused"):  # as in torch: RMSprop has no fused
            cls([a], lr=0.1, fused=True)
    if cls is optim.SGD:
        with pytest.raises(TypeError, match="capturable"):
            cls([a], lr=0.1, capturable=False)
    if cls is not optim.RMSprop:  # keyword-only after the numeric options, as in torch
        with pytest.raises(TypeError):
            cls([a], 0.1, 0.9, 0, 0, False, True)


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
    (lambda o: lr_scheduler.ConstantLR(o), lambda e: 0.5 / 3 if e < 5 else 0.5),
    (lambda o: lr_scheduler.ConstantLR(o, 0.25, 4), lambda e: 0.125 if e < 4 else 0.5),
    (lambda o: lr_scheduler.ConstantLR(o, 1.0, 4), lambda e: 0.5),
    (lambda o: lr_scheduler.SequentialLR(  # PyTorch's documented example, shortened
        o, [lr_scheduler.ConstantLR(o, 0.1, 4), lr_scheduler.ExponentialLR(o, 0.9)], [4]),
     lambda e: 0.05 if e < 4 else 0.5 * 0.9 ** (e - 4)),
    (lambda o: lr_scheduler.SequentialLR(
        o, [lr_scheduler.ExponentialLR(o, 0.9), lr_scheduler.ConstantLR(o, 0.2, 3)], [4]),
     lambda e: 0.5 * 0.9**e if e < 4 else (0.1 if e < 7 else 0.5)),
])
def test_scheduler_closed_forms(make, formula):
    numpy.testing.assert_allclose(lrs(make), [formula(e) for e in range(10)], rtol=1e-12)


@pytest.mark.parametrize("start, end", [(0.5, 1.0), (1.0, 0.25)])
def test_linear_lr_with_no_iterations_stays_at_start_factor(start, end):
    # PyTorch: epoch 0 scales by start_factor; later steps are past total_iters and keep it
    assert lrs(lambda o: lr_scheduler.LinearLR(o, start, end, total_iters=0), steps=4) == [
        0.5 * start] * 4


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


# ---- OneCycleLR, CosineAnnealingWarmRestarts, ConstantLR, ReduceLROnPlateau ----------------
# Reference sequences printed by torch 2.13 (lr_scheduler of the same name, same arguments).
ONE_CYCLE_COS_LR = [  # SGD(lr=0.1, momentum=0.9), OneCycleLR(max_lr=1.0, total_steps=30)
    0.04, 0.0765378243945825, 0.180588745030457, 0.336311952464757, 0.52, 0.703688047535243,
    0.859411254969543, 0.963462175605418, 1, 0.994415435450912, 0.977786491747459,
    0.950484632013474, 0.913119734680449, 0.866526469811169, 0.811745653949763, 0.750001,
    0.682671781501149, 0.611262021936289, 0.537366897333025, 0.462637102666975, 0.388741978063711,
    0.317332218498851, 0.250003, 0.188258346050237, 0.133477530188831, 0.0868842653195513,
    0.0495193679865263, 0.0222175082525412, 0.00558856454908819, 4e-06, 0.00558856454908819,
]
ONE_CYCLE_COS_MOMENTUM = [
    0.95, 0.946193976625564, 0.935355339059327, 0.919134171618254, 0.9, 0.880865828381745,
    0.864644660940673, 0.853806023374436, 0.85, 0.850558458688744, 0.852221359710693,
    0.854951556604879, 0.8586880612842, 0.863347406408509, 0.868825509907063, 0.875,
    0.88173294878168, 0.888873953302184, 0.896263495320679, 0.903736504679321, 0.911126046697816,
    0.91826705121832, 0.925, 0.931174490092937, 0.936652593591491, 0.9413119387158,
    0.945048443395121, 0.947778640289307, 0.949441541311256, 0.95, 0.949441541311256,
]
ONE_CYCLE_LINEAR_3_LR = [  # Adam, OneCycleLR(max_lr=[0.5, 2.0], epochs=5, steps_per_epoch=6,
    # anneal_strategy="linear", three_phase=True, pct_start=0.25); the first group's lr
    0.02, 0.0938461538461539, 0.167692307692308, 0.241538461538462, 0.315384615384615,
    0.389230769230769, 0.463076923076923, 0.463076923076923, 0.389230769230769, 0.315384615384615,
    0.241538461538462, 0.167692307692308, 0.0938461538461539, 0.02, 0.018750125, 0.01750025,
    0.016250375, 0.0150005, 0.013750625, 0.01250075, 0.011250875, 0.010001, 0.008751125,
    0.00750125, 0.006251375, 0.0050015, 0.003751625, 0.00250175, 0.001251875, 1.99999999999853e-06,
    -0.001247875,
]
ONE_CYCLE_LINEAR_3_BETA1 = [
    0.95, 0.934615384615385, 0.919230769230769, 0.903846153846154, 0.888461538461538,
    0.873076923076923, 0.857692307692308, 0.857692307692308, 0.873076923076923, 0.888461538461538,
    0.903846153846154, 0.919230769230769, 0.934615384615385, *[0.95] * 18,
]
WARM_RESTARTS_FRACTIONAL = [  # SGD(lr=0.1), CosineAnnealingWarmRestarts(T_0=2, T_mult=2,
    # eta_min=0.001), step(i / 4) for i = 1..59 after creation
    0.1, 0.0962320368593087, 0.0855017856687341, 0.069442829902072, 0.0505, 0.0315571700979281,
    0.0154982143312659, 0.00476796314069131, 0.1, 0.0990488713799599, 0.0962320368593087,
    0.091657745808976, 0.0855017856687341, 0.0780007265344703, 0.069442829902072,
    0.0601569709397984, 0.0505, 0.0408430290602017, 0.0315571700979281, 0.0229992734655297,
    0.0154982143312659, 0.00934225419102401, 0.00476796314069131, 0.00195112862004009, 0.1,
    0.0997616439702737, 0.0990488713799599, 0.0978685466187443, 0.0962320368593087,
    0.0941551025852436, 0.091657745808976, 0.0887640174414555, 0.0855017856687341,
    0.0819024675661005, 0.0780007265344703, 0.0738341384728869, 0.069442829902072,
    0.0648690915240959, 0.0601569709397984, 0.0553518484463133, 0.0505, 0.0456481515536867,
    0.0408430290602017, 0.0361309084759041, 0.0315571700979281, 0.0271658615271131,
    0.0229992734655297, 0.0190975324338996, 0.0154982143312659, 0.0122359825585445,
    0.00934225419102401, 0.00684489741475643, 0.00476796314069131, 0.00313145338125566,
    0.00195112862004009, 0.00123835602972626, 0.1, 0.099940375082156, 0.0997616439702737,
    0.0994642372432567,
]
WARM_RESTARTS_INTERLEAVED = [  # CosineAnnealingWarmRestarts(T_0=4, T_mult=2) from lr 0.1
    0.0853553390593274, 0.05, 0.0308658283817455, 0.00380602337443566, 0.0990392640201615,
    0.0990392640201615, 0.0961939766255643, 0.0915734806151273, 0.0853553390593274,
    0.0961939766255643, 0.0691341716182545,
]
PLATEAU_METRICS = [1.0, 0.9, 0.95, 0.95, 0.95, 0.89, 0.891, 0.9, 0.9, 0.9, 0.9] + [0.8] * 19
PLATEAU_CASES = [  # (kwargs, metric sign, torch 2.13's lr of the first group before each step)
    (dict(patience=2), 1, [
        0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001,
        0.0001, 0.0001, 0.0001, 1e-05, 1e-05, 1e-05, 1e-06, 1e-06, 1e-06, 1e-07, 1e-07, 1e-07,
        1e-08, 1e-08, 1e-08]),
    (dict(factor=0.5, patience=1, cooldown=2, min_lr=[0.02, 0.001]), 1, [
        0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025,
        *[0.02] * 16]),
    (dict(patience=0, threshold=0.05, threshold_mode="abs", factor=0.3, min_lr=1e-3), 1, [
        0.1, 0.1, 0.1, 0.03, 0.009, 0.0027, *[0.001] * 24]),
    (dict(mode="max", patience=1, factor=0.5), -1, [
        0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, *[0.0125] * 20]),
    (dict(mode="max", patience=1, threshold=0.02, threshold_mode="abs", eps=0.03), -1, [
        0.1, 0.1, 0.1, 0.1, *[0.01] * 26]),
]
PLATEAU_COOLDOWN_SECOND_GROUP = [  # case 1's second group (lr 0.2, min_lr 0.001)
    0.2, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025,
    0.025, 0.025, 0.0125, 0.0125, 0.0125, 0.0125, 0.00625, 0.00625, 0.00625, 0.00625, 0.003125,
    0.003125, 0.003125, 0.003125,
]


def two_groups(optimizer_class=optim.SGD, **kwargs):
    """An optimizer over two one-element parameters, lr 0.1 and 0.2."""
    return optimizer_class([{"params": [nn.Parameter(sl.zeros(1))], "lr": 0.1},
                            {"params": [nn.Parameter(sl.zeros(1))], "lr": 0.2}], **kwargs)


def trace(opt, scheduler, steps, step_args=None):
    """Each group's (lr, momentum) before each of ``steps`` steps; ``step_args[i]``, unless
    None, is passed to the i-th ``scheduler.step``."""
    seen = []
    for i in range(steps):
        assert scheduler.get_last_lr() == [g["lr"] for g in opt.param_groups]
        seen.append([(g["lr"], g["betas"][0] if "betas" in g else g["momentum"])
                     for g in opt.param_groups])
        opt.step()
        if i < steps - 1:
            argument = None if step_args is None else step_args[i]
            scheduler.step() if argument is None else scheduler.step(argument)
    return numpy.array(seen)  # (steps, groups, 2)


def test_one_cycle_cos_matches_torch_with_sgd_momentum():
    opt = optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.1, momentum=0.9)
    seen = trace(opt, lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=30), 31)
    numpy.testing.assert_allclose(seen[:, 0, 0], ONE_CYCLE_COS_LR, rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(seen[:, 0, 1], ONE_CYCLE_COS_MOMENTUM, rtol=1e-12)
    group = opt.param_groups[0]
    assert (group["initial_lr"], group["max_lr"], group["max_momentum"]) == (0.04, 1.0, 0.95)
    assert group["min_lr"] == pytest.approx(4e-6) and group["base_momentum"] == 0.85


def test_one_cycle_three_phase_linear_matches_torch_with_adam_betas():
    opt = two_groups(optim.Adam, betas=(0.9, 0.99))
    scheduler = lr_scheduler.OneCycleLR(opt, max_lr=[0.5, 2.0], epochs=5, steps_per_epoch=6,
                                        anneal_strategy="linear", three_phase=True,
                                        pct_start=0.25)
    seen = trace(opt, scheduler, 31)
    numpy.testing.assert_allclose(seen[:, 0, 0], ONE_CYCLE_LINEAR_3_LR, rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(seen[:, 1, 0], 4 * seen[:, 0, 0], rtol=1e-12)
    for group in range(2):
        numpy.testing.assert_allclose(seen[:, group, 1], ONE_CYCLE_LINEAR_3_BETA1, rtol=1e-12)
    assert all(g["betas"][1] == 0.99 for g in opt.param_groups)  # only beta1 cycles


def test_one_cycle_stops_after_total_steps_and_validates():
    opt = optim.AdamW([nn.Parameter(sl.zeros(1))], lr=0.1)
    scheduler = lr_scheduler.OneCycleLR(opt, 0.01, total_steps=4, cycle_momentum=False)
    for _ in range(4):
        scheduler.step()
    before = opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="Tried to step 5 times. The specified number of total "
                                         "steps is 4"):
        scheduler.step()
    assert opt.param_groups[0]["lr"] == before
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)  # cycle_momentum=False leaves it

    def make(**kwargs):
        return lr_scheduler.OneCycleLR(optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.1), **kwargs)

    for kwargs, message in [
        (dict(max_lr=1.0), "either total_steps OR"),
        (dict(max_lr=1.0, epochs=2), "either total_steps OR"),
        (dict(max_lr=1.0, total_steps=0), "positive integer total_steps"),
        (dict(max_lr=1.0, epochs=0, steps_per_epoch=3), "positive integer epochs"),
        (dict(max_lr=1.0, epochs=2, steps_per_epoch=1.5), "positive integer steps_per_epoch"),
        (dict(max_lr=1.0, total_steps=10, pct_start=1), "pct_start"),
        (dict(max_lr=1.0, total_steps=10, pct_start=1.5), "pct_start"),
        (dict(max_lr=1.0, total_steps=10, anneal_strategy="exp"), "anneal_strategy"),
        (dict(max_lr=[1.0, 2.0], total_steps=10), "max_lr must have the same length"),
    ]:
        with pytest.raises(ValueError, match=message):
            make(**kwargs)

    class Plain(optim.Optimizer):  # neither momentum nor betas
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))

    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        lr_scheduler.OneCycleLR(Plain([nn.Parameter(sl.zeros(1))]), 1.0, total_steps=10)
    plain = Plain([nn.Parameter(sl.zeros(1))])
    lr_scheduler.OneCycleLR(plain, 1.0, total_steps=10, cycle_momentum=False)
    assert plain.param_groups[0]["lr"] == pytest.approx(0.04)


def test_one_cycle_with_a_one_step_warmup_does_not_divide_by_zero():
    opt = optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.1, momentum=0.9)
    seen = trace(opt, lr_scheduler.OneCycleLR(opt, 1.0, total_steps=10, pct_start=0.1), 10)
    assert seen[0, 0, 0] == 1.0 and seen[0, 0, 1] == 0.85  # the warmup is over at step 0
    assert all(a > b for a, b in zip(seen[:, 0, 0], seen[1:, 0, 0]))


def warm_restarts_reference(epoch, base_lr, T_0, T_mult, eta_min):  # noqa: N803
    """The SGDR lr at an integer epoch, from the list of restart epochs."""
    starts, period = [0], T_0
    while starts[-1] + period <= epoch:
        starts.append(starts[-1] + period)
        period *= T_mult
    T_cur = epoch - starts[-1]  # noqa: N806
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * T_cur / period)) / 2


@pytest.mark.parametrize("T_0, T_mult, eta_min", [(5, 2, 0.001), (7, 1, 0.0), (3, 3, 0.01),
                                                  (1, 2, 0.0)])
def test_warm_restarts_closed_form(T_0, T_mult, eta_min):  # noqa: N803
    opt = two_groups()
    scheduler = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0, T_mult, eta_min)
    seen = trace(opt, scheduler, 60)[:, :, 0]
    for group, base in enumerate((0.1, 0.2)):
        expected = [warm_restarts_reference(e, base, T_0, T_mult, eta_min) for e in range(60)]
        numpy.testing.assert_allclose(seen[:, group], expected, rtol=1e-12)
    # step(epoch) at integer epochs lands on the same values (no logarithm rounding)
    jumped = lr_scheduler.CosineAnnealingWarmRestarts(two_groups(), T_0, T_mult, eta_min)
    for epoch in (59, 3, 0, 40, 17):
        jumped.step(epoch)
        assert jumped.get_last_lr() == pytest.approx(list(seen[epoch]), rel=1e-12)
        assert jumped.last_epoch == epoch
    # created to resume after epoch 20 (torch wraps only one period there when T_mult > 1)
    resumed = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0, T_mult, eta_min, last_epoch=20)
    assert resumed.get_last_lr() == pytest.approx(list(seen[21]), rel=1e-12)
    resumed.step()
    assert resumed.get_last_lr() == pytest.approx(list(seen[22]), rel=1e-12)


def test_warm_restarts_fractional_and_interleaved_epochs_match_torch():
    opt = optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.1)
    scheduler = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2, eta_min=0.001)
    seen = trace(opt, scheduler, 60, step_args=[i / 4 for i in range(1, 60)])
    numpy.testing.assert_allclose(seen[:, 0, 0], WARM_RESTARTS_FRACTIONAL, rtol=1e-12)
    assert scheduler.last_epoch == 14  # floor(59 / 4)
    scheduler = lr_scheduler.CosineAnnealingWarmRestarts(
        optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.1), T_0=4, T_mult=2)
    seen = []
    for epoch in [None, None, 2.5, None, None, 13, None, None, None, 0.5, None]:
        scheduler.step() if epoch is None else scheduler.step(epoch)
        seen += scheduler.get_last_lr()
    numpy.testing.assert_allclose(seen, WARM_RESTARTS_INTERLEAVED, rtol=1e-12)
    # epoch 121 starts a period when T_0=1, T_mult=3 (1 + 3 + 9 + 27 + 81); torch 2.13's
    # step(121) finds the period with math.log(243, 3) = 4.999... and returns eta_min there,
    # while its step() x 121 restarts at base_lr, as seqlib does both ways
    scheduler = lr_scheduler.CosineAnnealingWarmRestarts(
        optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.1), T_0=1, T_mult=3)
    scheduler.step(121)
    assert scheduler.get_last_lr() == [0.1] and (scheduler.T_cur, scheduler.T_i) == (0, 243)


def test_warm_restarts_and_constant_lr_validate():
    opt = optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.1)
    for kwargs, message in [(dict(T_0=0), "positive integer T_0, but got 0"),
                            (dict(T_0=2.0), "positive integer T_0"),
                            (dict(T_0=2, T_mult=0), "integer T_mult >= 1, but got 0"),
                            (dict(T_0=2, T_mult=1.5), "integer T_mult >= 1"),
                            (dict(T_0=2, eta_min="0"), "float or int eta_min")]:
        with pytest.raises(ValueError, match=message):
            lr_scheduler.CosineAnnealingWarmRestarts(opt, **kwargs)
    with pytest.raises(ValueError, match="non-negative epoch, but got -1"):
        lr_scheduler.CosineAnnealingWarmRestarts(opt, 2).step(-1)
    for factor in (1.5, -0.1):
        with pytest.raises(ValueError, match="factor expected to be between 0 and 1"):
            lr_scheduler.ConstantLR(opt, factor)
    assert lr_scheduler.ConstantLR(opt, 0.0, 2).get_last_lr() == [0.0]


@pytest.mark.parametrize("case", range(len(PLATEAU_CASES)))
def test_reduce_on_plateau_matches_torch(case):
    kwargs, sign, expected = PLATEAU_CASES[case]
    opt = two_groups()
    scheduler = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    metrics = [sl.tensor(sign * m) if i % 2 else sign * m for i, m in enumerate(PLATEAU_METRICS)]
    seen = trace(opt, scheduler, 30, step_args=metrics)
    numpy.testing.assert_allclose(seen[:, 0, 0], expected, rtol=1e-12)
    if case == 1:
        numpy.testing.assert_allclose(seen[:, 1, 0], PLATEAU_COOLDOWN_SECOND_GROUP, rtol=1e-12)
    assert scheduler.last_epoch == 29


def test_reduce_on_plateau_validates_and_stays_out_of_sequential_lr():
    opt = two_groups()
    for kwargs, error, message in [
        (dict(factor=1.0), ValueError, "Factor should be < 1.0"),
        (dict(mode="avg"), ValueError, "mode avg is unknown"),
        (dict(threshold_mode="pct"), ValueError, "threshold mode pct is unknown"),
        (dict(min_lr=[0.1]), ValueError, "expected 2 min_lrs, got 1"),
    ]:
        with pytest.raises(error, match=message):
            lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.ReduceLROnPlateau(object())
    plateau = lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        lr_scheduler.SequentialLR(opt, [lr_scheduler.ConstantLR(opt), plateau], [2])
    with pytest.raises(ValueError, match="at least one scheduler"):
        lr_scheduler.SequentialLR(opt, [], [])


def test_new_schedulers_run_inside_sequential_lr():
    """After the milestone each scheduler runs from its own epoch 0, as in PyTorch."""
    def run(after, steps=30, milestone=4):
        opt = optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.5, momentum=0.9)
        warmup = lr_scheduler.LinearLR(opt, 0.1, 1.0, milestone)
        sequential = lr_scheduler.SequentialLR(opt, [warmup, after(opt)], [milestone])
        alone_opt = optim.SGD([nn.Parameter(sl.zeros(1))], lr=0.5, momentum=0.9)
        alone = trace(alone_opt, after(alone_opt), steps - milestone)
        return trace(opt, sequential, steps)[milestone:], alone

    for after in (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, 3, 2, 0.01),
                  lambda o: lr_scheduler.ConstantLR(o, 0.5, 7),
                  lambda o: lr_scheduler.OneCycleLR(o, 1.0, total_steps=26)):
        within, alone = run(after)
        numpy.testing.assert_allclose(within, alone, rtol=1e-12)


@pytest.mark.parametrize("name", ["one_cycle", "warm_restarts", "constant", "plateau"])
def test_new_schedulers_resume_from_state_dict_mid_schedule(name, tmp_path):
    makers = {
        "one_cycle": lambda o: lr_scheduler.OneCycleLR(o, [0.5, 1.0], total_steps=40,
                                                       three_phase=True),
        "warm_restarts": lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, 3, 2, 0.001),
        "constant": lambda o: lr_scheduler.ConstantLR(o, 0.3, 17),
        "plateau": lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=1, cooldown=1),
    }
    metrics = PLATEAU_METRICS + [0.5] * 10
    # warm restarts: a fractional epoch first, then plain steps carry the fraction on
    steps = {"plateau": metrics, "warm_restarts": [2.5] + [None] * 39}.get(name, [None] * 40)

    def make():
        opt = two_groups(optim.Adam)
        return opt, makers[name](opt)

    opt, scheduler = make()
    trace(opt, scheduler, 16, step_args=steps[:15])
    sl.save({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()},
            tmp_path / "state.safetensors")  # through a file: inf, tuples and dicts survive
    saved = sl.load(tmp_path / "state.safetensors")
    resumed_opt, resumed = make()
    resumed_opt.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["scheduler"])
    assert resumed.get_last_lr() == scheduler.get_last_lr()
    assert resumed.state_dict() == scheduler.state_dict()
    continued = trace(opt, scheduler, 25, step_args=steps[15:])
    numpy.testing.assert_array_equal(trace(resumed_opt, resumed, 25, step_args=steps[15:]),
                                     continued)
