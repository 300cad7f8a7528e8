"""seqlib.nn: Module semantics, containers, layers, init and utils, against PyTorch's rules."""

from __future__ import annotations

import math

import numpy
import pytest
from helpers import check_op

import seqlib as sl
from seqlib import nn


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.second = nn.Linear(4, 2, bias=False)
        self.register_buffer("steps", sl.zeros(1))
        self.register_buffer("scratch", sl.zeros(2), persistent=False)

    def forward(self, x):
        return self.second(self.first(x).relu())


# ---- Module ------------------------------------------------------------------------------
def test_registration_and_traversal():
    model = TwoLayer()
    assert [n for n, _ in model.named_parameters()] == ["first.weight", "first.bias",
                                                        "second.weight"]
    assert [n for n, _ in model.named_buffers()] == ["steps", "scratch"]
    assert [n for n, _ in model.named_children()] == ["first", "second"]
    assert [n for n, _ in model.named_modules()] == ["", "first", "second"]
    assert len(list(model.parameters(recurse=False))) == 0
    assert len(list(model.modules())) == 3 and len(list(model.children())) == 2
    assert model.get_submodule("first") is model.first
    assert list(model.state_dict()) == ["steps", "first.weight", "first.bias", "second.weight"]
    assert model.second.bias is None
    with pytest.raises(AttributeError, match="no attribute 'third'"):
        model.third


def test_shared_parameters_are_listed_once():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight = model[0].weight
    assert len(list(model.parameters())) == 3


def test_assignment_rules():
    model = TwoLayer()
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        model.first.weight = sl.ones(4, 3)
    model.first.bias = None
    assert model.first.bias is None and "bias" in model.first._parameters
    with pytest.raises(TypeError, match="as buffer"):
        model.steps = 3
    model.plain = 5
    assert model.plain == 5
    del model.first
    assert "first" not in dict(model.named_children())

    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(sl.ones(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Broken()
    with pytest.raises(KeyError, match="be empty or contain"):
        model.register_buffer("a.b", sl.ones(1))
    with pytest.raises(KeyError, match="already exists"):
        model.register_parameter("forward", None)


def test_state_dict_round_trip_and_detached_values():
    source, target = TwoLayer(), TwoLayer()
    state = source.state_dict()
    assert not state["first.weight"].requires_grad
    result = target.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert a.equal(b), name
    assert target.first.weight.requires_grad  # values were copied into the parameters


def test_load_state_dict_reports_every_problem():
    model = TwoLayer()
    state = model.state_dict()
    state["first.weight"] = sl.zeros(5, 3)
    state["second.weight"] = sl.zeros(2, 5)
    del state["first.bias"]
    state["extra"] = sl.zeros(1)
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert 'Missing key(s) in state_dict: "first.bias"' in message
    assert 'Unexpected key(s) in state_dict: "extra"' in message
    assert "size mismatch for first.weight: copying a param with shape (5, 3)" in message
    assert "the shape in current model is (4, 3)" in message
    assert "size mismatch for second.weight" in message
    loose = model.state_dict()
    del loose["first.bias"]
    loose["extra"] = sl.zeros(1)
    result = model.load_state_dict(loose, strict=False)
    assert result.missing_keys == ["first.bias"] and result.unexpected_keys == ["extra"]


def test_train_eval_zero_grad_apply_requires_grad():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    assert model.training and model[1].training
    model.eval()
    assert not model.training and not model[1].training
    x = sl.ones(4, 2)
    assert model(x).equal(model(x))  # dropout is off
    model.train()
    model(x).sum().backward()
    assert model[0].weight.grad is not None
    model.zero_grad(set_to_none=False)
    assert model[0].weight.grad.sum().item() == 0
    model.zero_grad()
    assert model[0].weight.grad is None
    visited = []
    model.apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Linear", "Dropout", "Sequential"]
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())


def test_to_casts_floating_state_only():
    model = TwoLayer()
    model.register_buffer("counts", sl.zeros(2, dtype=sl.int64))
    parameter = model.first.weight
    assert model.to(sl.float64) is model
    assert model.first.weight.dtype == sl.float64 and model.steps.dtype == sl.float64
    assert model.counts.dtype == sl.int64
    assert model.first.weight is parameter  # same Parameter object, new values
    assert model.float().first.weight.dtype == sl.float32
    assert model.to("cpu").first.weight.device == "cpu"
    assert model(sl.ones(1, 3)).shape == (1, 2)


def test_forward_hooks():
    model = nn.Linear(2, 2)
    seen = []
    handle = model.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    pre = model.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    out = model(sl.ones(3, 2))
    assert seen == [(3, 2)]
    assert out.equal(model.bias.detach().expand(3, 2))
    handle.remove()
    pre.remove()
    model(sl.ones(1, 2))
    assert len(seen) == 1
    doubled = model.register_forward_hook(lambda m, args, out: out * 2)
    assert model(sl.zeros(1, 2)).equal(model.bias.detach()[None] * 2)
    doubled.remove()


def test_repr_is_nested_and_readable():
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Dropout(0.2)))
    text = repr(model)
    assert "(0): Linear(in_features=3, out_features=4, bias=True)" in text
    assert "(1): Sequential(\n    (0): ReLU()\n    (1): Dropout(p=0.2, inplace=False)\n  )" in text
    assert repr(nn.Parameter(sl.ones(1))).startswith("Parameter containing:\ntensor([1.]")


