"""Interrupts wait for a step boundary (``DeferredInterrupt``); an interrupted or killed
``atomic_write`` leaves no temporary file behind for long."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import seqlib as sl
from seqlib.atomic_write import atomic_write, remove_stale_temporaries
from seqlib.checkpoint import DeferredInterrupt

TIMEOUT = 120  # seconds per subprocess: a hang fails the test instead of the suite


# ------------------------------------------------------------------ DeferredInterrupt

@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_deferred_interrupt_records_the_signal_and_restores_the_handler(number, capfd):
    before = signal.getsignal(number)
    with DeferredInterrupt(notice="stopping\n") as interrupt:
        os.kill(os.getpid(), number)
        os.kill(os.getpid(), signal.SIGINT)  # a second one changes nothing
        assert interrupt.requested == number
    assert signal.getsignal(number) is before
    assert capfd.readouterr().err == "stopping\n"  # once
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
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
    process.wait(TIMEOUT)


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
        process.stdin.write("go on\n")
        process.stdin.flush()
        assert process.wait(TIMEOUT) == 0
    finally:
        process.kill()
    assert sorted(tmp_path.iterdir()) == [path] and path.stat().st_size == 1_300_000
