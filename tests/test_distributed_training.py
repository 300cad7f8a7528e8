"""examples/train_lm.py --distributed: two processes that split every batch follow the
one-process run, and stop, save and resume together.

The jobs run ``mpiexec -n 2 python -m mpi4py tests/train_lm_job.py ...`` (which calls the
example's main() and writes what it returns) with a hard deadline: a job that hangs is killed
and fails its test. They need mpi4py and an ``mpiexec`` (``pip install ".[test]"``); without
them they are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

import seqlib as sl
import seqlib.distributed as dist

TESTS = Path(__file__).resolve().parent
DRIVER, SAMPLE = TESTS / "train_lm_job.py", str(TESTS / "data" / "hamlet_sample.txt")
# tests/test_examples.py's tiny model, with 4 windows per step: 2 for each of the processes
TINY = ["--data", SAMPLE, "--tokenizer", "char", "--d-model", "16", "--n-layers", "1",
        "--n-heads", "2", "--block-size", "16",
        "--batch-size", "4", "--eval-batches", "2", "--sample-tokens", "5",
        "--steps", "6", "--warmup", "2", "--eval-every", "3", "--checkpoint-every", "4"]
# Dropout 0 where one process is compared with two: each process draws its own dropout masks
# (dist.rank_seed), so with dropout the two runs would differ by their masks, not by arithmetic.
SAME = [*TINY, "--dropout", "0"]
RESUMED = [*TINY, "--dropout", "0.1"]  # where only two-process runs are compared: masks matter
# Float32 keeps about 7 significant digits. The two processes each sum the gradient of their
# half of the batch, and the all-reduce then adds the halves: a different order of additions
# than one process summing every row, so each step's gradients differ in their last bits. Six
# AdamW steps carry that along: the weights end ~2e-7 apart, the losses ~1e-7 (relative).
# 1e-5 is 50 times that, and far below what training on other rows changes (the same six steps
# on half the batch end 1e-2 apart).
TOLERANCE = 1e-5
DEADLINE = 120.0  # seconds per job; the jobs here take a few


def _mpiexec() -> str | None:
    """The mpiexec beside this Python (a venv's, from the mpich wheel), else on the PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or not dist.is_mpi_available(),
    reason="needs mpi4py and an mpiexec: pip install \".[test]\" (or \"seqlib[distributed]\")")


def start(out: Path, flags: list, processes: int = 2, signal_at: str = "") -> subprocess.Popen:
    """A job running train_lm.py with ``flags`` and ``--out out`` in ``processes`` processes
    (``--distributed``), or alone (``processes=0``); it writes its results to out/results."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    launch = [MPIEXEC, "-n", str(processes), sys.executable, "-m", "mpi4py"] if processes else [
        sys.executable]
    command = [*launch, str(DRIVER), str(out / "results"), *([signal_at] if signal_at else []),
               "--", *flags, "--out", str(out), *(["--distributed"] if processes else [])]
    # cwd outside the checkout: the jobs import the installed seqlib, as the suite does
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=out.parent, start_new_session=True)


def finish(job: subprocess.Popen, deadline: float = DEADLINE) -> tuple:
    """``(exit status, output)`` of a job; one still running at ``deadline`` is killed, with all
    its processes, and fails the test."""
    try:
        output, _ = job.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        pytest.fail(f"{' '.join(job.args[:3])} hung past {deadline:g} s; output:\n{output}")
    return job.returncode, output


def train(out: Path, flags: list, processes: int = 2, signal_at: str = "",
          status: int = 0) -> list:
    """Run a job to its end: every process's results, in rank order."""
    code, output = finish(start(out, flags, processes, signal_at))
    assert code == status, output[-3000:]
    results = [json.loads(path.read_text()) for path in
               sorted((out / "results").glob("rank*.json"))]
    assert [r["rank"] for r in results] == list(range(max(processes, 1))), output[-3000:]
    assert all(r["world_size"] == max(processes, 1) for r in results)
    out.joinpath("output.txt").write_text(output)
    return results


def weights(out: Path) -> dict:
    return {name: tensor.numpy() for name, tensor in sl.load(out / "model.safetensors").items()}


def flat(state, prefix="") -> dict:
    """Every array and value of a loaded checkpoint, by its path."""
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in flat(value, f"{prefix}{key}.")
                .items()}
    if isinstance(state, (list, tuple)):
        return flat(dict(enumerate(state)), prefix)
    return {prefix: state.numpy() if hasattr(state, "numpy") else state}