def test_missing_forward():
    with pytest.raises(NotImplementedError, match="missing the 'forward' method"):
        nn.Module()(1)


# ---- containers --------------------------------------------------------------------------
def test_sequential():
    a, b = nn.Linear(2, 3), nn.Linear(3, 1)
    model = nn.Sequential(a, nn.Tanh(), b)
    x = sl.ones(4, 2)
    assert model(x).equal(b(a(x).tanh()))
    assert model[0] is a and model[-1] is b and len(model) == 3
    assert isinstance(model[1:], nn.Sequential) and len(model[1:]) == 2
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict([("encode", a), ("decode", b)]))
    assert list(named.state_dict())[0] == "encode.weight"
    model.append(nn.Identity())
    assert len(model) == 4
    with pytest.raises(IndexError, match="out of range"):
        model[7]


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    layers.append(nn.Linear(2, 3))
    layers += [nn.ReLU()]
    layers.insert(0, nn.Identity())
    assert len(layers) == 5 and isinstance(layers[0], nn.Identity)
    assert "1.weight" in layers.state_dict() and "3.weight" in layers.state_dict()
    del layers[0]
    assert "0.weight" in layers.state_dict()
    assert len(layers[:2]) == 2
    heads = nn.ModuleDict({"a": nn.Linear(2, 2)})
    heads["b"] = nn.Linear(2, 1)
    assert "b" in heads and list(heads.keys()) == ["a", "b"] and len(heads) == 2
    assert list(heads.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert heads.pop("a") is not None and len(heads) == 1


# ---- layers ------------------------------------------------------------------------------
def test_linear_init_bounds_and_forward():
    layer = nn.Linear(100, 50)
    bound = 1 / math.sqrt(100)
    assert layer.weight.shape == (50, 100) and layer.bias.shape == (50,)
    assert abs(layer.weight).max().item() <= bound and abs(layer.bias).max().item() <= bound
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    x = sl.randn(2, 7, 100)
    expected = x.numpy() @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
    numpy.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert nn.Linear(3, 2, dtype=sl.float64).weight.dtype == sl.float64


def test_linear_gradcheck():
    layer = nn.Linear(3, 2).double()
    x = sl.randn(4, 3, dtype=sl.float64, requires_grad=True)
    sl.gradcheck(lambda x, w, b: sl.nn.functional.linear(x, w, b),
                 [x, layer.weight, layer.bias])


def test_embedding_layer():
    emb = nn.Embedding(10, 4, padding_idx=0)
    assert emb.weight[0].abs().sum().item() == 0
    assert abs(emb.weight[1:].std().item() - 1) < 0.5
    out = emb(sl.tensor([[0, 3], [3, 9]]))
    assert out.shape == (2, 2, 4)
    out.sum().backward()
    assert emb.weight.grad[0].abs().sum().item() == 0
    assert emb.weight.grad[3].tolist() == [2.0] * 4
    pretrained = nn.Embedding.from_pretrained(sl.eye(3))
    assert not pretrained.weight.requires_grad
    assert pretrained(sl.tensor([2])).tolist() == [[0.0, 0.0, 1.0]]
    assert nn.Embedding.from_pretrained(sl.eye(3), freeze=False).weight.requires_grad
    assert repr(emb) == "Embedding(10, 4, padding_idx=0)"
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(3, 2, padding_idx=5)


def test_layer_norm_and_dropout_layers():
    norm = nn.LayerNorm(4)
    assert norm.weight.tolist() == [1.0] * 4 and norm.bias.tolist() == [0.0] * 4
    out = norm(sl.randn(3, 4))
    numpy.testing.assert_allclose(out.detach().numpy().mean(-1), 0, atol=1e-6)
    assert nn.LayerNorm((2, 3), elementwise_affine=False).weight is None
    assert nn.LayerNorm(3, bias=False).bias is None
    drop = nn.Dropout(0.5)
    assert (drop(sl.ones(1000)) == 0).any().item()
    drop.eval()
    assert drop(sl.ones(10)).equal(sl.ones(10))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(2)


@pytest.mark.parametrize("module, reference", [
    (nn.ReLU(), lambda a: numpy.maximum(a, 0)),
    (nn.LeakyReLU(0.1), lambda a: numpy.where(a > 0, a, 0.1 * a)),
    (nn.GELU(approximate="tanh"), None),
    (nn.SiLU(), lambda a: a / (1 + numpy.exp(-a))),
    (nn.ELU(), lambda a: numpy.where(a > 0, a, numpy.exp(a) - 1)),
    (nn.Tanh(), numpy.tanh),
    (nn.Sigmoid(), lambda a: 1 / (1 + numpy.exp(-a))),
    (nn.Softmax(dim=-1), lambda a: numpy.exp(a) / numpy.exp(a).sum(-1, keepdims=True)),
    (nn.LogSoftmax(dim=1), lambda a: a - numpy.log(numpy.exp(a).sum(1, keepdims=True))),
    (nn.Identity(), lambda a: a),
])
def test_activation_modules(module, reference):
    x = numpy.random.default_rng(0).uniform(-2, 2, (3, 4)) + 0.01
    if reference is None:
        reference = lambda a: sl.nn.functional.gelu(sl.tensor(a), approximate="tanh").numpy()  # noqa: E731
    check_op(module, reference, x)


def test_loss_modules_match_functional():
    logits, target = sl.randn(4, 3), sl.tensor([0, 2, 1, -100])
    F = sl.nn.functional
    weight = sl.tensor([1.0, 2.0, 0.5])
    assert nn.CrossEntropyLoss(weight, label_smoothing=0.1)(logits, target).item() == \
        F.cross_entropy(logits, target, weight, label_smoothing=0.1).item()
    assert "weight" in nn.CrossEntropyLoss(weight).state_dict()
    logp = F.log_softmax(logits, 1)
    assert nn.NLLLoss(reduction="sum")(logp, target).item() == \
        F.nll_loss(logp, target, reduction="sum").item()
    a, b = sl.randn(5), sl.randn(5)
    assert nn.MSELoss()(a, b).item() == F.mse_loss(a, b).item()
    assert nn.L1Loss(reduction="none")(a, b).equal(F.l1_loss(a, b, "none"))
    y = sl.rand(5)
    assert nn.BCEWithLogitsLoss(pos_weight=sl.ones(5) * 2)(a, y).item() == \
        F.binary_cross_entropy_with_logits(a, y, pos_weight=sl.ones(5) * 2).item()
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


# ---- init --------------------------------------------------------------------------------
def test_init_functions_follow_pytorch_formulas():
    w = sl.empty(200, 300)
    g = sl.Generator().manual_seed(0)
    nn.init.xavier_uniform_(w, generator=g)
    bound = math.sqrt(6 / 500)
    assert abs(w).max().item() <= bound and w.std().item() == pytest.approx(bound / math.sqrt(3),
                                                                             rel=0.02)
    nn.init.xavier_normal_(w, gain=2.0)
    assert w.std().item() == pytest.approx(2 * math.sqrt(2 / 500), rel=0.02)
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    assert abs(w).max().item() <= math.sqrt(2) * math.sqrt(3 / 300)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.std().item() == pytest.approx(math.sqrt(2 / 200), rel=0.02)
    nn.init.normal_(w, 3.0, 0.5)
    assert w.mean().item() == pytest.approx(3.0, abs=0.01)
    nn.init.uniform_(w, -1, 1)
    assert -1 <= w.min().item() and w.max().item() <= 1
    nn.init.constant_(w, 0.25)
    assert w.mean().item() == 0.25
    nn.init.zeros_(w)
    nn.init.ones_(w)
    assert w.sum().item() == 60000
    assert nn.init.calculate_gain("tanh") == 5 / 3
    assert nn.init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        nn.init.calculate_gain("swishy")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(sl.empty(3))


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (6, 2), (2, 3, 4)])
def test_orthogonal_init(shape):
    w = nn.init.orthogonal_(sl.empty(*shape), gain=2.0, generator=sl.Generator().manual_seed(1))
    flat = w.numpy().reshape(shape[0], -1) / 2
    small = min(flat.shape)
    gram = flat @ flat.T if flat.shape[0] == small else flat.T @ flat
    numpy.testing.assert_allclose(gram, numpy.eye(small), atol=1e-5)


