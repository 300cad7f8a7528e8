"""The saved file as other tools see it: tensors keyed by their path, tied weights stored once,
non-tensor state in the metadata, and files of format version 1 still loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import seqlib as sl
from seqlib import nn, optim
from seqlib.builders import TransformerEncoderBuilder
from seqlib.models import TransformerLM, TransformerLMConfig, from_pretrained

DATA = Path(__file__).resolve().parent / "data"


def _metadata(path) -> dict:
    with safe_open(str(path), "np") as handle:
        return handle.metadata()


def _modules():
    sl.manual_seed(0)
    encoder = TransformerEncoderBuilder.from_kwargs(
        attention_type="causal-linear", n_layers=2, n_heads=2, query_dimensions=3,
        value_dimensions=3, feed_forward_dimensions=8).get()
    return {"lstm": nn.LSTM(3, 4, num_layers=2, bidirectional=True),
            "encoder": encoder,
            "sequential": nn.Sequential(nn.Embedding(5, 3), nn.LayerNorm(3), nn.Linear(3, 2))}


@pytest.mark.parametrize("name", ["lstm", "encoder", "sequential"])
def test_a_saved_state_dict_is_a_plain_safetensors_state_dict(tmp_path, name):
    state = _modules()[name].state_dict()
    sl.save(state, tmp_path / "m.safetensors")
    plain = load_file(str(tmp_path / "m.safetensors"))
    assert sorted(plain) == sorted(state)
    for key, value in state.items():
        assert plain[key].dtype == value.dtype and plain[key].shape == value.shape, key
        numpy.testing.assert_array_equal(plain[key], value.numpy(), err_msg=key)
    assert json.loads(_metadata(tmp_path / "m.safetensors")["aliases"]) == {}


def test_checkpoint_tensors_are_keyed_by_their_path(tmp_path):
    sl.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    optimizer = optim.Adam(model.parameters(), lr=0.1)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=2)
    model(sl.randn(4, 2)).sum().backward()
    optimizer.step()
    scheduler.step()
    sl.save_checkpoint(tmp_path / "c.safetensors", model=model, optimizer=optimizer,
                       scheduler=scheduler, step=1, note="warm")
    body = load_file(str(tmp_path / "c.safetensors"))
    moments = [f"optimizer.state.{i}.{m}" for i in range(4) for m in ("exp_avg", "exp_avg_sq")]
    assert sorted(body) == sorted([f"model.{k}" for k in model.state_dict()] + moments
                                  + ["rng.default"])
    numpy.testing.assert_array_equal(body["optimizer.state.1.exp_avg"],
                                     optimizer.state[model[0].bias]["exp_avg"])
    # the rest (step, hyper-parameters, scheduler, extra) is JSON in the metadata, not pickle
    structure = _metadata(tmp_path / "c.safetensors")["structure"]
    assert '"warm"' in structure and '"step_size", 2' in structure and '"lr"' in structure


def _lm(tie_weights=True):
    sl.manual_seed(0)
    return TransformerLM(TransformerLMConfig(vocab_size=7, d_model=4, n_layers=1, n_heads=2,
                                             tie_weights=tie_weights)).eval()


def test_tied_weights_are_stored_once_and_tied_again_on_load(tmp_path):
    model = _lm()
    model.save_pretrained(tmp_path / "lm")
    path = tmp_path / "lm" / "model.safetensors"
    plain = load_file(str(path))
    assert sorted(plain) == sorted(set(model.state_dict()) - {"head.weight"})
    assert json.loads(_metadata(path)["aliases"]) == {"head.weight": "token_embedding.weight"}
    state = sl.load(path)
    assert list(state) == list(model.state_dict())
    assert state["head.weight"] is state["token_embedding.weight"]
    loaded = from_pretrained(tmp_path / "lm")
    assert loaded.head.weight is loaded.token_embedding.weight
    assert loaded.head.weight.equal(model.token_embedding.weight)
    tokens = sl.randint(0, 7, (2, 5))
    assert loaded(tokens)[0].equal(model(tokens)[0])


def test_untied_weights_are_stored_twice(tmp_path):
    model = _lm(tie_weights=False)
    model.save_pretrained(tmp_path / "lm")
    assert sorted(load_file(str(tmp_path / "lm" / "model.safetensors"))) \
        == sorted(model.state_dict())
    loaded = from_pretrained(tmp_path / "lm")
    assert loaded.head.weight is not loaded.token_embedding.weight
    assert loaded.head.weight.equal(model.head.weight)


def test_the_aliases_give_a_foreign_reader_the_full_state_dict(tmp_path):
    """The recipe the README gives for readers other than seqlib (here NumPy)."""
    model = _lm()
    path = tmp_path / "m.safetensors"
    sl.save(model.state_dict(), path)
    state = load_file(str(path))
    aliases = json.loads(_metadata(path).get("aliases", "{}"))
    state.update({alias: state[stored] for alias, stored in aliases.items()})
    assert sorted(state) == sorted(model.state_dict())
    numpy.testing.assert_array_equal(state["head.weight"], model.head.weight.detach().numpy())


def test_from_pretrained_ties_a_weight_another_tool_stored_once(tmp_path):
    """As Hugging Face and ``safetensors.torch.save_model`` write it: no alias at all."""
    model = _lm()
    model.save_pretrained(tmp_path / "lm")
    state = {k: v.numpy() for k, v in model.state_dict().items() if k != "head.weight"}
    save_file(state, str(tmp_path / "lm" / "model.safetensors"), metadata={"format": "pt"})
    loaded = from_pretrained(tmp_path / "lm")
    assert loaded.head.weight is loaded.token_embedding.weight
    assert loaded.head.weight.equal(model.head.weight)


def test_keys_of_roots_lists_and_clashing_paths(tmp_path):
    first, second = sl.ones(2), sl.zeros(3)
    sl.save(first, tmp_path / "root.st")
    assert list(load_file(str(tmp_path / "root.st"))) == ["tensor"]
    sl.save([first, (second,)], tmp_path / "list.st")
    assert sorted(load_file(str(tmp_path / "list.st"))) == ["0", "1.0"]
    sl.save({"a.b": first, "a": {"b": second}}, tmp_path / "clash.st")
    assert sorted(load_file(str(tmp_path / "clash.st"))) == ["a.b", "a.b#1"]
    loaded = sl.load(tmp_path / "clash.st")
    assert loaded["a.b"].equal(first) and loaded["a"]["b"].equal(second)


def test_one_array_saved_as_parameter_and_as_tensor_loads_as_both_sharing_memory(tmp_path):
    layer = nn.Linear(2, 2)
    sl.save({"parameter": layer.weight, "detached": layer.weight.detach(),
             "again": layer.weight.detach()}, tmp_path / "p.st")
    assert list(load_file(str(tmp_path / "p.st"))) == ["parameter"]
    loaded = sl.load(tmp_path / "p.st")
    assert isinstance(loaded["parameter"], nn.Parameter) and loaded["parameter"].requires_grad
    assert not isinstance(loaded["detached"], nn.Parameter)
    assert not loaded["detached"].requires_grad and loaded["again"] is loaded["detached"]
    loaded["detached"][0, 0] = 42.0
    assert loaded["parameter"][0, 0].item() == 42.0


# tests/data/checkpoint_format_v1.safetensors was written by seqlib 0acae8d (format version
# 1, tensors keyed t0, t1, ...) from:
#   weight = sl.arange(6.0).view(2, 3)
#   {"model": {"embedding.weight": weight, "head.weight": weight,
#              "norm.bias": sl.tensor([0.5, -1.0])},
#    "optimizer": {"state": {0: {"step": 3, "exp_avg": sl.full((2,), 0.25, dtype=sl.float64)}},
#                  "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "params": [0]}]},
#    "step": 7, "rng": {"default": sl.Generator().manual_seed(5).get_state()},
#    "parameter": nn.Parameter(sl.tensor([1, 2, 3], dtype=sl.int64), requires_grad=False),
#    "grad": sl.tensor([1.5], requires_grad=True), "array": numpy.array([True, False]),
#    "scalar": sl.tensor(2.5)}
def test_files_of_format_version_1_still_load():
    path = DATA / "checkpoint_format_v1.safetensors"
    assert _metadata(path)["version"] == "1" and "t0" in load_file(str(path))
    loaded = sl.load(path)
    model = loaded["model"]
    assert model["embedding.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert model["head.weight"] is model["embedding.weight"]
    assert model["norm.bias"].tolist() == [0.5, -1.0]
    assert loaded["optimizer"]["state"] == {0: {"step": 3, "exp_avg": loaded["optimizer"]
                                                ["state"][0]["exp_avg"]}}
    exp_avg = loaded["optimizer"]["state"][0]["exp_avg"]
    assert exp_avg.dtype == sl.float64 and exp_avg.tolist() == [0.25, 0.25]
    assert loaded["optimizer"]["param_groups"] == [{"lr": 0.01, "betas": (0.9, 0.999),
                                                    "params": [0]}]
    assert loaded["step"] == 7
    restored = sl.Generator().set_state(loaded["rng"]["default"])
    assert sl.rand(4, generator=restored).equal(sl.rand(4, generator=sl.Generator()
                                                        .manual_seed(5)))
    parameter = loaded["parameter"]
    assert isinstance(parameter, nn.Parameter) and not parameter.requires_grad
    assert parameter.dtype == sl.int64 and parameter.tolist() == [1, 2, 3]
    assert loaded["grad"].requires_grad and loaded["grad"].tolist() == [1.5]
    assert loaded["array"].tolist() == [True, False]
    assert loaded["scalar"].shape == () and loaded["scalar"].item() == 2.5


def test_a_newer_format_version_is_refused_by_name(tmp_path):
    save_file({"a": numpy.ones(1)}, str(tmp_path / "new.st"),
              metadata={"format": "seqlib", "version": "3", "structure": "{}"})
    with pytest.raises(ValueError, match=r"new.st is in seqlib format version '3'; this seqlib "
                                         r"reads versions 1, 2"):
        sl.load(tmp_path / "new.st")
