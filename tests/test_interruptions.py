"""Interrupted runs and writes: Ctrl-C or SIGTERM anywhere in examples/train_lm.py's training
loop saves a step boundary, and ``--resume`` then ends bit-identical to a run never interrupted;
an interrupted or killed ``atomic_write`` leaves no temporary file behind for long.

The training runs are subprocesses with hard timeouts (signals are process-wide); the signals
arrive at chosen points through tests/interrupt_train_lm.py, and once at a random time."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

import seqlib as sl
from seqlib.atomic_write import atomic_write, remove_stale_temporaries
from seqlib.checkpoint import DeferredInterrupt

TESTS = Path(__file__).resolve().parent
TRAIN_LM, DRIVER = TESTS.parent / "examples" / "train_lm.py", TESTS / "interrupt_train_lm.py"
SAMPLE = str(TESTS / "data" / "hamlet_sample.txt")
TINY = ["--data", SAMPLE, "--tokenizer", "char", "--d-model", "16", "--n-layers", "1",
        "--n-heads", "2", "--block-size", "16",
        "--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "5",
        "--dropout", "0.1", "--warmup", "3"]  # dropout: the default generator matters too
STEPS = 12
LOOP = [*TINY, "--steps", str(STEPS), "--eval-every", "5", "--checkpoint-every", "4"]
TIMEOUT = 120  # seconds per subprocess: a hang fails the test instead of the suite


def run(*command, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, command)], capture_output=True, text=True,
                          timeout=timeout)


def train(out: Path, *flags) -> subprocess.CompletedProcess:
    result = run(TRAIN_LM, "--out", out, *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def flat(state, prefix="") -> dict:
    """Every array and value of a loaded checkpoint, by its path."""
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in flat(value, f"{prefix}{key}.")
                .items()}
    if isinstance(state, (list, tuple)):
        return flat(dict(enumerate(state)), prefix)
    return {prefix: state.numpy() if hasattr(state, "numpy") else state}


def assert_bit_identical(resumed: Path, reference: Path) -> None:
    """The same weights, optimizer moments, scheduler, step and generators, to the bit."""
    for name in ("model.safetensors", "checkpoint.safetensors"):
        ours, theirs = flat(sl.load(resumed / name)), flat(sl.load(reference / name))
        assert ours.keys() == theirs.keys()
        differ = [key for key in ours if not numpy.array_equal(ours[key], theirs[key])]
        assert not differ, f"{name}: {differ[:5]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run never interrupted."""
    out = tmp_path_factory.mktemp("reference")
    train(out, *LOOP)
    return out


# ------------------------------------------------------------------ train_lm.py, interrupted

@pytest.mark.parametrize("events, step, status", [
    ("1:data", 1, 130),
    ("2:forward", 2, 130),
    ("3:backward", 3, 130),
    ("5:clip", 5, 130),  # a validation step
    ("4:optimizer", 4, 130),  # a checkpoint step
    ("7:scheduler", 7, 130),
    ("6:optimizer:SIGTERM", 6, 143),
    ("3:backward,3:save", 3, 130),  # a second Ctrl-C while the checkpoint is written
    ("8:save", 8, 130),  # Ctrl-C while the periodic checkpoint is written
])
def test_an_interrupted_run_resumes_bit_identically(tmp_path, reference, events, step, status):
    interrupted = run(DRIVER, events, "--", "--out", tmp_path, *LOOP)
    assert interrupted.returncode == status, interrupted.stderr[-2000:]
    assert f"interrupted at step {step}: saved to {tmp_path}" in interrupted.stdout
    assert sl.load(tmp_path / "checkpoint.safetensors")["step"] == step
    assert not list(tmp_path.glob(".*.tmp"))
    resumed = train(tmp_path, "--resume")
    assert f"resumed the run in {tmp_path} at step {step}" in resumed.stdout
    assert_bit_identical(tmp_path, reference)


LONG = [*TINY, "--steps", "1000", "--eval-every", "100", "--checkpoint-every", "50"]


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory) -> Path:
    """A longer run never interrupted (a few seconds)."""
    out = tmp_path_factory.mktemp("long_reference")
    train(out, *LONG)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_a_ctrl_c_at_a_random_time_resumes_bit_identically(tmp_path, long_reference, seed):
    out, log = tmp_path / "out", tmp_path / "stderr"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, str(TRAIN_LM), "--out", str(out), *LONG],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            deadline = time.monotonic() + TIMEOUT
            while "training:" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.01)  # the progress bar is up: the loop has begun
            time.sleep(random.Random(seed).uniform(0, 0.5))  # 1000 steps take longer
            process.send_signal(signal.SIGINT)
            stdout, _ = process.communicate(timeout=TIMEOUT)
        finally:
            process.kill()
    assert process.returncode == 130, log.read_text()[-2000:]
    step = sl.load(out / "checkpoint.safetensors")["step"]
    assert 0 < step < 1000 and f"interrupted at step {step}" in stdout
    train(out, "--resume")
    assert_bit_identical(out, long_reference)


