"""seqlib.data: a DataLoader with workers never hangs and never leaves a process behind.

Every failure of a worker (an exit, a signal, an exception that is not an ``Exception``, a
failing ``worker_init_fn``) is raised in the main process within seconds, naming the worker and
what happened; leaving an epoch early, a Ctrl-C and the death of the main process stop the
workers. Each test runs under a wall-clock guard (``signal.alarm`` or a subprocess timeout), so a
regression fails instead of hanging CI.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy
import pytest

import seqlib as sl
from seqlib.data import DataLoader, Dataset, TensorDataset

GUARD_SECONDS = 30


@pytest.fixture(autouse=True)
def _wall_clock_guard():
    """Fail a test that runs past its guard instead of letting a stuck loader hang CI."""
    def expire(signum, frame):
        raise TimeoutError(f"a DataLoader test ran past its {GUARD_SECONDS} s wall-clock guard")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(GUARD_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


class Faulty(Dataset):
    """Eight samples ``[index, pid of the loading process]``; sample ``at`` misbehaves as
    ``fault`` says, and samples from ``hang_from`` on take a minute (busy workers)."""

    def __init__(self, fault=None, at=3, hang_from=None):
        self.fault, self.at, self.hang_from = fault, at, hang_from

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == self.at:
            if self.fault == "exit":
                os._exit(3)
            if self.fault == "oom":  # NOTE: the kernel's OOM killer ends a process with SIGKILL
                os.kill(os.getpid(), signal.SIGKILL)
            if self.fault == "interrupt":
                raise KeyboardInterrupt
            if self.fault == "system-exit":
                raise SystemExit(4)
        if self.hang_from is not None and i >= self.hang_from:
            time.sleep(60)
        return sl.tensor([i, os.getpid()])


def worker_pids(before=frozenset()) -> set:
    """The pids of this process's live children, less ``before`` (another test's leftovers)."""
    return {child.pid for child in multiprocessing.active_children()} - before


def reaped(pid: int) -> bool:
    """Whether ``pid`` is no child of this process any more: it exited and was waited for."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def exited(pid: int) -> bool:
    """Whether ``pid`` has exited: gone, or a zombie that nobody reaps (an orphan in a sandbox
    whose init does not wait for adopted children)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def assert_all_exit(pids, within: float) -> None:
    deadline = time.monotonic() + within
    while not all(exited(pid) for pid in pids):
        assert time.monotonic() < deadline, \
            f"workers {[pid for pid in pids if not exited(pid)]} outlived their main process"
        time.sleep(0.05)


# ---- a worker that dies or stops is reported at once, by id, with its reason ----------------
DEATHS = {
    "exit": r"DataLoader worker 1 \(pid \d+\) exited unexpectedly with exit code 3",
    "oom": r"DataLoader worker 1 \(pid \d+\) was killed by signal SIGKILL \(Killed\).*memory",
    "interrupt": r"Caught KeyboardInterrupt in DataLoader worker process 1\.(.|\n)*Traceback"
                 r"(.|\n)*raise KeyboardInterrupt",
    "system-exit": r"Caught SystemExit in DataLoader worker process 1\.(.|\n)*Traceback"
                   r"(.|\n)*raise SystemExit\(4\)",
}


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("fault", sorted(DEATHS))
def test_a_worker_that_dies_or_stops_is_reported_in_seconds(fault, persistent):
    before = worker_pids()
    dataset = Faulty(fault, at=3, hang_from=4)  # batch 3 goes to worker 1; later ones hang
    loader = DataLoader(dataset, batch_size=1, num_workers=2, persistent_workers=persistent)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=DEATHS[fault]):
        for _ in loader:
            pass
    assert time.monotonic() - start < 3
    assert not worker_pids(before)  # the other, busy worker was stopped too
    dataset.fault = dataset.hang_from = None  # the next epoch starts new workers
    assert [int(batch[0, 0]) for batch in loader] == list(range(8))


@pytest.mark.parametrize("persistent", [False, True])
def test_a_worker_killed_from_outside_is_reported_in_seconds(persistent):
    before = worker_pids()
    loader = DataLoader(Faulty(hang_from=2), batch_size=1, num_workers=2,
                        persistent_workers=persistent)
    iterator = iter(loader)
    victim = int(next(iterator)[0, 1])  # batch 0 came from worker 0, now busy with batch 2
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"DataLoader worker 0 \(pid {victim}\) was killed "
                                           r"by signal SIGKILL \(Killed\)"):
        for _ in iterator:
            pass
    assert time.monotonic() - start < 3 and reaped(victim) and not worker_pids(before)


class Large(Dataset):
    """Samples of 16 MB: a batch takes many writes to go through a pipe."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return numpy.full(2_000_000, float(i))


def test_a_worker_killed_in_the_middle_of_sending_a_batch_is_reported():
    before = worker_pids()
    iterator = iter(DataLoader(Large(), batch_size=1, num_workers=1))
    assert float(next(iterator)[0, 0]) == 0.0
    (victim,) = worker_pids(before)
    time.sleep(1.0)  # the worker is now blocked half-way through sending batch 1
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader worker 0 .* killed by signal SIGKILL"):
        next(iterator)  # half a message, then the end of the pipe: no wait for the rest
    assert time.monotonic() - start < 3 and reaped(victim)


@pytest.mark.parametrize("error, raised", [(ValueError("no such shard"), ValueError),
                                           (SystemExit(2), RuntimeError)])
def test_a_failing_worker_init_fn_is_reported_in_seconds(error, raised):
    def init(worker_id):
        if worker_id == 1:
            raise error

    before = worker_pids()
    loader = DataLoader(Faulty(hang_from=4), batch_size=1, num_workers=2, worker_init_fn=init)
    start = time.monotonic()
    with pytest.raises(raised) as info:
        list(loader)
    message = str(info.value)
    name = type(error).__name__
    assert f"Caught {name} in DataLoader worker process 1 while running worker_init_fn" in message
    assert "Traceback" in message and "raise error" in message
    assert time.monotonic() - start < 3 and not worker_pids(before)


