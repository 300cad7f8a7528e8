"""Shared benchmark helpers: warm-up + median timing, machine info, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy

RESULTS = Path(__file__).resolve().parent / "results"


def set_threads(threads: int) -> None:
    """Limit BLAS threads (must run before NumPy does work) and torch's, if present.

    OpenMP threads (torch's) otherwise spin for a while after each op and steal the cores from
    whatever is timed next; a passive wait policy keeps alternating measurements fair."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass


def median_ms(fn, repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def alternate(cases: dict, repeat: int, warmup: int = 2, cuda: bool = False) -> dict:
    """Median ms per case, timing the cases in turn (ABAB...) so machine noise hits all alike.

    With ``cuda``, each call is timed by CUDA events recorded on the legacy default stream
    (which CuPy and torch both use) around it, then synchronised: the time the GPU took from the
    first launch to the last kernel's end, Python launch gaps included."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    timer = _cuda_timer() if cuda else _wall_timer
    samples = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            samples[name].append(timer(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def _wall_timer(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def _cuda_timer():
    import cupy

    cupy.cuda.Device().synchronize()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()

    def timer(fn) -> float:
        start.record()
        fn()
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end)

    return timer


def gpu() -> dict:
    """The GPU's name and the CUDA and CuPy versions (for result files)."""
    import cupy

    runtime = cupy.cuda.runtime
    version = runtime.runtimeGetVersion()
    return {
        "gpu": runtime.getDeviceProperties(0)["name"].decode(),
        "cuda_runtime": f"{version // 1000}.{version % 1000 // 10}",
        "cuda_driver": runtime.driverGetVersion(),
        "cupy": cupy.__version__,
        "timing": "CUDA events around each call (legacy default stream), warm-up excluded",
    }


def machine(device: str = "cpu") -> dict:
    """What the numbers were measured on (with the GPU's details for a CUDA device)."""
    return {
        **(gpu() if device.startswith("cuda") else {}),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }


def write(name: str, report: dict, out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return path
