"""The kernels' dispatch tables, their named results, and the CPU worker-thread setting."""

from __future__ import annotations

import threading

import numpy
import pytest
from seqlib.kernels import threads
from seqlib.kernels.causal_product import cpu as product_cpu
from seqlib.kernels.causal_product import cuda as product_cuda
from seqlib.kernels.lstm import cpu as lstm_cpu
from seqlib.kernels.lstm import cuda as lstm_cuda

from seqlib import kernels


@pytest.fixture
def environment(monkeypatch):
    """No thread variables set, no explicit setting, and a pretend machine of ``cpus`` CPUs."""
    for name in (*threads.BLAS_VARIABLES, "SEQLIB_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    kernels.set_num_threads(None)
    yield lambda cpus: monkeypatch.setattr(threads, "cpu_count", lambda: cpus)
    kernels.set_num_threads(None)


def test_dispatch_tables_list_one_backend_per_device():
    assert kernels.causal_product.BACKENDS == {
        "cpu": (product_cpu.forward, product_cpu.backward),
        "cuda": (product_cuda.forward, product_cuda.backward)}
    assert kernels.lstm.BACKENDS == {
        "cpu": (lstm_cpu.forward, lstm_cpu.backward, 0.5),
        "cuda": (lstm_cuda.forward, lstm_cuda.backward, 1.0)}


def test_causal_product_returns_the_same_named_fields_whatever_is_asked():
    rng = numpy.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((1, 2, 9, 3)) for _ in range(4))
    plain = kernels.causal_dot_product(q, k, v)
    kept = kernels.causal_dot_product(q, k, v, keep_for_backward=True)
    assert plain._fields == ("out", "state", "saved") and plain.saved is None
    assert kept.saved is not None
    numpy.testing.assert_allclose(plain.state, numpy.einsum("nhld,nhlm->nhdm", k, v),
                                  rtol=1e-12)
    grads = kernels.causal_dot_product_backward(q, k, v, g)
    assert grads._fields == ("q", "k", "v", "state")
    # without an initial state its gradient is still there: the state a zero start would take
    numpy.testing.assert_allclose(grads.state, numpy.einsum("nhld,nhlm->nhdm", q, g),
                                  rtol=1e-12)


@pytest.mark.parametrize("cpus, variables, expected", [
    (2, {}, 2),  # one worker per CPU, whatever BLAS takes: its GEMMs are too small to split
    (2, {"OPENBLAS_NUM_THREADS": "1"}, 2),
    (16, {"OMP_NUM_THREADS": "4"}, threads.MAX_DEFAULT_THREADS),
    (64, {"OPENBLAS_NUM_THREADS": "1"}, threads.MAX_DEFAULT_THREADS),
    (3, {"OPENBLAS_NUM_THREADS": "8"}, 3),
    (1, {}, 1),
])
def test_default_is_one_worker_per_cpu(environment, monkeypatch, cpus, variables, expected):
    environment(cpus)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert kernels.get_num_threads() == threads.default_num_threads() == expected


@pytest.mark.parametrize("variables, expected", [
    ({}, 16),  # none set: BLAS takes every CPU
    ({"OMP_NUM_THREADS": "4,2"}, 4),  # OpenMP's nested list: the outer level counts
    ({"MKL_NUM_THREADS": "2", "OMP_NUM_THREADS": "8"}, 2),
    ({"OPENBLAS_NUM_THREADS": "nonsense", "OMP_NUM_THREADS": "2"}, 2),
])
def test_blas_threads_reads_the_variables_blas_reads(environment, monkeypatch, variables,
                                                     expected):
    environment(16)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert threads.blas_threads() == expected


def test_explicit_settings_win_over_the_default(environment, monkeypatch):
    environment(4)
    monkeypatch.setenv("SEQLIB_NUM_THREADS", "3")
    assert kernels.get_num_threads() == 3
    kernels.set_num_threads(2)
    assert kernels.get_num_threads() == 2
    kernels.set_num_threads(None)
    assert kernels.get_num_threads() == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises((ValueError, TypeError)):
            kernels.set_num_threads(bad)


def test_work_runs_on_as_many_threads_as_set(environment):
    seen = set()
    barrier = threading.Barrier(2, timeout=10)

    def task(index):
        seen.add(threading.current_thread().name)
        barrier.wait()  # both tasks at once: two threads, or this times out
        return index * 2

    kernels.set_num_threads(2)
    assert threads.run_all(task, [(1,), (2,)]) == [2, 4]
    assert len(seen) == 2 and all(name.startswith("seqlib-kernels") for name in seen)
    kernels.set_num_threads(1)
    seen.clear()
    assert threads.run_all(lambda i: seen.add(threading.current_thread().name) or i,
                           [(1,), (2,), (3,)]) == [1, 2, 3]
    assert seen == {threading.current_thread().name}


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_causal_product_is_the_same_on_any_number_of_workers(environment, workers):
    rng = numpy.random.default_rng(1)
    q, k, v, g = (rng.standard_normal((2, 3, 21, 4)) for _ in range(4))
    kernels.set_num_threads(1)
    one = kernels.causal_dot_product(q, k, v, chunk_size=5)
    one_grads = kernels.causal_dot_product_backward(q, k, v, g, chunk_size=5)
    kernels.set_num_threads(workers)
    many = kernels.causal_dot_product(q, k, v, chunk_size=5, keep_for_backward=True)
    many_grads = kernels.causal_dot_product_backward(q, k, v, g, chunk_size=5, saved=many.saved)
    for a, b in zip((*one[:2], *one_grads), (*many[:2], *many_grads)):
        numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
