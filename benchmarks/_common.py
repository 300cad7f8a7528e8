"""Shared benchmark helpers: flags, warm-up + median timing, machine info, tables, output.

Results go to a scratch folder (``benchmarks/results/scratch/``, ignored by git) or to
``--out DIR``; only ``--record`` writes to ``benchmarks/results/``, replacing the committed
JSON files and the README's plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"  # committed: the README quotes them
SCRATCH = RESULTS / "scratch"  # ignored by git: every run that is not --record


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Every flag's default, and the docstring's layout (its Run: examples) kept."""


def make_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose --help shows the script's docstring and every default."""
    return argparse.ArgumentParser(description=doc, formatter_class=_HelpFormatter)


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """--out DIR, or --record to write the committed results."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=SCRATCH,
                       help="directory for the JSON results (and plots)")
    where.add_argument("--record", action="store_true",
                       help=f"write to {RESULTS} instead, replacing the committed results and "
                       "the README's plots")


def output_dir(args: argparse.Namespace) -> Path:
    """Where this run's files go: benchmarks/results/ with --record, else --out."""
    return RESULTS if args.record else Path(args.out)


def set_threads(threads: int, blas_threads: int | None = None) -> None:
    """Limit torch's (OpenMP's) threads to ``threads`` and BLAS's to ``blas_threads`` (default
    ``threads``). Must run before NumPy is imported: OpenBLAS reads its variables when it
    loads (this module imports NumPy only inside functions for that reason).

    OpenMP threads (torch's) otherwise spin for a while after each op and steal the cores from
    whatever is timed next; a passive wait policy keeps alternating measurements fair."""
    blas = threads if blas_threads is None else blas_threads
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(blas))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(blas, user_api="blas")
        threadpool_limits(threads, user_api="openmp")
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
    import numpy

    return {
        **(gpu() if device.startswith("cuda") else {}),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }


def run_config(args: argparse.Namespace) -> dict:
    """The arguments that shaped the measurements (not where they were written), for the JSON."""
    return {k: v for k, v in vars(args).items() if k not in ("out", "record")}


def write(name: str, report: dict, directory: Path) -> Path:
    """``report`` as ``directory/name.json``; says where it went."""
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    note = "" if path.parent == RESULTS else " (not recorded: --record writes benchmarks/results/)"
    print(f"wrote {path}{note}")
    return path


def progress(items, desc: str):
    """``items`` one by one under a progress bar (tqdm, on stderr) that names the current one."""
    from tqdm import tqdm

    with tqdm(list(items), desc=desc, dynamic_ncols=True) as bar:
        for item in bar:
            bar.set_postfix_str(str(item))
            yield item


def table(rows: list, columns: list | None = None) -> str:
    """Dicts as a text table with aligned columns: numbers right-aligned, text left-aligned,
    missing keys blank. ``columns``: their order (default: as they first appear)."""
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(column, "")) for column in columns] for row in rows]
    lines = []
    for i, column in enumerate(columns):
        values = [row.get(column, "") for row in rows]
        numeric = all(isinstance(v, (int, float)) or v == "" for v in values)
        width = max(len(column), *(len(r[i]) for r in cells))
        align = str.rjust if numeric else str.ljust
        lines.append([align(text, width) for text in [column, *(r[i] for r in cells)]])
    return "\n".join("  ".join(line).rstrip() for line in zip(*lines))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
