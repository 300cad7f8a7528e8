"""Causal dot product forward and forward+backward, vs a torch chunked implementation.

Run:
    python benchmarks/causal_dot_product.py                    # N=1, H=8, L=4096, D=M=64
    python benchmarks/causal_dot_product.py --lengths 1024 4096 16384 --chunks 32 64 128
    python benchmarks/causal_dot_product.py --memory           # peak memory up to L=65,536
    python benchmarks/causal_dot_product.py --device cuda --lengths 1024 4096 16384 65536

The torch peer (timed in the same process on the same inputs, when torch is importable) runs
the same chunked algorithm with torch ops and autograd; fast-transformers' C++ kernel is timed
too if ``fast_transformers`` is installed. Medians of alternating runs, printed as a table;
the JSON goes to a scratch folder (or --out; --record replaces the committed one in results/).

``--threads T`` is each library's CPU budget: torch runs T threads; seqlib's kernel runs T
worker threads (``seqlib.kernels.set_num_threads``) over single-threaded BLAS, its GEMMs being
too small for BLAS to split, so workers x BLAS threads = T. glibc's malloc is tuned
(``seqlib.utils.tune_malloc``) unless ``SEQLIB_MALLOC_TUNING=0``.
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (  # noqa: E402
    add_output_flags,
    alternate,
    machine,
    make_parser,
    output_dir,
    progress,
    set_threads,
    table,
    write,
)


def torch_chunked(torch, q, k, v, C):
    """The same algorithm in torch (the peer): batched matmuls over every chunk."""
    N, H, L, D = q.shape
    M = v.shape[-1]
    pad = (-L) % C
    if pad:
        q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    n = (L + pad) // C
    Q, K, V = (t.reshape(N * H, n, C, -1) for t in (q, k, v))
    U = K.transpose(-1, -2) @ V
    S = torch.cumsum(U, 1) - U
    P = (Q @ K.transpose(-1, -2)).tril()
    O = Q @ S + P @ V
    return O.reshape(N, H, n * C, M)[:, :, :L]


def _synchronized(fn, device: str, torch=None):
    """``fn`` followed by a device synchronisation, so GPU timings include the work."""
    if not device.startswith("cuda"):
        return fn
    if torch is not None:
        return lambda: (fn(), torch.cuda.synchronize())
    import cupy

    return lambda: (fn(), cupy.cuda.get_current_stream().synchronize())


def _cases(q, k, v, g, C, torch, device: str = "cpu", fast=None) -> dict:
    """The timed callables for one shape and chunk size (torch's only if it is importable;
    ``fast``: fast-transformers' causal product, if installed)."""
    from seqlib.kernels import causal_dot_product, causal_dot_product_backward

    arrays = (q, k, v, g)
    if device.startswith("cuda"):
        import cupy

        arrays = tuple(cupy.asarray(a) for a in arrays)
    aq, ak, av, ag = arrays
    cases = {
        "seqlib forward": _synchronized(lambda: causal_dot_product(aq, ak, av, chunk_size=C),
                                        device),
        "seqlib forward+backward": _synchronized(lambda: causal_dot_product_backward(
            aq, ak, av, ag, chunk_size=C,
            saved=causal_dot_product(aq, ak, av, chunk_size=C, keep_for_backward=True).saved),
            device),
    }
    if torch is None:
        return cases
    tq, tk, tv, tg = (torch.from_numpy(a).to(device) for a in (q, k, v, g))
    leaves = [t.clone().requires_grad_() for t in (tq, tk, tv)]
    cases["torch forward"] = _synchronized(lambda: torch_chunked(torch, tq, tk, tv, C),
                                           device, torch)
    cases["torch forward+backward"] = _synchronized(
        lambda: torch_chunked(torch, *leaves, C).backward(tg), device, torch)
    if fast is not None:
        cases["fast-transformers forward"] = _synchronized(lambda: fast(tq, tk, tv), device, torch)
        cases["fast-transformers forward+backward"] = _synchronized(
            lambda: fast(*leaves).backward(tg), device, torch)
    return cases


def _version(distribution: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _fast_transformers():
    """fast-transformers' own causal product (its C++ or CUDA kernel), or None."""
    try:
        from fast_transformers.causal_product import causal_dot_product
    except ImportError:
        return None
    return causal_dot_product


def _with_scan_limit(function, limit: int, *arrays):
    """``function(*arrays)`` run with the CUDA scan's length limit set to ``limit``."""
    from seqlib.kernels.causal_product import cuda

    def run():
        cuda.SCAN_MAX_LENGTH = limit
        function(*arrays)

    return run


def _paths(args, rng) -> list:
    """CUDA only: the register scan against the chunked kernels, forward and forward+backward,
    by length (this chooses ``kernels.causal_product.cuda.SCAN_MAX_LENGTH``)."""
    import cupy
    import numpy

    from seqlib import kernels

    rows = []
    for N, L in progress([(N, L) for N in args.batch
                          for L in (1, 16, 32, 64, 128, 256, 512, 1024, 2048)], "scan vs chunked"):
        shape = (N, args.heads, L, args.dim)
        q, k, v, g = (cupy.asarray(rng.standard_normal(shape).astype(numpy.float32))
                      for _ in range(4))
        cases = {}
        for path, limit in (("scan", L), ("chunked", 0)):
            cases[f"{path} forward"] = _with_scan_limit(
                kernels.causal_dot_product, limit, q, k, v)
            cases[f"{path} backward"] = _with_scan_limit(
                kernels.causal_dot_product_backward, limit, q, k, v, g)
        times = alternate(cases, args.repeat, cuda=True)
        rows.append({"N": N, "L": L, **{name: round(ms, 4) for name, ms in times.items()}})
    return rows


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes N")
    parser.add_argument("--heads", type=int, default=8, help="heads H")
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096],
                        help="sequence lengths L")
    parser.add_argument("--dim", type=int, default=64, help="query/key and value size D = M")
    parser.add_argument("--chunks", type=int, nargs="+", default=[64], help="chunk sizes C")
    parser.add_argument("--repeat", type=int, default=9,
                        help="timed runs per case (alternating); the median counts")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch's threads, and seqlib's kernel worker threads (BLAS: 1)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory at L = 4,096, 16,384 and 65,536 (CPU)")
    parser.add_argument("--paths", action="store_true",
                        help="on CUDA: time the register scan against the chunked kernels")
    parser.add_argument("--device", default="cpu",
                        help="cpu, or cuda (CuPy arrays, torch on the GPU)")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads, blas_threads=1)
    import numpy
    from seqlib.kernels import causal_dot_product, causal_dot_product_backward

    import seqlib as sl
    from seqlib import kernels

    malloc_tuned = sl.utils.tune_malloc()
    kernels.set_num_threads(args.threads)

    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print("torch is not installed: timing seqlib only")
    fast = _fast_transformers() if torch is not None else None
    rng = numpy.random.default_rng(0)
    cuda = args.device.startswith("cuda")
    rows = []
    shapes = [(N, L, C) for N in args.batch for L in args.lengths for C in args.chunks]
    for N, L, C in progress(shapes, "causal dot product (N, L, chunk)"):
        shape = (N, args.heads, L, args.dim)
        q, k, v, g = (rng.standard_normal(shape).astype(numpy.float32) for _ in range(4))
        times = alternate(_cases(q, k, v, g, C, torch, args.device, fast), args.repeat,
                          cuda=cuda)
        row = {"N": N, "L": L, "chunk": C, **{name: round(ms, 4) for name, ms in times.items()}}
        for kind in ("forward", "forward+backward"):
            if f"torch {kind}" in times:
                row[f"ratio {kind}"] = round(times[f"seqlib {kind}"] / times[f"torch {kind}"], 3)
            if f"fast-transformers {kind}" in times:
                row[f"ratio to fast-transformers {kind}"] = round(
                    times[f"seqlib {kind}"] / times[f"fast-transformers {kind}"], 3)
        rows.append(row)
    if args.paths and cuda:
        rows = _paths(args, rng)
    ratios = " (ratio: seqlib's time / the peer's)" if torch is not None else ""
    print(f"\nmedian ms{ratios}\n{table(rows)}\n")
    memory = []
    if args.memory and args.device == "cpu":
        for L in progress((4096, 16384, 65536), "peak memory (L)"):
            shape = (1, args.heads, L, args.dim)
            q, k, v, g = (rng.standard_normal(shape).astype(numpy.float32) for _ in range(4))
            tracemalloc.start()
            causal_dot_product(q, k, v)
            causal_dot_product_backward(q, k, v, g)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            inputs = 4 * q.nbytes
            memory.append({"L": L, "peak_MB": round(peak / 2**20, 1),
                           "peak_over_inputs": round(peak / inputs, 2)})
        print(f"peak memory, forward + backward\n{table(memory)}\n")
    report = {"benchmark": "causal_dot_product", **machine(args.device), "device": args.device,
              "torch": getattr(torch, "__version__", None), "threads": args.threads,
              "kernel_workers": kernels.get_num_threads(),
              "blas_threads": kernels.threads.blas_threads(),
              "fast_transformers": None if fast is None else _version("pytorch-fast-transformers"),
              "malloc_tuned": malloc_tuned,
              "shape": {"H": args.heads, "D": args.dim, "M": args.dim},
              "unit": "ms (median)", "results": rows, "memory": memory}
    name = "causal_dot_product_paths" if args.paths and cuda else "causal_dot_product"
    write(f"{name}_{args.device.split(':')[0]}", report, output_dir(args))
    return report


if __name__ == "__main__":
    main()
