"""A causal-linear transformer encoder: training step (forward+backward) and recurrent step.

Run:
    python benchmarks/transformer.py             # 4 layers, d_model 256, 4 heads, (16, 256)
    python benchmarks/transformer.py --attention full --length 512

The recurrent step is one position of the whole stack at batch 1: the per-token cost of
generation, which must not depend on the position for linear attention. The JSON goes to a
scratch folder (or --out; --record replaces the committed one in results/).
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
    median_ms,
    output_dir,
    run_config,
    set_threads,
    write,
)


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--attention", default="causal-linear",
                        help="a registered attention type (full, linear, causal-linear, ...)")
    parser.add_argument("--layers", type=int, default=4, help="encoder layers")
    parser.add_argument("--d-model", type=int, default=256, help="model width")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--batch", type=int, default=16, help="sequences per training step")
    parser.add_argument("--length", type=int, default=256, help="positions per sequence")
    parser.add_argument("--repeat", type=int, default=7,
                        help="timed runs per case (x10 for the recurrent step); the median counts")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    import numpy

    import seqlib as sl
    from seqlib.builders import RecurrentEncoderBuilder, TransformerEncoderBuilder
    from seqlib.masking import TriangularCausalMask
    from seqlib.recurrent import make_mirror

    sl.utils.tune_malloc()
    config = dict(attention_type=args.attention, n_layers=args.layers, n_heads=args.heads,
                  query_dimensions=args.d_model // args.heads,
                  value_dimensions=args.d_model // args.heads,
                  feed_forward_dimensions=4 * args.d_model)
    model = TransformerEncoderBuilder.from_kwargs(**config).get()
    recurrent = RecurrentEncoderBuilder.from_kwargs(**config).get().eval()
    make_mirror(model, recurrent)
    x = sl.randn(args.batch, args.length, args.d_model)
    mask = TriangularCausalMask(args.length)

    def train_step():
        model.zero_grad()
        model(x, attn_mask=mask).sum().backward()

    def forward():
        with sl.no_grad():
            model(x, attn_mask=mask)

    token = sl.randn(1, args.d_model)
    with sl.no_grad():
        state = None
        for _ in range(16):
            _, state = recurrent(token, state)

    def recurrent_step():
        with sl.no_grad():
            for _ in range(10):
                recurrent(token, state)

    # The floor of a batch-1 step: reading every weight matrix once (one GEMV each, as the
    # step does). The weights (12.6 MB at the defaults) live in L3 at best, so this is a
    # memory-bandwidth bound that no amount of Python fusing removes.
    weights = [m.weight._array for m in recurrent.modules() if type(m).__name__ == "Linear"]
    vectors = {w.shape[1]: numpy.ones((1, w.shape[1]), w.dtype) for w in weights}

    def weight_gemvs():
        for _ in range(10):
            for w in weights:
                vectors[w.shape[1]] @ w.T

    step = alternate({"step": recurrent_step, "floor": weight_gemvs}, 10 * args.repeat, 3)
    results = {
        "forward ms": median_ms(forward, args.repeat),
        "forward+backward ms": median_ms(train_step, args.repeat),
        "recurrent step ms (batch 1)": step["step"] / 10,
        "weight GEMV floor ms (batch 1)": step["floor"] / 10,
    }
    tokens = args.batch * args.length
    results["training tokens/s"] = tokens / (results["forward+backward ms"] / 1e3)
    for name, value in results.items():
        print(f"{name:30s} {value:10.3f}")
    report = {"benchmark": "transformer", **machine(), "device": "cpu", "threads": args.threads,
              "config": run_config(args), "results": results}
    write(f"transformer_{args.attention}_cpu", report, output_dir(args))
    return report


if __name__ == "__main__":
    main()