def test_resume_removes_the_temporaries_of_a_killed_save(tmp_path):
    train(tmp_path, *TINY, "--steps", "2")
    for name in ("checkpoint.safetensors", "model.safetensors", "train_config.json"):
        killed_while_writing(tmp_path / name)
    assert len(list(tmp_path.glob(".*.tmp"))) == 3
    others = decoys(tmp_path)
    train(tmp_path, "--resume", "--steps", "3")
    assert sorted(tmp_path.glob(".*.tmp")) == sorted(p for p in others if p.match(".*.tmp"))
    assert all(p.exists() or p.is_symlink() for p in others)


# ------------------------------------------------------------------ DeferredInterrupt

class NotDeferred(Exception):
    pass


@pytest.fixture
def undeferred():
    """SIGINT and SIGTERM raise NotDeferred (a failure, not the end of the test session)."""

    def handler(number, frame):
        raise NotDeferred(f"signal {number} was not deferred")

    before = {number: signal.signal(number, handler) for number in (signal.SIGINT,
                                                                      signal.SIGTERM)}
    yield handler
    for number, previous in before.items():
        signal.signal(number, previous)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_deferred_interrupt_records_the_signal_and_restores_the_handler(number, capfd,
                                                                         undeferred):
    with DeferredInterrupt(notice="stopping\n") as interrupt:
        os.kill(os.getpid(), number)
        os.kill(os.getpid(), signal.SIGINT)  # a second one changes nothing
        assert interrupt.requested == number
    assert signal.getsignal(number) is undeferred
    assert capfd.readouterr().err == "stopping\n"  # once
    with pytest.raises(NotDeferred):
        os.kill(os.getpid(), number)
        time.sleep(1)  # the handler runs at the next bytecode; this never ends in time


def test_deferred_interrupt_does_nothing_outside_the_main_thread():
    import threading

    results = []

    def body():
        with DeferredInterrupt() as interrupt:
            results.append(interrupt.requested)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert results == [0] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------ atomic_write

WRITER = """
import sys, time
from pathlib import Path
from seqlib.atomic_write import atomic_write
with atomic_write(sys.argv[1]) as temporary:
    temporary.write_bytes(b"x" * 1_300_000)
    (temporary.parent / ".tmpAbC123").write_bytes(b"half")  # as safetensors' own temporary
    print("writing", flush=True)
    sys.stdin.readline()  # until the test says go on, or kills us
"""


def writer(path: Path) -> subprocess.Popen:
    """A process in the middle of an ``atomic_write`` of ``path``."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline() == "writing\n"
    return process


def killed_while_writing(path: Path) -> None:
    process = writer(path)
    process.kill()
    process.communicate(timeout=TIMEOUT)  # and close its pipes


def decoys(folder: Path) -> list:
    """Files that look like temporaries but are not those of model.safetensors."""
    (folder / "elsewhere").mkdir()
    paths = [folder / ".other.json.0123abcd.tmp", folder / ".model.safetensors.tmp",
             folder / ".model.safetensors.0123abcd.tmp.bak", folder / "model.safetensors.tmp",
             folder / ".model.safetensors.0123ABCD.tmp", folder / "notes.tmp"]
    for path in paths:
        path.write_text("not a temporary of model.safetensors")
    link = folder / ".model.safetensors.89abcdef.tmp"
    link.symlink_to(folder / "elsewhere", target_is_directory=True)
    return [*paths, link]


@pytest.mark.parametrize("exception", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_an_interrupted_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path, exception):
    path = tmp_path / "model.safetensors"
    sl.save({"a": sl.ones(3)}, path)
    with pytest.raises(exception):
        with atomic_write(path) as temporary:
            temporary.write_bytes(b"half of the new")
            (temporary.parent / ".tmpAbC123").write_bytes(b"as safetensors' temporary")
            raise exception()
    assert sorted(tmp_path.iterdir()) == [path] and sl.load(path)["a"].tolist() == [1, 1, 1]


def test_the_next_write_removes_the_temporary_of_a_killed_one_and_nothing_else(tmp_path):
    path = tmp_path / "model.safetensors"
    killed_while_writing(path)
    (stale,) = tmp_path.glob(".model.safetensors.*.tmp")
    assert (stale / "model.safetensors").stat().st_size == 1_300_000
    others = decoys(tmp_path)
    sl.save({"a": sl.ones(2)}, path)
    assert not stale.exists() and all(p.exists() or p.is_symlink() for p in others)
    assert (tmp_path / "elsewhere").is_dir() and sl.load(path)["a"].tolist() == [1, 1]


def test_a_live_writer_keeps_its_temporary_and_finishes(tmp_path):
    path = tmp_path / "config.json"
    process = writer(path)
    try:
        with atomic_write(path) as temporary:  # a concurrent write: last one wins
            temporary.write_text("ours")
        assert remove_stale_temporaries(path) == []
        assert len(list(tmp_path.glob(".config.json.*.tmp"))) == 1
        process.communicate("go on\n", timeout=TIMEOUT)
        assert process.returncode == 0
    finally:
        process.kill()
        process.communicate()
    assert sorted(tmp_path.iterdir()) == [path] and path.stat().st_size == 1_300_000
