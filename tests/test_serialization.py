"""save/load and checkpoints: round trips, atomic writes under SIGKILL, exact resumption."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

import seqlib as sl
from seqlib import nn, optim

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dtype", [sl.float16, sl.float32, sl.float64, sl.int8, sl.int16,
                                   sl.int32, sl.int64, sl.uint8, sl.bool])
def test_every_dtype_round_trips(tmp_path, dtype):
    values = sl.tensor(numpy.arange(-3, 9).reshape(3, 4) % 5, dtype=dtype)
    sl.save(values, tmp_path / "t.safetensors")
    loaded = sl.load(tmp_path / "t.safetensors")
    assert loaded.dtype == dtype and loaded.equal(values)
    scalar = sl.tensor(7, dtype=dtype)
    sl.save(scalar, tmp_path / "s.safetensors")
    assert sl.load(tmp_path / "s.safetensors").shape == ()


def test_nested_structures_round_trip(tmp_path):
    weight = sl.randn(3, 4)
    obj = {
        "model": {"layer.weight": weight, "layer.bias": sl.zeros(4)},
        "state": {0: {"step": 3, "buffer": sl.ones(2)}, 1: {}},
        "groups": [{"lr": 0.1, "betas": (0.9, 0.999), "name": "main", "flag": True,
                    "none": None}],
        "same": weight,  # shared tensors stay shared
        "array": numpy.arange(3.0),
        "empty": sl.zeros(0, 5),
        "numpy_scalar": numpy.float32(2.5),
    }
    sl.save(obj, tmp_path / "c.safetensors")
    loaded = sl.load(tmp_path / "c.safetensors")
    assert loaded["model"]["layer.weight"].equal(weight)
    assert loaded["state"][0]["step"] == 3 and list(loaded["state"]) == [0, 1]
    assert loaded["groups"][0]["betas"] == (0.9, 0.999) and loaded["groups"][0]["none"] is None
    assert loaded["same"] is loaded["model"]["layer.weight"]
    assert isinstance(loaded["array"], numpy.ndarray) and loaded["array"].tolist() == [0, 1, 2]
    assert loaded["empty"].shape == (0, 5) and loaded["numpy_scalar"] == 2.5
    loaded["model"]["layer.bias"][0] = 1.0  # loaded tensors are writable


def test_non_contiguous_arrays_are_saved_correctly(tmp_path):
    base = sl.arange(12.0).view(3, 4)
    sl.save({"t": base.t(), "s": base[:, ::2]}, tmp_path / "v.safetensors")
    loaded = sl.load(tmp_path / "v.safetensors")
    assert loaded["t"].equal(base.t()) and loaded["s"].equal(base[:, ::2])


def test_parameters_and_requires_grad_survive(tmp_path):
    layer = nn.Linear(2, 2)
    sl.save({"w": layer.weight, "x": sl.ones(1, requires_grad=True)}, tmp_path / "p.st")
    loaded = sl.load(tmp_path / "p.st")
    assert isinstance(loaded["w"], nn.Parameter) and loaded["w"].requires_grad
    assert loaded["x"].requires_grad and not isinstance(loaded["x"], nn.Parameter)


def test_model_state_dict_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    sl.save(model.state_dict(), tmp_path / "m.st")
    other = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    other.load_state_dict(sl.load(tmp_path / "m.st"))
    x = sl.randn(5, 3)
    assert other(x).equal(model(x))


def test_map_location_and_foreign_safetensors(tmp_path):
    sl.save({"a": sl.ones(2)}, tmp_path / "a.st")
    assert sl.load(tmp_path / "a.st", map_location="cpu")["a"].device == "cpu"
    moved = sl.load(tmp_path / "a.st", map_location=lambda t, saved: t * 2)
    assert moved["a"].tolist() == [2.0, 2.0]
    assert sl.load(tmp_path / "a.st", map_location={"cpu": "cpu"})["a"].device == "cpu"
    from safetensors.numpy import save_file

    save_file({"layers.0.linear1.weight": numpy.ones((2, 3), numpy.float32)},
              str(tmp_path / "plain.safetensors"))
    plain = sl.load(tmp_path / "plain.safetensors")
    assert list(plain) == ["layers.0.linear1.weight"] and plain["layers.0.linear1.weight"].shape \
        == (2, 3)


def test_bad_files_give_clear_errors(tmp_path):
    sl.save({"a": sl.ones(1000)}, tmp_path / "good.st")
    data = (tmp_path / "good.st").read_bytes()
    (tmp_path / "cut.st").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.st is truncated"):
        sl.load(tmp_path / "cut.st")
    (tmp_path / "text.st").write_bytes(b"hello world, not a checkpoint at all")
    with pytest.raises(ValueError, match="text.st"):
        sl.load(tmp_path / "text.st")
    (tmp_path / "tiny.st").write_bytes(b"abc")
    with pytest.raises(ValueError, match="tiny.st is not a safetensors"):
        sl.load(tmp_path / "tiny.st")
    with pytest.raises(FileNotFoundError):
        sl.load(tmp_path / "missing.st")
    with pytest.raises(TypeError, match=r"cannot store an object of type object at obj\['x'\]"):
        sl.save({"x": object()}, tmp_path / "bad.st")
    assert not list(tmp_path.glob(".bad.st.*"))  # no temporary file left behind


KILLER = """
import sys, seqlib as sl
path = sys.argv[1]
big = sl.randn(4_000_000)
i = 0
while True:
    i += 1
    sl.save({"version": i, "weights": big}, path)
    print(i, flush=True)