def test_a_batch_that_cannot_be_pickled_is_reported_not_lost():
    class Unpicklable(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"index": i, "transform": lambda x: x}  # a local function: no pickling

    before = worker_pids()
    with pytest.raises(Exception, match=r"in DataLoader worker process 0 while sending a batch "
                                        r"to the main process(.|\n)*Traceback") as info:
        list(DataLoader(Unpicklable(), batch_size=None, num_workers=1))
    assert "lambda" in str(info.value) and not worker_pids(before)


# ---- leaving early, Ctrl-C, a killed main process -------------------------------------------
@pytest.mark.parametrize("how", ["break", "del", "gc"])
def test_leaving_an_epoch_early_returns_at_once_and_reaps_the_workers(how):
    before = worker_pids()
    loader = DataLoader(Faulty(hang_from=2), batch_size=1, num_workers=2)  # workers are busy
    if how == "break":
        for _ in loader:
            pids = worker_pids(before)
            start = time.monotonic()
            break
    elif how == "del":
        iterator = iter(loader)
        next(iterator)
        pids = worker_pids(before)
        start = time.monotonic()
        del iterator
    else:
        cycle = [iter(loader)]
        cycle.append(cycle)  # only the garbage collector frees it
        next(cycle[0])
        pids = worker_pids(before)
        start = time.monotonic()
        del cycle
        gc.collect()
    assert time.monotonic() - start < 1  # busy workers are terminated, not waited for
    assert len(pids) == 2 and all(reaped(pid) for pid in pids) and not worker_pids(before)


def test_persistent_workers_started_by_a_thread_outlive_the_thread():
    # the parent-death signal fires when the forking *thread* ends: it must not kill these
    loader = DataLoader(Faulty(), batch_size=4, num_workers=2, persistent_workers=True)
    first = []
    thread = threading.Thread(target=lambda: first.extend(loader))
    thread.start()
    thread.join()
    time.sleep(0.2)
    assert [batch[:, 0].tolist() for batch in first] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [batch[:, 1].tolist() for batch in loader] == [batch[:, 1].tolist() for batch in first]


MAIN = textwrap.dedent("""
    import multiprocessing, os, sys, time
    import seqlib as sl
    import seqlib.data.worker
    from seqlib.data import DataLoader, Dataset

    mode, hang_from = sys.argv[1], int(sys.argv[2])
    if mode == "polling":  # what is left where PR_SET_PDEATHSIG is not available
        seqlib.data.worker.STATUS_CHECK_INTERVAL = 0.2
        seqlib.data.worker.die_with_parent = lambda: None

    class Data(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            if i >= hang_from:
                time.sleep(60)
            return sl.tensor([i])

    iterator = iter(DataLoader(Data(), batch_size=1, num_workers=2))
    next(iterator)
    pids = [child.pid for child in multiprocessing.active_children()]
    start = time.monotonic()
    try:
        print(*pids, flush=True)
        for _ in iterator:
            pass
    except KeyboardInterrupt:
        print(f"interrupted; {time.monotonic() - start:.2f} s", flush=True)

    def running(pid):
        try:
            return os.waitpid(pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:  # exited and reaped
            return False

    left = [pid for pid in pids if running(pid)]
    print("children left:", multiprocessing.active_children(), left, flush=True)
""")


def start_main(tmp_path, *args) -> tuple:
    """Run ``MAIN`` in its own session; return the process and its workers' pids."""
    script = tmp_path / "main.py"
    script.write_text(MAIN)
    process = subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    pids = [int(pid) for pid in process.stdout.readline().split()]
    assert len(pids) == 2, process.communicate(timeout=10)
    time.sleep(0.3)  # the main process is now waiting for batch 2
    return process, pids


@pytest.mark.parametrize("mode, hang_from", [("prctl", 2), ("polling", 8)])
def test_workers_exit_when_their_main_process_is_killed(tmp_path, mode, hang_from):
    # prctl: PR_SET_PDEATHSIG stops workers in the middle of a minute-long sample; polling: idle
    # workers notice on their own, every STATUS_CHECK_INTERVAL
    process, pids = start_main(tmp_path, mode, str(hang_from))
    process.kill()
    process.wait(timeout=10)  # not communicate(): live workers would hold its pipes open
    process.stdout.close()
    process.stderr.close()
    assert_all_exit(pids, within=3)


def test_ctrl_c_stops_the_main_process_and_its_workers_quietly(tmp_path):
    process, pids = start_main(tmp_path, "prctl", "2")
    start = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, err = process.communicate(timeout=10)
    assert time.monotonic() - start < 3, (out, err)
    assert "interrupted" in out and "children left: [] []" in out, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err  # workers ignore it
    assert_all_exit(pids, within=1)


# ---- prefetch_factor --------------------------------------------------------------------
def test_prefetch_factor_is_validated_as_in_torch():
    dataset = TensorDataset(sl.arange(10))
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified in "
                                         "multiprocessing"):
        DataLoader(dataset, prefetch_factor=2)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"prefetch_factor option should be at least 1 "
                                             f"with num_workers > 0, got {bad}"):
            DataLoader(dataset, num_workers=2, prefetch_factor=bad)
    assert DataLoader(dataset).prefetch_factor is None
    assert DataLoader(dataset, num_workers=2).prefetch_factor == 2
    loader = DataLoader(dataset, batch_size=3, num_workers=2, prefetch_factor=1)
    assert [batch[0].tolist() for batch in loader] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
