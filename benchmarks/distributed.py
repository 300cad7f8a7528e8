"""Data-parallel scaling of the main job's model: tokens/s with 1 and 2 processes, the time
spent communicating per step, the bucket size's effect, and a cost model for larger clusters.

Run (needs mpi4py and an mpiexec: pip install "seqlib[distributed]"):
    python benchmarks/distributed.py                        # ~3 minutes on 2 cores
    python benchmarks/distributed.py --rounds 3 --steps 12  # on a quiet machine: less noise
    python benchmarks/distributed.py --cost-model-only      # the predictions alone

Configurations, each a separate job, in turn for --rounds rounds (the median counts, so
machine noise hits all alike): 1 process with 1 thread; 1 process with --processes threads
(the best single process on the same cores); --processes processes with 1 thread each, at the
same global batch (--batch split across ranks) and at --batch per rank; and the bucket sizes of
--bucket-mb. A step is forward, backward, gradient clipping and AdamW on --batch x --length
tokens of the main job's model (TransformerLM, causal-linear). Each distributed step is timed
against the same step without communication (DDP's no_sync), alternating, so the difference is
what communication costs on the critical path.

The cost model: a ring all-reduce of S bytes over p processes takes
``2 (p - 1) / p * S / bandwidth + 2 (p - 1) * latency`` per bucket; efficiency is compute /
(compute + communication), without overlap and with backward (2/3 of a step) hiding it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (  # noqa: E402
    add_output_flags,
    machine,
    make_parser,
    output_dir,
    run_config,
    set_threads,
    table,
    write,
)

# Networks of the cost model: (bandwidth in GB/s as an all-reduce sees it, latency per message
# in seconds). Assumptions, not measurements: ~80% of line rate; TCP over Ethernet, RDMA
# (InfiniBand/RoCE), NVLink 4 (H100, 450 GB/s a direction; beyond 8 GPUs it needs an NVLink
# switch system)
NETWORKS = {"25 Gb/s Ethernet": (2.5, 30e-6), "100 Gb/s RDMA": (10.0, 3e-6),
            "NVLink": (360.0, 2e-6)}
CLUSTER_SIZES = (8, 64, 512)
H100_STEP_S = 2048 / 39634  # main_job_cuda.json: launch-bound, ~52 ms for 16 x 128 tokens
H100_FLOPS = 400e12 * 0.4  # dense bf16/fp32-TC peak x a plausible utilisation
BACKWARD_SHARE = 2 / 3  # of a step: the part communication can overlap


# ---- one job (run under mpiexec, or alone for one process) ----------------------------------
def worker(args) -> dict:
    import numpy

    import seqlib as sl
    import seqlib.distributed as dist
    from seqlib import models, nn, optim

    dist.init_process_group()
    rank, size = dist.get_rank(), dist.get_world_size()
    sl.manual_seed(dist.rank_seed(0))
    config = models.TransformerLMConfig(args.vocab, args.d_model, args.layers, args.heads,
                                        dropout=0.0, attention_type="causal-linear",
                                        max_length=args.length)
    model = dist.DistributedDataParallel(models.TransformerLM(config),
                                         bucket_cap_mb=args.bucket)
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    rng = numpy.random.default_rng(rank)
    batches = [sl.tensor(rng.integers(0, args.vocab, (args.per_rank_batch, args.length + 1)))
               for _ in range(4)]
    reducer = model.reducer

    def step(index: int, sync: bool) -> tuple:
        tokens = batches[index % len(batches)]
        before = (reducer.wait_seconds, reducer.copy_seconds) if reducer else (0.0, 0.0)
        started = time.perf_counter()
        optimizer.zero_grad()
        if sync:
            _, loss = model(tokens[:, :-1], tokens[:, 1:])
        else:
            with model.no_sync():
                _, loss = model(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        elapsed = time.perf_counter() - started
        after = (reducer.wait_seconds, reducer.copy_seconds) if reducer else (0.0, 0.0)
        return elapsed, after[0] - before[0], after[1] - before[1]

    modes = (True, False) if size > 1 else (True,)
    times = {mode: [] for mode in modes}
    waits, copies = [], []
    for index in range(args.warmup + args.steps):
        for sync in modes:  # alternating: both modes see the same noise
            elapsed, waited, copied = step(index, sync)
            if index >= args.warmup:
                times[sync].append(elapsed)
                if sync:
                    waits.append(waited)
                    copies.append(copied)
    # how much slower the slowest rank is than the average, step by step, when the ranks do
    # not wait for each other: what synchronizing every step costs even with free transfers
    everyone = [None] * size
    dist.all_gather_object(everyone, times.get(False, times[True]))
    imbalance = [max(steps) - statistics.mean(steps) for steps in zip(*everyone)]
    flat = numpy.zeros(sum(p.numel() for p in model.parameters()), numpy.float32)
    bare = []
    for _ in range(10 if size > 1 else 0):
        started = time.perf_counter()
        dist.all_reduce(sl.from_numpy(flat))
        bare.append(time.perf_counter() - started)
    step_s = statistics.median(times[True])
    result = {
        "processes": size, "step_ms": 1e3 * step_s,
        "tokens_per_s": size * args.per_rank_batch * args.length / step_s,
        "buckets": len(reducer.buckets) if reducer else 0,
        "parameters": int(flat.size),
    }
    if size > 1:
        local_s = statistics.median(times[False])
        result.update({
            "no_sync_step_ms": 1e3 * local_s,
            "no_sync_tokens_per_s": size * args.per_rank_batch * args.length / local_s,
            "communication_ms_on_critical_path": 1e3 * (step_s - local_s),
            "wait_ms": 1e3 * statistics.median(waits),
            "bucket_copy_ms": 1e3 * statistics.median(copies),
            "imbalance_ms": 1e3 * statistics.median(imbalance),
            "bare_all_reduce_ms": 1e3 * statistics.median(bare),
        })
    if rank == 0:
        print("RESULT " + json.dumps(result), flush=True)
    dist.destroy_process_group()
    return result


# ---- the driver ------------------------------------------------------------------------------
def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("no mpiexec: pip install \"seqlib[distributed]\" (mpi4py and MPICH)")
    return found


def launch(args, processes: int, threads: int, per_rank_batch: int, bucket_mb: float) -> dict:
    """One job; returns rank 0's result."""
    script = [sys.executable, *(["-m", "mpi4py"] if processes > 1 else []), __file__,
              "--worker", "--threads", str(threads), "--per-rank-batch", str(per_rank_batch),
              "--bucket", str(bucket_mb)]
    shape = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--vocab",
             str(args.vocab), "--d-model", str(args.d_model), "--layers", str(args.layers),
             "--heads", str(args.heads), "--length", str(args.length)]
    command = ([_mpiexec(), "-n", str(processes)] if processes > 1 else []) + script + shape
    env = {**os.environ, **{name: str(threads) for name in
                            ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=args.deadline)  # a hung job ends the benchmark, not the machine
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"job {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[0][len("RESULT "):])


def measure(args) -> list:
    p = args.processes
    configs = [("1 process x 1 thread", 1, 1, args.batch, 25.0),
               (f"1 process x {p} threads", 1, p, args.batch, 25.0),
               (f"{p} processes x 1 thread, global batch {args.batch}", p, 1, args.batch // p,
                25.0),
               (f"{p} processes x 1 thread, {args.batch} per rank", p, 1, args.batch, 25.0)]
    configs += [(f"{p} processes x 1 thread, global batch {args.batch}, buckets {mb:g} MiB",
                 p, 1, args.batch // p, mb) for mb in args.bucket_mb if mb != 25.0]
    runs = {name: [] for name, *_ in configs}
    load = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        for name, *shape in configs:
            print(f"round {round_ + 1}/{args.rounds}: {name}", flush=True)
            runs[name].append(launch(args, *shape))
            load.append(os.getloadavg()[0])
    rows = []
    for name, processes, threads, per_rank, bucket in configs:
        results = runs[name]
        row = {"configuration": name, "processes": processes, "threads": threads,
               "per_rank_batch": per_rank, "bucket_mb": bucket}
        for key in results[0]:
            row[key] = statistics.median(r[key] for r in results)
        rows.append(row)
    return rows, load


def efficiencies(rows: list, p: int) -> dict:
    by_name = {row["configuration"]: row for row in rows}
    one = by_name["1 process x 1 thread"]["tokens_per_s"]
    same_cores = by_name[f"1 process x {p} threads"]["tokens_per_s"]
    out = {}
    for row in rows:
        if row["processes"] > 1:
            rate = row["tokens_per_s"]
            out[row["configuration"]] = {
                "vs best single process on the same cores": rate / max(same_cores, one),
                f"vs {p} x one 1-thread process": rate / (p * one),
                "vs the same processes without communication": rate / row[
                    "no_sync_tokens_per_s"],
            }
    return out


# ---- the cost model --------------------------------------------------------------------------
def ring_all_reduce_s(nbytes: float, processes: int, bandwidth: float, latency: float,
                      buckets: int) -> float:
    """Ring all-reduce of ``nbytes`` in ``buckets`` messages: bandwidth and latency terms."""
    p = processes
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency * buckets


def cost_model(parameters: int, cpu_step_s: float) -> list:
    """Predicted efficiency for the main job's model and a 10x larger one."""
    rows = []
    for label, scale in (("main job", 1), ("10x larger", 10)):
        nbytes = 4 * parameters * scale
        buckets = 1 + max(0, math.ceil((nbytes - 2**20) / (25 * 2**20)))  # 1 MiB, 25 MiB, ...
        tokens = 16 * 128
        devices = {"CPU core": cpu_step_s * scale,
                   "H100": max(H100_STEP_S, 6 * parameters * scale * tokens / H100_FLOPS)}
        for device, compute in devices.items():
            for network, (gbps, latency) in NETWORKS.items():
                for p in CLUSTER_SIZES:
                    comm = ring_all_reduce_s(nbytes, p, gbps * 1e9, latency, buckets)
                    hidden = max(0.0, comm - BACKWARD_SHARE * compute)
                    rows.append({"model": label, "MB": nbytes / 1e6, "device": device,
                                 "step_ms": 1e3 * compute, "network": network, "p": p,
                                 "comm_ms": 1e3 * comm,
                                 "efficiency": compute / (compute + comm),
                                 "efficiency_overlapped": compute / (compute + hidden)})
    return rows


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--processes", type=int, default=2, help="processes of the scaled runs")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (global)")
    parser.add_argument("--length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--vocab", type=int, default=84, help="vocabulary (84 characters)")
    parser.add_argument("--d-model", type=int, default=128, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="transformer layers")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per job and mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times every configuration runs, in turn; the median counts")
    parser.add_argument("--bucket-mb", type=float, nargs="+", default=[0.1, 0.5, 25.0],
                        help="bucket sizes (MiB) of the bucket sweep")
    parser.add_argument("--deadline", type=float, default=900,
                        help="seconds after which a job counts as hung and is killed")
    parser.add_argument("--cost-model-only", action="store_true",
                        help="print the cost model (CPU step time from --cpu-step-ms)")
    parser.add_argument("--cpu-step-ms", type=float, default=220.0,
                        help="one core's step time for --cost-model-only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--per-rank-batch", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--bucket", type=float, default=25.0, help=argparse.SUPPRESS)
    add_output_flags(parser)
    args = parser.parse_args(argv)
    if args.worker:
        set_threads(args.threads)
        return worker(args)
    config = run_config(args)
    report = {"benchmark": "distributed", **machine(), "config": config,
              "note": "measured on a machine shared with other jobs: noisy; rerun on a quiet one"}
    if args.cost_model_only:
        from seqlib import models

        parameters = sum(p.numel() for p in models.TransformerLM(models.TransformerLMConfig(
            args.vocab, args.d_model, args.layers, args.heads, max_length=args.length)
        ).parameters())
        cpu_step_s = args.cpu_step_ms / 1e3
    else:
        rows, load = measure(args)
        report["load_average_1min_during_run"] = load
        print(table(rows, ["configuration", "tokens_per_s", "step_ms", "buckets",
                           "no_sync_tokens_per_s", "communication_ms_on_critical_path",
                           "wait_ms", "imbalance_ms", "bare_all_reduce_ms", "bucket_copy_ms"]))
        report["results"] = rows
        report["efficiency"] = efficiencies(rows, args.processes)
        print(json.dumps(report["efficiency"], indent=1))
        parameters = rows[0]["parameters"]
        cpu_step_s = rows[0]["step_ms"] / 1e3 * 16 / args.batch  # per 16 x 128 tokens
    report["cost_model"] = {
        "formula": "ring all-reduce = 2(p-1)/p * bytes / bandwidth + 2(p-1) * latency per "
                   "bucket; efficiency = compute / (compute + comm); overlapped: comm beyond "
                   f"{BACKWARD_SHARE:.2f} of compute only",
        "networks_GBps_latency_s": NETWORKS,
        "rows": cost_model(parameters, cpu_step_s)}
    print(table(report["cost_model"]["rows"]))
    write("distributed_cpu", report, output_dir(args))
    return report


if __name__ == "__main__":
    main()
