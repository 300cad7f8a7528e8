"""Attention speed: full vs linear vs causal-linear vs local, and generation latency.

Run:
    pip install ".[bench]"                           # matplotlib, for the plots
    python benchmarks/attention_speed.py             # L = 256 ... 16,384 on the CPU, ~3 min
    python benchmarks/attention_speed.py --device cuda --lengths 1024 4096 16384 65536

Part 1 times one attention layer (d_model 256, 4 heads, batch 1) forward and forward+backward
over sequence lengths; full attention is skipped where its L x L scores would pass --max-gb.
Part 2 times one recurrent step of a 4-layer language model (d_model 256) at growing
positions: constant for linear attention, growing with the key/value cache for softmax.
Writes results/attention_speed_<device>.json and two PNG plots next to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import RESULTS, alternate, machine, set_threads, write  # noqa: E402

KINDS = ("full", "linear", "causal-linear", "local")


def attention_layer(kind: str, d_model: int, heads: int):
    from seqlib.attention import (
        AttentionLayer,
        CausalLinearAttention,
        FullAttention,
        LinearAttention,
        LocalAttention,
    )

    head = d_model // heads
    inner = {"full": lambda: FullAttention(attention_dropout=0.0),
             "linear": lambda: LinearAttention(head),
             "causal-linear": lambda: CausalLinearAttention(head),
             "local": lambda: LocalAttention(64, attention_dropout=0.0)}[kind]()
    return AttentionLayer(inner, d_model, heads)


def _ms(fn, repeat: int, warmup: int, device: str) -> float:
    """Median ms of ``fn`` (CUDA events on a GPU)."""
    return alternate({"fn": fn}, repeat, warmup, cuda=device.startswith("cuda"))["fn"]


def time_layers(args, bar) -> list:
    import seqlib as sl
    from seqlib.masking import FullMask, TriangularCausalMask

    rows = []
    for L in args.lengths:
        for kind in KINDS:
            bar.update(1)
            scores_gb = 4 * args.heads * L * L * 4 / 2**30  # scores, weights and their grads
            if kind == "full" and scores_gb > args.max_gb:
                rows.append({"L": L, "attention": kind, "skipped": f"needs ~{scores_gb:.0f} GB"})
                continue
            layer = attention_layer(kind, args.d_model, args.heads).to(args.device)
            x = sl.randn(1, L, args.d_model, device=args.device)
            grad_x = x.detach().requires_grad_()
            mask = (TriangularCausalMask(L, device=args.device) if kind == "causal-linear"
                    else FullMask(L, device=args.device))

            def forward(layer=layer, x=x, mask=mask):
                with sl.no_grad():
                    layer(x, x, x, attn_mask=mask)

            def backward(layer=layer, x=grad_x, mask=mask):
                layer(x, x, x, attn_mask=mask).sum().backward()

            rows.append({"L": L, "attention": kind,
                         "forward ms": _ms(forward, args.repeat, 1, args.device),
                         "forward+backward ms": _ms(backward, args.repeat, 1, args.device)})
    return rows


def time_generation(args, bar) -> list:
    import seqlib as sl
    from seqlib.models import TransformerLM, TransformerLMConfig

    rows = []
    for kind, attention in (("linear", "causal-linear"), ("softmax", "full")):
        model = TransformerLM(TransformerLMConfig(
            256, args.d_model, 4, args.heads, dropout=0.0, attention_type=attention,
            attention_options={"attention_dropout": 0.0} if kind == "softmax" else {}))
        recurrent = model.to(args.device).recurrent().eval()
        head = args.d_model // args.heads
        for position in args.positions:
            bar.update(1)
            if kind == "linear":  # the state's size does not depend on the position
                layer = [sl.rand(1, args.heads, head, head, device=args.device),
                         sl.rand(1, args.heads, head, device=args.device)]
            else:  # the key/value cache holds every earlier position
                layer = [sl.randn(1, args.heads, position, head, device=args.device)
                         for _ in range(2)]
            state = [position, [list(layer) for _ in range(4)]]
            token = sl.tensor([1], device=args.device)

            def step(recurrent=recurrent, token=token, state=state):
                with sl.no_grad():
                    recurrent(token, state)

            rows.append({"attention": kind, "position": position,
                         "ms per token": _ms(step, 20 * args.repeat, 3, args.device)})
    return rows


def _machine_label(device: str) -> str:
    info = machine(device)
    if "gpu" in info:
        return f"{info['gpu']}, CUDA {info['cuda_runtime']}, CuPy {info['cupy']}"
    return f"{device}, {info['cpus']}-core {info['machine']}, numpy {info['numpy']}"


def plot(layers: list, generation: list, device: str) -> list:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no plots")
        return []
    paths = []
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key in zip(axes, ("forward ms", "forward+backward ms")):
        for kind in KINDS:
            points = [(r["L"], r[key]) for r in layers if r["attention"] == kind and key in r]
            if points:
                axis.loglog(*zip(*points), marker="o", label=kind)
        axis.set(xlabel="sequence length L", ylabel="ms", title=f"attention layer, {key}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    label = _machine_label(device)
    figure.suptitle(f"seqlib attention layer, d_model 256, 4 heads, batch 1 - {label}")
    figure.tight_layout()
    paths.append(RESULTS / f"attention_speed_{device}.png")
    figure.savefig(paths[-1], dpi=110)
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for kind in ("linear", "softmax"):
        points = [(r["position"], r["ms per token"]) for r in generation if r["attention"] == kind]
        axis.semilogx(*zip(*points), marker="o", label=f"{kind} attention")
    axis.set(xlabel="position of the token", ylabel="ms per token",
             title=f"recurrent generation, 4 layers, d_model 256\n{label}")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    paths.append(RESULTS / f"generation_latency_{device}.png")
    figure.savefig(paths[-1], dpi=110)
    for path in paths:
        print(f"wrote {path}")
    return paths


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--positions", type=int, nargs="+",
                        default=[16, 64, 256, 1024, 4096, 16384])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-gb", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from tqdm import tqdm

    total = len(args.lengths) * len(KINDS) + 2 * len(args.positions)
    with tqdm(total=total, desc="attention speed") as bar:
        layers = time_layers(args, bar)
        generation = time_generation(args, bar)
    for row in layers + generation:
        print(row)
    report = {"benchmark": "attention_speed", **machine(args.device), "device": args.device,
              "threads": args.threads, "d_model": args.d_model, "heads": args.heads,
              "unit": "ms (median)", "layers": layers, "generation": generation}
    write(f"attention_speed_{args.device.split(':')[0]}", report, args.out)
    if not args.no_plot:
        report["plots"] = [str(p) for p in plot(layers, generation, args.device.split(":")[0])]
    return report


if __name__ == "__main__":
    main()