def assert_bit_identical(resumed: Path, reference: Path) -> None:
    """The same weights, optimizer moments, scheduler, step and every process's generators."""
    for name in ("model.safetensors", "checkpoint.safetensors"):
        ours, theirs = flat(sl.load(resumed / name)), flat(sl.load(reference / name))
        assert ours.keys() == theirs.keys()
        differ = [key for key in ours if not numpy.array_equal(ours[key], theirs[key])]
        assert not differ, f"{name}: {differ[:5]}"


def assert_close(ours: Path, theirs: Path) -> None:
    mine, other = weights(ours), weights(theirs)
    assert mine.keys() == other.keys()
    for name in mine:
        numpy.testing.assert_allclose(mine[name], other[name], rtol=0, atol=TOLERANCE,
                                      err_msg=name)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple:
    """The run of one process (no --distributed): its results and its folder."""
    out = tmp_path_factory.mktemp("one_process")
    return train(out, SAME, processes=0)[0], out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple:
    """The same run in two processes that split every batch."""
    out = tmp_path_factory.mktemp("two_processes")
    return train(out, SAME), out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A two-process run with dropout, never interrupted."""
    out = tmp_path_factory.mktemp("reference")
    train(out, RESUMED)
    return out


# ---- one process and two: the same training ---------------------------------------------
@needs_mpi
def test_two_processes_follow_the_loss_trajectory_of_one(one_process, two_processes):
    alone, alone_out = one_process
    (first, second), out = two_processes
    assert first["losses"] == second["losses"]  # averaged by an all-reduce: the same on both
    assert first["step"] == second["step"] == alone["step"] == 6
    assert first["first_batch"] + second["first_batch"] == alone["first_batch"]  # 2 rows each
    numpy.testing.assert_allclose(first["losses"], alone["losses"], rtol=TOLERANCE)
    numpy.testing.assert_allclose(first["val_loss"], alone["val_loss"], rtol=TOLERANCE)
    assert first["losses"][-1] < first["losses"][0] - 0.05  # it trains: the test can tell
    assert_close(out, alone_out)


@needs_mpi
def test_only_rank_0_prints(two_processes):
    _, out = two_processes
    output = (out / "output.txt").read_text()
    for line in ("linear model, ", "step 3: validation loss", "step 6: validation loss",
                 "--- sample ---"):
        assert output.count(line) == 1, output[-3000:]


# ---- stopped and resumed ----------------------------------------------------------------
@needs_mpi
@pytest.mark.parametrize("signal_at, step, status", [
    ("3:1", 3, 130),  # Ctrl-C to rank 1 alone: rank 0 stops with it
    ("4:0:SIGTERM", 4, 143),  # SIGTERM to rank 0 in a checkpoint step
    ("1:1", 1, 130),
])
def test_a_signal_to_one_process_stops_all_at_one_step(tmp_path, reference, signal_at, step,
                                                       status):
    out = tmp_path / "run"
    results = train(out, RESUMED, signal_at=signal_at, status=status)
    assert [r["step"] for r in results] == [step, step]
    assert [r["interrupted"] for r in results] == [status - 128] * 2
    state = sl.load(out / "checkpoint.safetensors")
    assert state["step"] == step
    dropout = [state["rng"]["default"], state["rng_ranks"]["1"]["default"]]
    assert not numpy.array_equal(*(g.numpy() for g in dropout))  # each process its own masks
    assert f"interrupted at step {step}: saved to {out}" in (out / "output.txt").read_text()
    assert "mpiexec -n 2 python -m mpi4py examples/train_lm.py --distributed --resume" in (
        out / "output.txt").read_text()
    shutil.rmtree(out / "results")
    resumed = train(out, ["--resume"])
    assert resumed[0]["step"] == 6
    assert_bit_identical(out, reference)


LONG = [*RESUMED, "--steps", "400", "--eval-every", "100", "--checkpoint-every", "150"]


@needs_mpi
@pytest.mark.parametrize("seed", [0])
def test_ctrl_c_to_mpiexec_stops_all_at_one_step_and_resumes_exactly(tmp_path, seed):
    """Ctrl-C in a terminal: SIGINT to mpiexec's process group, which passes it on to every
    process; they receive it at different moments of a step, and stop at the same one."""
    reference = tmp_path / "reference"
    train(reference, LONG)
    out = tmp_path / "run"
    job = start(out, LONG)
    try:
        output, deadline = b"", time.monotonic() + DEADLINE
        # a step done on rank 0 is done on every process: all are in the loop, signals deferred
        while not re.search(rb"\| *[1-9]\d*/400", output) and time.monotonic() < deadline:
            output += os.read(job.stdout.fileno(), 4096)
        time.sleep(random.Random(seed).uniform(0, 0.5))  # 400 steps take longer
        os.killpg(job.pid, signal.SIGINT)
        code, rest = finish(job)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    results = [json.loads(p.read_text()) for p in sorted((out / "results").glob("rank*.json"))]
    assert code == 130, rest[-3000:]
    step = results[0]["step"]
    assert 0 < step < 400 and [r["step"] for r in results] == [step, step]
    assert sl.load(out / "checkpoint.safetensors")["step"] == step
    train(out, ["--resume"])
    assert_bit_identical(out, reference)


@needs_mpi
@pytest.mark.parametrize("first, then", [(0, 2), (2, 0)])
def test_a_run_resumes_with_another_number_of_processes(tmp_path, one_process, first, then):
    """Stopped at step 3 in one process and resumed in two (or the other way): every process
    continues the run's batches, so it ends as the one-process run, to float32 tolerance."""
    out = tmp_path / "run"
    train(out, SAME, processes=first, signal_at="3:0", status=130)
    shutil.rmtree(out / "results")
    results = train(out, ["--resume"], processes=then)
    assert results[0]["step"] == 6
    alone, alone_out = one_process
    numpy.testing.assert_allclose(results[0]["losses"], alone["losses"][3:], rtol=TOLERANCE)
    assert_close(out, alone_out)


