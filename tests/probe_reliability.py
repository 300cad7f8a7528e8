"""A probe of seqlib under bad input, faults and interruption, classed as issue 14 counts them.

Each case runs in a forked child with a deadline and is classed as:
  ok      a clear error (the expected type, a message naming the argument) or the right result
  unclear an error of another type, or one whose message does not say what was wrong
  crash   an error from deep inside NumPy or Python, or the child died
  silent  no error and a wrong result
  hang    the deadline passed
  loss    state a user saved or held was lost or corrupted

Not collected by pytest (its tests are in test_bad_input.py, test_hostile_files.py,
test_dataloader_faults.py, test_interruptions.py, ...); run it to see where seqlib stands:

    python tests/probe_reliability.py            # one line per case, then the counts
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy

import seqlib as sl
from seqlib import nn

CASES = []  # (group, name, function, expected exception or None, message pattern)


def case(group: str, expect=None, match: str = ""):
    """Register ``function`` as a probe: it raises ``expect`` (message matching ``match``), or,
    when ``expect`` is None, returns "ok" / "silent" / "loss" itself."""
    def register(function):
        CASES.append((group, function.__name__, function, expect, match))
        return function
    return register


def _encoder(builder="TransformerEncoderBuilder", **kwargs):
    from seqlib import builders

    config = dict(attention_type="causal-linear", n_layers=1, n_heads=2, query_dimensions=4,
                  value_dimensions=4, feed_forward_dimensions=8)
    return getattr(builders, builder).from_kwargs(**{**config, **kwargs}).get().eval()


def _lm():
    from seqlib.models import TransformerLM, TransformerLMConfig

    return TransformerLM(TransformerLMConfig(vocab_size=11, d_model=8, n_layers=1, n_heads=2))


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="probe"))


# ---- 5: nonsense arguments ----------------------------------------------------------------
@case("nonsense", ValueError, "learning rate")
def lr_nan():
    sl.optim.AdamW([nn.Parameter(sl.ones(2))], lr=float("nan"))


@case("nonsense", ValueError, "max_norm")
def clip_negative():
    p = nn.Parameter(sl.ones(2))
    p.grad = sl.ones(2)
    nn.utils.clip_grad_norm_([p], -1.0)


@case("nonsense", ValueError, "n_layers")
def zero_layers():
    _encoder(n_layers=0)


@case("nonsense", ValueError, "n_heads")
def zero_heads():
    _encoder(n_heads=0)


@case("nonsense", ValueError, "top_k")
def generate_top_k_zero():
    _lm().generate([1, 2], max_new_tokens=2, do_sample=True, top_k=0)


@case("nonsense", ValueError, "temperature")
def generate_temperature_nan():
    _lm().generate([1, 2], max_new_tokens=2, do_sample=True, temperature=float("nan"))


@case("nonsense", RuntimeError, "NaN|nan")
def generate_nan_logits():
    model = _lm()
    with sl.no_grad():
        model.head.weight.fill_(float("nan"))
    model.generate([1, 2], max_new_tokens=3)


@case("nonsense", ValueError, "eos")
def generate_eos_outside_vocabulary():
    _lm().generate([1, 2], max_new_tokens=2, eos_token_id=99)


@case("nonsense", TypeError, "float")
def generate_float_prompt():
    _lm().generate([1.5, 2.0], max_new_tokens=2)


@case("nonsense", ValueError, "-1")
def char_decode_negative():
    sl.tokenizers.CharTokenizer.fit("abc").decode([-1])


@case("nonsense", ZeroDivisionError, "division")
def integer_modulo_zero():
    sl.tensor([5, 7]) % sl.tensor([0, 2])


@case("nonsense", ZeroDivisionError, "division")
def integer_floor_divide_zero():
    sl.tensor([5, 7]) // 0


@case("nonsense", ValueError, r"\(N, 8\)")
def twin_given_a_sequence():
    _encoder("RecurrentEncoderBuilder")(sl.randn(2, 5, 8))


@case("nonsense", ValueError, "state must be")
def twin_given_another_models_state():
    _, state = _encoder("RecurrentEncoderBuilder", n_heads=4, query_dimensions=2,
                        value_dimensions=2)(sl.randn(2, 8))
    _encoder("RecurrentEncoderBuilder")(sl.randn(2, 8), state)


@case("nonsense", TypeError, "attn_mask")
def attn_mask_bool_tensor():
    _encoder()(sl.randn(2, 5, 8), attn_mask=sl.ones(5, 5, dtype=sl.bool))


@case("nonsense", TypeError, "length_mask")
def length_mask_list():
    _encoder()(sl.randn(2, 5, 8), length_mask=[5, 5])


@case("nonsense")
def transformer_length_zero():
    y = _encoder()(sl.randn(2, 0, 8), attn_mask=sl.masking.TriangularCausalMask(0))
    return "ok" if y.shape == (2, 0, 8) else "silent"


@case("nonsense", ValueError, "sequence length")
def lstm_length_zero():
    nn.LSTM(8, 4, batch_first=True)(sl.randn(2, 0, 8))


@case("nonsense")
def causal_product_length_zero():
    from seqlib.causal_product import causal_dot_product

    q = sl.randn(1, 2, 0, 4)
    return "ok" if causal_dot_product(q, q, q).shape == (1, 2, 0, 4) else "silent"


@case("nonsense", ValueError, "dropout")
def dropout_above_one():
    _encoder(dropout=1.5)


@case("nonsense", ValueError, "beta")
def adam_bad_betas():
    sl.optim.Adam([nn.Parameter(sl.ones(2))], betas=(0.9, 1.5))


@case("nonsense", ValueError, "top_p")
def generate_top_p_above_one():
    _lm().generate([1, 2], max_new_tokens=2, do_sample=True, top_p=1.5)


@case("nonsense", ValueError, "prefetch_factor")
def prefetch_zero():
    list(sl.data.DataLoader(sl.data.TensorDataset(sl.arange(4)), num_workers=1,
                            prefetch_factor=0))


# ---- 6: half precision ----------------------------------------------------------------------
@case("float16")
def half_division_gradient():
    a = sl.tensor([1.0], dtype=sl.float16, requires_grad=True)
    b = sl.tensor([300.0], dtype=sl.float16, requires_grad=True)
    (a / b).sum().backward()
    return "ok" if math.isclose(b.grad.item(), -1 / 300 ** 2, rel_tol=1e-2) else "silent"


@case("float16")
def half_norm():
    return "ok" if sl.tensor([300.0], dtype=sl.float16).norm().item() == 300 else "silent"


@case("float16")
def half_layer_norm_of_large_values():
    x = sl.tensor(numpy.linspace(-300, 300, 8), dtype=sl.float16)
    y = sl.nn.functional.layer_norm(x, (8,)).numpy().astype(float)
    reference = (x.numpy().astype(float) - x.numpy().astype(float).mean())
    reference /= reference.std()
    return "ok" if numpy.abs(y - reference).max() < 1e-2 else "silent"


@case("float16")
def half_causal_linear_encoder_gradients():
    model = _encoder(dropout=0.0)
    x = numpy.random.default_rng(0).standard_normal((1, 256, 8))
    seed = numpy.random.default_rng(1).standard_normal((1, 256, 8))  # not a sum of LayerNorm's
    grads = {}                                                       # output: that is 0
    for dtype in (sl.float64, sl.float16):
        model.to(dtype)
        model.zero_grad()
        y = model(sl.tensor(x, dtype=dtype), attn_mask=sl.masking.TriangularCausalMask(256))
        y.backward(sl.tensor(seed, dtype=dtype))
        grads[dtype] = model.layers[0].attention.query_projection.weight.grad.numpy()
    error = numpy.abs(grads[sl.float16] - grads[sl.float64]).max()
    return "ok" if error / numpy.abs(grads[sl.float64]).max() < 2e-2 else "silent"


# ---- 7: memory ------------------------------------------------------------------------------
@case("memory")
def causal_mask_is_lazy():
    import tracemalloc

    tracemalloc.start()
    shape = sl.masking.TriangularCausalMask(65536).shape
    peak = tracemalloc.get_traced_memory()[1]
    return "ok" if shape == (65536, 65536) and peak < 10e6 else "silent"


# ---- 4: corrupt and hostile files -----------------------------------------------------------
def _raw_safetensors(header: dict, data: bytes = b"") -> Path:
    import json
    import struct

    path = _tmp() / "hostile.safetensors"
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _hostile(header: dict, data: bytes = b""):
    sl.load(_raw_safetensors(header, data))


for _name, _header in {
    "no_data_offsets": {"t": {"dtype": "F32", "shape": [1]}},
    "entry_not_a_dict": {"t": [1, 2]},
    "string_offsets": {"t": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}},
    "offsets_past_the_end": {"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}},
    "metadata_invalid_json": {"__metadata__": {"format": "seqlib", "version": "2",
                                               "structure": "{not json"}},
    "metadata_nested_deep": {"__metadata__": {"format": "seqlib", "version": "2",
                                              "structure": "[" * 10000 + "]" * 10000}},
}.items():
    def _make(header=_header):
        return lambda: _hostile(header, b"\0" * 4)
    _function = _make()
    _function.__name__ = f"safetensors_{_name}"
    case("files", ValueError, "hostile.safetensors")(_function)


@case("files", ValueError, "tokenizer.model")
def empty_sentencepiece_model():
    path = _tmp() / "tokenizer.model"
    path.write_bytes(b"")
    sl.tokenizers.load_tokenizer(path)


@case("files", ValueError, "tokenizer.model")
def garbage_sentencepiece_model():
    path = _tmp() / "tokenizer.model"
    path.write_bytes(os.urandom(200))
    sl.tokenizers.load_tokenizer(path)


def _saved_model_with_config(text: str) -> Path:
    directory = _tmp()
    _lm().save_pretrained(directory)
    (directory / "config.json").write_text(text)
    return directory


@case("files", ValueError, "config.json")
def config_invalid_json():
    sl.models.from_pretrained(_saved_model_with_config("{oops"))


@case("files", ValueError, "config.json")
def config_a_list():
    sl.models.from_pretrained(_saved_model_with_config("[1, 2]"))


@case("files", ValueError, "config.json.*colour|colour.*config.json")
def config_unknown_key():
    sl.models.from_pretrained(_saved_model_with_config(
        '{"model_type": "transformer", "vocab_size": 11, "colour": 3}'))


@case("files", ValueError, "model.safetensors")
def truncated_checkpoint():
    directory = _tmp()
    _lm().save_pretrained(directory)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    sl.models.from_pretrained(directory)


# ---- 3: all-or-nothing loads, 2: nothing lost -----------------------------------------------
@case("loads")
def load_checkpoint_without_scheduler_changes_nothing():
    model = nn.Linear(2, 2)
    optimizer = sl.optim.AdamW(model.parameters(), lr=0.1)
    path = _tmp() / "c.st"
    sl.save_checkpoint(path, model=nn.Linear(2, 2), optimizer=optimizer)
    before = model.weight.detach().numpy().copy()
    scheduler = sl.optim.lr_scheduler.StepLR(optimizer, 1)
    try:
        sl.load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    except ValueError:
        pass
    same = numpy.array_equal(before, model.weight.detach().numpy())
    return "ok" if same and optimizer.param_groups[0]["lr"] == 0.1 else "loss"


@case("loads")
def load_checkpoint_not_strict_reports_keys():
    path = _tmp() / "c.st"
    sl.save_checkpoint(path, model=nn.Sequential(nn.Linear(2, 2)))
    loaded = sl.load_checkpoint(path, model=nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)),
                                strict=False)
    return "ok" if loaded["incompatible_keys"].missing_keys == ["1.weight", "1.bias"] \
        else "silent"


@case("loads")
def stale_tokenizer_replaced():
    directory = _tmp()
    (directory / "tokenizer.model").write_bytes(b"old")
    _lm().save_pretrained(directory, tokenizer=sl.tokenizers.CharTokenizer.fit("abcdefghij"))
    return "ok" if not (directory / "tokenizer.model").exists() else "loss"


@case("loads", ValueError, "vocab")
def tokenizer_larger_than_model():
    directory = _tmp()
    _lm().save_pretrained(directory)
    sl.tokenizers.CharTokenizer.fit("abcdefghijklmnopq").save(directory / "tokenizer.json")
    sl.models.from_pretrained(directory)


@case("loads")
def interrupted_save_leaves_old_file_and_no_temporary():
    path = _tmp() / "w.st"
    sl.save({"w": sl.ones(3)}, path)

    class Bomb:
        pass

    try:
        sl.save({"w": sl.zeros(3), "bad": Bomb()}, path)
    except TypeError:
        pass
    leftovers = [p for p in path.parent.iterdir() if p.name != "w.st"]
    intact = sl.load(path)["w"].tolist() == [1.0, 1.0, 1.0]
    return "ok" if intact and not leftovers else "loss"


@case("loads")
def saved_files_follow_the_umask():
    previous = os.umask(0o022)
    try:
        path = _tmp() / "w.st"
        sl.save({"w": sl.ones(1)}, path)
    finally:
        os.umask(previous)
    return "ok" if (path.stat().st_mode & 0o777) == 0o644 else "silent"


# ---- 1: workers -----------------------------------------------------------------------------
class _Dying(sl.data.Dataset):
    def __init__(self, how):
        self.how = how

    def __len__(self):
        return 8

    def __getitem__(self, index):
        if index == 3:
            if self.how == "exit":
                os._exit(3)
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.how == "interrupt":
                raise KeyboardInterrupt
            if self.how == "sleep":
                time.sleep(60)
        return sl.tensor([index])


def _loader(how, **kwargs):
    return sl.data.DataLoader(_Dying(how), batch_size=1, num_workers=2, **kwargs)


@case("workers", RuntimeError, "worker")
def worker_exits():
    list(_loader("exit"))


@case("workers", RuntimeError, "worker.*(SIGKILL|killed)")
def worker_killed():
    list(_loader("kill"))


@case("workers", RuntimeError, "KeyboardInterrupt.*worker")
def worker_interrupted():
    list(_loader("interrupt"))


@case("workers", RuntimeError, "timed out")
def worker_too_slow():
    list(_loader("sleep", timeout=1))


@case("workers", ValueError, "init")
def worker_init_raises():
    def init(worker_id):
        raise ValueError("init failed")

    list(_loader("none", worker_init_fn=init))


@case("workers")
def break_out_leaves_no_children():
    import multiprocessing

    for _ in _loader("none"):
        break
    time.sleep(0.5)
    return "ok" if not multiprocessing.active_children() else "loss"


# ---- 8: the main job on ordinary data -------------------------------------------------------
def _train(text: str, *extra) -> int:
    import subprocess

    directory = _tmp()
    (directory / "data.txt").write_text(text)
    script = Path(__file__).resolve().parents[1] / "examples" / "train_lm.py"
    result = subprocess.run(
        [sys.executable, str(script), "--data", str(directory / "data.txt"), "--steps", "2",
         "--tokenizer", "char",
         "--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "16",
         "--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "5", "--out",
         str(directory / "run"), *extra], capture_output=True, text=True, timeout=120)
    return result


@case("main job")
def validation_only_characters():
    result = _train("abcdefghij " * 300 + "üßü " * 40)
    return "ok" if result.returncode == 0 else "crash"


@case("main job")
def validation_split_too_short():
    result = _train("abcdefghij " * 20)
    lines = result.stderr.strip().splitlines()
    return "ok" if result.returncode != 0 and len(lines) == 1 and "block-size" in lines[0] \
        else "unclear"


# ---- running ------------------------------------------------------------------------------
def classify(function, expect, match) -> str:
    try:
        outcome = function()
    except BaseException as error:  # noqa: BLE001 - classing every outcome is the point
        if expect is not None and isinstance(error, expect):
            return "ok" if re.search(match, str(error)) else "unclear"
        frames = traceback.extract_tb(error.__traceback__)
        deep = frames and ("numpy" in frames[-1].filename or "site-packages" in
                           frames[-1].filename and "seqlib" not in frames[-1].filename)
        return "crash" if deep or isinstance(error, (RecursionError, AttributeError,
                                                     KeyError, IndexError)) else "unclear"
    if expect is not None:
        return "silent"
    return outcome if outcome in ("ok", "silent", "loss", "crash", "unclear") else "silent"


def run(group, name, function, expect, match, deadline: float = 60) -> str:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        result = classify(function, expect, match)
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            answer = os.read(read, 32).decode()
            os.close(read)
            return answer or "crash"
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read)
    return "hang"


def main() -> dict:
    counts = dict.fromkeys(("ok", "unclear", "crash", "silent", "hang", "loss"), 0)
    for group, name, function, expect, match in CASES:
        outcome = run(group, name, function, expect, match)
        counts[outcome] += 1
        print(f"{outcome:8s} {group:10s} {name}", flush=True)
    print(f"\n{len(CASES)} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


if __name__ == "__main__":
    main()
