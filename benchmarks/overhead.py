"""Python overhead per op, and a 2-layer MLP forward+backward, vs plain NumPy (and PyTorch).

Run:
    python benchmarks/overhead.py            # prints a table, writes overhead.json
    python benchmarks/overhead.py --quick    # fewer repeats

Each case is timed with a warm-up and then the median of several repeats of a timed loop.
PyTorch is timed in the same process on the same data when it is importable (never required),
with the same thread count. The JSON goes to a scratch folder (or --out; --record replaces
the committed one in results/).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import add_output_flags, make_parser, output_dir, progress, table, write  # noqa: E402

import seqlib as sl  # noqa: E402
import seqlib.nn.functional as F  # noqa: E402


def median_time(fn, number: int, repeat: int) -> float:
    """Median seconds per call over ``repeat`` loops of ``number`` calls, after a warm-up."""
    for _ in range(max(number // 10, 1)):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def small_add_cases(torch):
    a_np = numpy.random.default_rng(0).standard_normal((4, 4)).astype(numpy.float32)
    b_np = a_np.copy()
    a, b = sl.tensor(a_np), sl.tensor(b_np)
    ag, bg = sl.tensor(a_np, requires_grad=True), sl.tensor(b_np, requires_grad=True)
    cases = {
        "numpy a + b (4x4)": lambda: a_np + b_np,
        "seqlib a + b (4x4)": lambda: a + b,
        "seqlib a + b (4x4, requires_grad)": lambda: ag + bg,
        "seqlib a * 2.0 (4x4)": lambda: a * 2.0,
        "seqlib a.sum() (4x4)": lambda: a.sum(),
    }
    if torch is not None:
        at, bt = torch.tensor(a_np), torch.tensor(b_np)
        atg, btg = at.clone().requires_grad_(), bt.clone().requires_grad_()
        cases["torch a + b (4x4)"] = lambda: at + bt
        cases["torch a + b (4x4, requires_grad)"] = lambda: atg + btg
    return cases


def mlp_cases(torch, batch=64, features=32, hidden=64):
    rng = numpy.random.default_rng(0)
    x_np = rng.standard_normal((batch, features)).astype(numpy.float32)
    y_np = rng.standard_normal((batch, 1)).astype(numpy.float32)
    w1_np = (rng.standard_normal((hidden, features)) * 0.1).astype(numpy.float32)
    b1_np = numpy.zeros(hidden, numpy.float32)
    w2_np = (rng.standard_normal((1, hidden)) * 0.1).astype(numpy.float32)
    b2_np = numpy.zeros(1, numpy.float32)

    def numpy_step():
        pre = x_np @ w1_np.T + b1_np
        h = numpy.maximum(pre, 0)
        out = h @ w2_np.T + b2_np
        diff = out - y_np
        loss = (diff * diff).mean()
        g_out = diff * (2 / diff.size)
        g_w2, g_b2 = g_out.T @ h, g_out.sum(0)
        g_h = (g_out @ w2_np) * (pre > 0)
        g_w1, g_b1 = g_h.T @ x_np, g_h.sum(0)
        return loss, g_w1, g_b1, g_w2, g_b2

    x, y = sl.tensor(x_np), sl.tensor(y_np)
    params = [sl.tensor(p, requires_grad=True) for p in (w1_np, b1_np, w2_np, b2_np)]

    def seqlib_step():
        w1, b1, w2, b2 = params
        for p in params:
            p.grad = None
        loss = F.mse_loss(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2), y)
        loss.backward()
        return loss

    cases = {"numpy MLP fwd+bwd (hand-written)": numpy_step, "seqlib MLP fwd+bwd": seqlib_step}
    if torch is not None:
        xt, yt = torch.tensor(x_np), torch.tensor(y_np)
        tparams = [torch.tensor(p, requires_grad=True) for p in (w1_np, b1_np, w2_np, b2_np)]
        tF = torch.nn.functional

        def torch_step():
            w1, b1, w2, b2 = tparams
            for p in tparams:
                p.grad = None
            loss = tF.mse_loss(tF.linear(tF.relu(tF.linear(xt, w1, b1)), w2, b2), yt)
            loss.backward()
            return loss

        cases["torch MLP fwd+bwd"] = torch_step
    return cases


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="200 calls x 3 repeats per case instead of 2,000 x 7")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (the cases are too small for BLAS threads)")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    sl.utils.tune_malloc()
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    number, repeat = (200, 3) if args.quick else (2000, 7)
    results = {}
    cases = {**small_add_cases(torch), **mlp_cases(torch)}
    for name in progress(cases, "overhead"):
        loops = number if "MLP" not in name else number // 4
        results[name] = median_time(cases[name], loops, repeat) * 1e6
    rows = [{"case": name, "us per call": round(us, 2)} for name, us in results.items()]
    print(f"median microseconds per call\n{table(rows)}\n")
    report = {
        "benchmark": "overhead",
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": getattr(torch, "__version__", None),
        "unit": "microseconds per call (median)",
        "results": results,
    }
    write("overhead", report, output_dir(args))
    return report


if __name__ == "__main__":
    main()
