"""Attention speed: full vs linear vs causal-linear (plain, retention, gated) vs local, and
generation latency.

Run:
    pip install ".[bench]"                           # matplotlib, for the plots
    python benchmarks/attention_speed.py             # L = 256 ... 16,384 on the CPU, ~3 min
    python benchmarks/attention_speed.py --device cuda --lengths 1024 4096 16384 65536

Part 1 times one attention layer (d_model 256, 4 heads, batch 1) forward and forward+backward
over sequence lengths; full attention is skipped where its L x L scores would pass --max-gb
(marked x on the plot). Part 2 times one recurrent step of a 4-layer language model
(d_model 256) at growing positions: constant for linear attention, growing with the
key/value cache for softmax. Prints both as tables and writes attention_speed_<device>.json
and two PNG plots to a scratch folder (or --out; --record replaces the README's).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (  # noqa: E402
    add_output_flags,
    alternate,
    machine,
    make_parser,
    output_dir,
    set_threads,
    table,
    write,
)

KINDS = ("full", "linear", "causal-linear", "causal-retention", "causal-gated-linear", "local")


def attention_layer(kind: str, d_model: int, heads: int):
    from seqlib.attention import (
        AttentionLayer,
        CausalLinearAttention,
        CausalRetention,
        FullAttention,
        GatedCausalLinearAttention,
        LinearAttention,
        LocalAttention,
    )

    head = d_model // heads
    inner = {"full": lambda: FullAttention(attention_dropout=0.0),
             "linear": lambda: LinearAttention(head),
             "causal-linear": lambda: CausalLinearAttention(head),
             "causal-retention": lambda: CausalRetention(head),
             "causal-gated-linear": lambda: GatedCausalLinearAttention(head),
             "local": lambda: LocalAttention(64, attention_dropout=0.0)}[kind]()
    return AttentionLayer(inner, d_model, heads)


def _ms(fn, repeat: int, warmup: int, device: str) -> float:
    """Median ms of ``fn`` (CUDA events on a GPU)."""
    return alternate({"fn": fn}, repeat, warmup, cuda=device.startswith("cuda"))["fn"]


def time_layers(args, bar) -> list:
    rows = []
    for L in args.lengths:
        for kind in KINDS:
            bar.set_postfix_str(f"{kind} attention, L={L}")
            rows.append(time_layer(args, kind, L))
            bar.update(1)
    return rows


def time_layer(args, kind: str, L: int) -> dict:
    """One point of part 1: forward and forward+backward ms, or why it was skipped."""
    import seqlib as sl
    from seqlib.masking import FullMask, TriangularCausalMask

    scores_gb = 4 * args.heads * L * L * 4 / 2**30  # scores, weights and their grads
    if kind == "full" and scores_gb > args.max_gb:
        return {"L": L, "attention": kind, "skipped": f"needs ~{scores_gb:.2g} GB"}
    layer = attention_layer(kind, args.d_model, args.heads).to(args.device)
    x = sl.randn(1, L, args.d_model, device=args.device)
    grad_x = x.detach().requires_grad_()
    mask = (TriangularCausalMask(L, device=args.device) if kind.startswith("causal")
            else FullMask(L, device=args.device))

    def forward():
        with sl.no_grad():
            layer(x, x, x, attn_mask=mask)

    def backward():
        layer(grad_x, grad_x, grad_x, attn_mask=mask).sum().backward()

    return {"L": L, "attention": kind, "forward ms": _ms(forward, args.repeat, 1, args.device),
            "forward+backward ms": _ms(backward, args.repeat, 1, args.device)}


def time_generation(args, bar) -> list:
    import seqlib as sl
    from seqlib.models import TransformerLM, TransformerLMConfig

    rows = []
    for kind, attention in (("linear", "causal-linear"), ("softmax", "full")):
        model = TransformerLM(TransformerLMConfig(
            256, args.d_model, args.layers, args.heads, dropout=0.0, attention_type=attention,
            attention_options={"attention_dropout": 0.0} if kind == "softmax" else {}))
        recurrent = model.to(args.device).recurrent().eval()
        head = args.d_model // args.heads
        for position in args.positions:
            bar.set_postfix_str(f"{kind} generation, position {position}")
            if kind == "linear":  # the state's size does not depend on the position
                layer = [sl.rand(1, args.heads, head, head, device=args.device),
                         sl.rand(1, args.heads, head, device=args.device)]
            else:  # the key/value cache holds every earlier position
                layer = [sl.randn(1, args.heads, position, head, device=args.device)
                         for _ in range(2)]
            state = [position, [list(layer) for _ in range(args.layers)]]
            token = sl.tensor([1], device=args.device)

            def step(recurrent=recurrent, token=token, state=state):
                with sl.no_grad():
                    recurrent(token, state)

            rows.append({"attention": kind, "position": position,
                         "ms per token": _ms(step, 20 * args.repeat, 3, args.device)})
            bar.update(1)
    return rows


def _machine_label(args) -> str:
    info = machine(args.device)
    if "gpu" in info:
        return f"{info['gpu']}, CUDA {info['cuda_runtime']}, CuPy {info['cupy']}"
    return (f"{args.device}, {args.threads} threads of a {info['cpus']}-core {info['machine']}, "
            f"numpy {info['numpy']}")


def _mark_skipped(axis, rows: list, colors: dict) -> None:
    """An x at the top of the plot for each skipped point, with what it would have needed."""
    skipped = [row for row in rows if "skipped" in row]
    if skipped:  # room above the data for the marks
        axis.set_ylim(top=axis.get_ylim()[1] * 4)
    top = axis.get_xaxis_transform()  # x in data, y in axes coordinates
    for i, row in enumerate(skipped):
        color = colors.get(row["attention"], "black")
        axis.plot([row["L"]], [0.96], "x", color=color, markersize=9, mew=2, transform=top,
                  label="skipped (memory)" if i == 0 else None)
        axis.annotate(f"{row['attention']}: skipped,\n{row['skipped']}", (row["L"], 0.96),
                      xycoords=top, xytext=(-8, -4), textcoords="offset points", ha="right",
                      va="top", fontsize=8, color=color)


def _label_points(axis, values: list) -> None:
    """Ticks at the measured values, written out (a log axis alone shows powers of ten)."""
    from matplotlib.ticker import NullFormatter

    axis.set_xticks(values, [f"{v:,}" for v in values])
    axis.xaxis.set_minor_formatter(NullFormatter())


def figures(layers: list, generation: list, args) -> list:
    """``[(file name, matplotlib figure)]``: layer times and per-token generation latency,
    titled with this run's arguments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    device, label = args.device.split(":")[0], _machine_label(args)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for axis, key in zip(axes, ("forward ms", "forward+backward ms")):
        colors = {}
        for kind in KINDS:
            points = [(r["L"], r[key]) for r in layers if r["attention"] == kind and key in r]
            if points:
                colors[kind] = axis.loglog(*zip(*points), marker="o", label=kind)[0].get_color()
        _mark_skipped(axis, layers, colors)
        _label_points(axis, args.lengths)
        axis.set(xlabel="sequence length L", ylabel="ms", title=f"attention layer, {key}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(f"seqlib attention layer, d_model {args.d_model}, {args.heads} heads, "
                    f"batch 1, median of {args.repeat}\n{label}")
    figure.tight_layout()
    result = [(f"attention_speed_{device}.png", figure)]
    figure, axis = plt.subplots(figsize=(6, 4.4))
    for kind in ("linear", "softmax"):
        points = [(r["position"], r["ms per token"]) for r in generation if r["attention"] == kind]
        axis.semilogx(*zip(*points), marker="o", label=f"{kind} attention")
    axis.set(xlabel="position of the token", ylabel="ms per token",
             title=f"recurrent generation, {args.layers} layers, d_model {args.d_model}, "
             f"{args.heads} heads, batch 1\n{label}")
    axis.title.set_fontsize(9)
    _label_points(axis, args.positions)
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return [*result, (f"generation_latency_{device}.png", figure)]