def test_init_is_reproducible_with_a_generator():
    a = nn.init.normal_(sl.empty(5), generator=sl.Generator().manual_seed(4))
    b = nn.init.normal_(sl.empty(5), generator=sl.Generator().manual_seed(4))
    assert a.equal(b)


# ---- utils -------------------------------------------------------------------------------
def test_clip_grad_norm():
    a = nn.Parameter(sl.zeros(2))
    b = nn.Parameter(sl.zeros(1))
    a.grad, b.grad = sl.tensor([3.0, 0.0]), sl.tensor([4.0])
    total = nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    assert a.grad.tolist() == pytest.approx([0.6, 0.0], rel=1e-5)
    assert b.grad.tolist() == pytest.approx([0.8], rel=1e-5)
    unchanged = nn.utils.clip_grad_norm_([a, b], max_norm=10.0)
    assert unchanged.item() == pytest.approx(1.0, rel=1e-5)
    assert a.grad.tolist() == pytest.approx([0.6, 0.0], rel=1e-5)
    assert nn.utils.clip_grad_norm_(a, 1.0, norm_type=float("inf")).item() == pytest.approx(0.6)
    assert nn.utils.clip_grad_norm_([nn.Parameter(sl.ones(1))], 1.0).item() == 0.0
    a.grad = sl.tensor([float("nan"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(a, 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_with_a_nan_gradient(norm_type):
    """A NaN makes the total norm NaN whatever the order (the inf norm included), and then
    every gradient NaN, as in PyTorch; error_if_nonfinite raises instead, changing nothing."""
    def params():
        a, b = nn.Parameter(sl.zeros(3)), nn.Parameter(sl.zeros(2))
        a.grad, b.grad = sl.tensor([1.0, float("nan"), 2.0]), sl.tensor([1.0, 1.0])
        return a, b

    a, b = params()
    with pytest.raises(RuntimeError, match=f"norm of order {norm_type} .* non-finite"):
        nn.utils.clip_grad_norm_([a, b], 1.0, norm_type=norm_type, error_if_nonfinite=True)
    assert b.grad.tolist() == [1.0, 1.0]
    a, b = params()
    total = nn.utils.clip_grad_norm_([b, a], 1.0, norm_type=norm_type)  # NaN last, too
    assert math.isnan(total.item())
    assert numpy.isnan(a.grad.numpy()).all() and numpy.isnan(b.grad.numpy()).all()


def test_clip_grad_value_and_vector_round_trip():
    p = nn.Parameter(sl.zeros(3))
    p.grad = sl.tensor([-5.0, 0.5, 5.0])
    nn.utils.clip_grad_value_([p], 1.0)
    assert p.grad.tolist() == [-1.0, 0.5, 1.0]
    model = TwoLayer()
    vector = nn.utils.parameters_to_vector(model.parameters())
    assert vector.shape == (4 * 3 + 4 + 2 * 4,)
    nn.utils.vector_to_parameters(vector * 0 + 1, model.parameters())
    assert all((p.detach() == 1).all().item() for p in model.parameters())
    with pytest.raises(RuntimeError, match="expected a 1-D vector of 24 elements"):
        nn.utils.vector_to_parameters(sl.ones(5), model.parameters())