"""


def test_killing_a_save_leaves_the_previous_file_loadable(tmp_path):
    path = tmp_path / "ckpt.st"
    sl.save({"version": 0, "weights": sl.zeros(4_000_000)}, path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for delay in (0.3, 0.55, 0.8):
        process = subprocess.Popen([sys.executable, "-c", KILLER, str(path)], env=env,
                                   stdout=subprocess.PIPE)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        loaded = sl.load(path)
        assert loaded["weights"].shape == (4_000_000,) and loaded["version"] >= 0


def _train(steps, model, optimizer, scheduler, loader, generator, state=None):
    losses = []
    batches = iter(loader)
    for _ in range(steps):
        x, y = next(batches)
        loss = sl.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


def _setup(seed=0):
    fixed = sl.Generator().manual_seed(123)
    data = sl.data.TensorDataset(sl.randn(64, 6, generator=fixed),
                                 sl.randint(0, 3, (64,), generator=fixed))
    sl.manual_seed(seed)
    generator = sl.Generator().manual_seed(seed)
    loader = sl.data.DataLoader(data, batch_size=8, shuffle=True, generator=generator)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = optim.AdamW(model.parameters(), lr=0.01)
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, 3, 16)
    return model, optimizer, scheduler, loader, generator


def test_resumed_training_is_bit_identical(tmp_path):
    model, optimizer, scheduler, loader, generator = _setup()
    straight = _train(8, model, optimizer, scheduler, loader, generator)  # one epoch
    straight += _train(8, model, optimizer, scheduler, loader, generator)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model, optimizer, scheduler, loader, generator = _setup()
    first = _train(8, model, optimizer, scheduler, loader, generator)
    sl.save_checkpoint(tmp_path / "run.st", model=model, optimizer=optimizer,
                       scheduler=scheduler, step=8, generators={"data": generator}, note="half")
    sl.manual_seed(999)  # whatever happens in between must not matter
    model, optimizer, scheduler, loader, generator = _setup(seed=5)
    state = sl.load_checkpoint(tmp_path / "run.st", model=model, optimizer=optimizer,
                               scheduler=scheduler, generators={"data": generator})
    assert state["step"] == 8 and state["extra"]["note"] == "half"
    second = _train(8, model, optimizer, scheduler, loader, generator)
    assert first + second == straight
    for key, value in model.state_dict().items():
        assert value.equal(expected[key]), key


def test_load_checkpoint_errors(tmp_path):
    sl.save({"a": 1}, tmp_path / "plain.st")
    with pytest.raises(ValueError, match="not a checkpoint"):
        sl.load_checkpoint(tmp_path / "plain.st")
    sl.save_checkpoint(tmp_path / "c.st", step=1)
    with pytest.raises(ValueError, match="holds no model state; nothing was restored"):
        sl.load_checkpoint(tmp_path / "c.st", model=nn.Linear(1, 1))
    with pytest.raises(ValueError, match="holds no generator 'data' state"):
        sl.load_checkpoint(tmp_path / "c.st", generators={"data": sl.Generator()})


def _training_objects(features: int = 3):
    model = nn.Linear(features, 2)
    optimizer = sl.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = sl.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    model(sl.randn(4, features)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _snapshot(model, optimizer, scheduler):
    return ([p.detach().numpy().copy() for p in model.parameters()],
            [g["lr"] for g in optimizer.param_groups], dict(scheduler.state_dict()),
            sl.random.default_generator.get_state().tolist())


@pytest.mark.parametrize("damage", ["no scheduler", "another optimizer", "another model",
                                    "another scheduler", "bad generator"])
def test_load_checkpoint_is_all_or_nothing(tmp_path, damage):
    """Nothing changes when any requested part is missing or does not fit (the weights and the
    optimizer's lr used to be overwritten before a missing scheduler raised)."""
    saved = _training_objects()
    sl.save_checkpoint(tmp_path / "c.st", model=saved[0], optimizer=saved[1],
                       scheduler=None if damage == "no scheduler" else saved[2],
                       generators={"data": sl.Generator().manual_seed(3)})
    model, optimizer, scheduler = _training_objects(4 if damage == "another model" else 3)
    generators = {"data": sl.Generator()}
    if damage == "another optimizer":
        optimizer = sl.optim.SGD([*model.parameters(), nn.Parameter(sl.ones(1))], lr=0.3)
    if damage == "another scheduler":
        scheduler = sl.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9)
    if damage == "bad generator":
        state = sl.load(tmp_path / "c.st")
        state["rng"]["data"] = sl.tensor([1, 2, 3], dtype=sl.uint8)
        sl.save(state, tmp_path / "c.st")
    sl.manual_seed(11)
    before = _snapshot(model, optimizer, scheduler)
    with pytest.raises(ValueError, match="nothing was restored"):
        sl.load_checkpoint(tmp_path / "c.st", model=model, optimizer=optimizer,
                           scheduler=scheduler, generators=generators)
    after = _snapshot(model, optimizer, scheduler)
    for old, new in zip(before[0], after[0]):
        numpy.testing.assert_array_equal(old, new)
    assert before[1:] == after[1:]