def plot(layers: list, generation: list, args, directory: Path) -> list:
    """Save the figures to ``directory``; their paths (none without matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print('matplotlib is not installed (pip install ".[bench]"): no plots')
        return []
    paths = []
    for name, figure in figures(layers, generation, args):
        paths.append(directory / name)
        figure.savefig(paths[-1], dpi=110)
        print(f"wrote {paths[-1]}")
    return paths


def print_tables(layers: list, generation: list) -> None:
    rows = [{"L": r["L"], "attention": r["attention"], "forward ms": r.get("forward ms", ""),
             "forward+backward ms": r.get("forward+backward ms", ""),
             "note": f"skipped: {r['skipped']}" if "skipped" in r else ""} for r in layers]
    print(f"\none attention layer, median ms\n{table(rows)}\n")
    positions = dict.fromkeys(r["position"] for r in generation)
    rows = [{"position": p, **{f"{r['attention']} ms/token": r["ms per token"]
                               for r in generation if r["position"] == p}} for p in positions]
    print(f"generation with the recurrent twin, median ms per token\n{table(rows)}\n")


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384],
                         help="sequence lengths L of part 1")
    parser.add_argument("--positions", type=int, nargs="+",
                         default=[16, 64, 256, 1024, 4096, 16384],
                         help="positions of the generated token in part 2")
    parser.add_argument("--d-model", type=int, default=256, help="model width")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--layers", type=int, default=4, help="layers of part 2's model")
    parser.add_argument("--repeat", type=int, default=3,
                         help="timed runs per point (x20 per token in part 2); the median counts")
    parser.add_argument("--max-gb", type=float, default=2.0,
                         help="skip full attention where its scores would need more GB")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG plots")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from tqdm import tqdm

    import seqlib as sl

    sl.utils.tune_malloc()

    total = len(args.lengths) * len(KINDS) + 2 * len(args.positions)
    with tqdm(total=total, desc="attention speed") as bar:
        layers = time_layers(args, bar)
        generation = time_generation(args, bar)
    print_tables(layers, generation)
    report = {"benchmark": "attention_speed", **machine(args.device), "device": args.device,
              "threads": args.threads, "d_model": args.d_model, "heads": args.heads,
              "generation_layers": args.layers, "repeat": args.repeat, "unit": "ms (median)",
              "layers": layers, "generation": generation}
    directory = output_dir(args)
    write(f"attention_speed_{args.device.split(':')[0]}", report, directory)
    if not args.no_plot:
        report["plots"] = [str(p) for p in plot(layers, generation, args, directory)]
    return report


if __name__ == "__main__":
    main()