# ---- flags ------------------------------------------------------------------------------
@needs_mpi
def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path):
    code, output = finish(start(tmp_path / "run", [*SAME, "--batch-size", "3"]))
    assert code != 0
    assert "error: --batch-size 3 does not split evenly across 2 processes" in output
    assert not (tmp_path / "run").exists()


@pytest.fixture
def train_lm(monkeypatch):
    """examples/train_lm.py as a fresh module (this process never starts MPI)."""
    from scripts import EXAMPLES, load

    return load(EXAMPLES / "train_lm.py", monkeypatch)


def test_without_mpi4py_distributed_says_what_to_install(tmp_path, train_lm, monkeypatch):
    monkeypatch.setattr(dist, "is_mpi_available", lambda: False)
    with pytest.raises(SystemExit) as error:
        train_lm.main([*SAME, "--out", str(tmp_path / "run"), "--distributed"])
    message = str(error.value)
    assert 'pip install ".[distributed]"' in message and "\n" not in message
    assert not (tmp_path / "run").exists() and not dist.is_initialized()


def test_distributed_takes_each_process_own_gpu(tmp_path, train_lm, monkeypatch):
    monkeypatch.setattr(dist, "is_mpi_available", lambda: True)
    with pytest.raises(SystemExit, match="--device cuda:1: with --distributed give cpu or cuda"):
        train_lm.main([*SAME, "--out", str(tmp_path / "run"), "--distributed", "--device",
                       "cuda:1"])
    assert not dist.is_initialized()


def test_resume_runs_as_launched_now(tmp_path, train_lm, monkeypatch):
    """A run saved by --distributed resumes in one process without it (the flag is how the
    run is launched, not what it is)."""
    out = tmp_path / "run"
    train_lm.main([*SAME, "--steps", "2", "--out", str(out)])
    saved = json.loads((out / "train_config.json").read_text())
    (out / "train_config.json").write_text(json.dumps({**saved, "distributed": True}))
    result = train_lm.main(["--resume", "--out", str(out), "--steps", "3"])
    assert result["step"] == 3 and not dist.is_initialized()


# ---- GPUs -------------------------------------------------------------------------------
@pytest.mark.gpu
@needs_mpi
def test_distributed_on_gpus(tmp_path, one_process):
    """--device cuda: one process per GPU (at most two), gradients reduced by NCCL."""
    from seqlib.core.backend import cuda_device_count

    processes = min(2, cuda_device_count())
    results = train(tmp_path / "gpu", [*SAME, "--device", "cuda"], processes=processes)
    alone, _ = one_process
    assert results[0]["step"] == 6
    numpy.testing.assert_allclose(results[0]["losses"], alone["losses"], rtol=1e-4)