def test_load_checkpoint_not_strict_returns_the_incompatible_keys(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    sl.save_checkpoint(tmp_path / "c.st", model=model)
    larger = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Missing key"):
        sl.load_checkpoint(tmp_path / "c.st", model=larger)
    loaded = sl.load_checkpoint(tmp_path / "c.st", model=larger, strict=False)
    assert loaded["incompatible_keys"].missing_keys == ["2.weight", "2.bias"]
    assert loaded["incompatible_keys"].unexpected_keys == []
    numpy.testing.assert_array_equal(larger[1].weight.detach().numpy(),
                                  model[1].weight.detach().numpy())


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask_like_open(tmp_path, umask):
    from seqlib.models import TransformerLM, TransformerLMConfig
    from seqlib.tokenizers import CharTokenizer

    model = TransformerLM(TransformerLMConfig(vocab_size=5, d_model=4, n_layers=1, n_heads=1))
    previous = os.umask(umask)
    try:
        sl.save({"a": sl.ones(2)}, tmp_path / "plain.safetensors")
        sl.save_checkpoint(tmp_path / "run.safetensors", model=model, step=1)
        model.save_pretrained(tmp_path / "model", tokenizer=CharTokenizer(list("abcde")))
        (tmp_path / "reference").write_text("written by open()")
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert _mode(tmp_path / "reference") == expected
    written = [tmp_path / "plain.safetensors", tmp_path / "run.safetensors",
               *sorted((tmp_path / "model").iterdir())]
    assert [p.name for p in written[2:]] == ["config.json", "model.safetensors",
                                             "tokenizer.json"]
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(expected) for p in written}


def test_rewriting_a_file_keeps_its_mode_as_open_does(tmp_path):
    path = tmp_path / "w.safetensors"
    sl.save({"a": sl.ones(2)}, path)
    os.chmod(path, 0o640)
    sl.save({"a": sl.zeros(2)}, path)
    assert _mode(path) == 0o640 and sl.load(path)["a"].tolist() == [0.0, 0.0]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from seqlib.atomic_write import atomic_write

    path = tmp_path / "config.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(path) as temporary:
            temporary.write_text("half of the new")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and sorted(tmp_path.iterdir()) == [path]


def _tied_lm_step(model, optimizer, tokens):
    _, loss = model(tokens[:, :-1], tokens[:, 1:])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def test_a_checkpoint_with_tied_weights_resumes_bit_identically(tmp_path):
    from seqlib.models import TransformerLM, TransformerLMConfig

    def setup():
        sl.manual_seed(0)
        model = TransformerLM(TransformerLMConfig(vocab_size=9, d_model=8, n_layers=1,
                                                  n_heads=2, dropout=0.2))
        return model, optim.AdamW(model.parameters(), lr=0.01)

    tokens = sl.randint(0, 9, (2, 7), generator=sl.Generator().manual_seed(1))
    model, optimizer = setup()
    straight = [_tied_lm_step(model, optimizer, tokens) for _ in range(4)]
    model, optimizer = setup()
    first = [_tied_lm_step(model, optimizer, tokens) for _ in range(2)]
    sl.save_checkpoint(tmp_path / "lm.st", model=model, optimizer=optimizer, step=2)
    sl.manual_seed(7)
    model, optimizer = setup()
    sl.load_checkpoint(tmp_path / "lm.st", model=model, optimizer=optimizer)
    assert model.head.weight is model.token_embedding.weight
    second = [_tied_lm_step(model, optimizer, tokens) for _ in range(2)]
    assert first + second == straight
    from safetensors.numpy import load_file

    assert "model.head.weight" not in load_file(str(tmp_path / "lm.st"))


def test_load_checkpoint_with_a_malformed_rng_entry_names_the_file(tmp_path):
    sl.save({"rng": [1, 2], "step": 0}, tmp_path / "odd.st")
    with pytest.raises(ValueError, match="odd.st is not a checkpoint"):
        sl.load_checkpoint(tmp_path / "odd.st", generators={"data": sl.Generator()})
