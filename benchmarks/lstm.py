"""LSTM forward and forward+backward through nn.LSTM, vs torch.nn.LSTM when importable.

Run:
    python benchmarks/lstm.py                        # batch 32, 128 steps, 256 -> 256, float32
    python benchmarks/lstm.py --hidden 512 --repeat 5
    python benchmarks/lstm.py --device cuda          # on a GPU (torch uses cuDNN there)

Both libraries run on the same inputs and weights in one process with the same thread count;
the cases are timed alternately and the medians reported, with the ratio seqlib / torch.
The JSON goes to a scratch folder (or --out; --record replaces the committed one in results/).
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
    run_config,
    set_threads,
    write,
)


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--batch", type=int, default=32, help="sequences per batch")
    parser.add_argument("--steps", type=int, default=128, help="time steps per sequence")
    parser.add_argument("--input", type=int, default=256, help="input size")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size")
    parser.add_argument("--layers", type=int, default=1, help="stacked LSTM layers")
    parser.add_argument("--repeat", type=int, default=9,
                        help="timed runs per case (alternating); the median counts")
    parser.add_argument("--threads", type=int, default=2, help="BLAS and torch threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    import numpy

    import seqlib as sl

    sl.utils.tune_malloc()
    rng = numpy.random.default_rng(0)
    x_np = rng.standard_normal((args.steps, args.batch, args.input)).astype(numpy.float32)
    model = sl.nn.LSTM(args.input, args.hidden, args.layers).to(args.device)
    x = sl.tensor(x_np, device=args.device)
    x_grad = sl.tensor(x_np, device=args.device, requires_grad=True)
    sync = _synchronizer(args.device)

    def seqlib_forward():
        with sl.no_grad():
            model(x)
        sync()

    def seqlib_backward():
        out, _ = model(x_grad)
        out.sum().backward()
        sync()

    cases = {"seqlib forward": seqlib_forward, "seqlib forward+backward": seqlib_backward}
    torch_version = None
    try:
        import torch

        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
        peer = torch.nn.LSTM(args.input, args.hidden, args.layers).to(args.device)
        with torch.no_grad():
            for name, param in peer.named_parameters():
                param.copy_(torch.from_numpy(getattr(model, name).detach().cpu().numpy()))
        xt = torch.from_numpy(x_np).to(args.device)
        xt_grad = xt.clone().requires_grad_()
        torch_sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

        def torch_forward():
            with torch.no_grad():
                peer(xt)
            torch_sync()

        def torch_backward():
            out, _ = peer(xt_grad)
            out.sum().backward()
            torch_sync()

        cases.update({"torch forward": torch_forward, "torch forward+backward": torch_backward})
    except ImportError:
        print("torch is not installed: timing seqlib only")
    results = alternate(cases, args.repeat, cuda=args.device.startswith("cuda"))
    for name, ms in results.items():
        print(f"{name:28s} {ms:9.2f} ms")
    ratios = {}
    for kind in ("forward", "forward+backward"):
        if f"torch {kind}" in results:
            ratios[kind] = results[f"seqlib {kind}"] / results[f"torch {kind}"]
            print(f"seqlib / torch, {kind}: {ratios[kind]:.2f}")
    report = {"benchmark": "lstm", **machine(args.device), "torch": torch_version,
              "device": args.device, "threads": args.threads,
              "config": run_config(args),
              "unit": "ms (median)", "results": results, "ratio_seqlib_over_torch": ratios}
    write(f"lstm_{args.device.split(':')[0]}_h{args.hidden}", report, output_dir(args))
    return report


def _synchronizer(device: str):
    if device.startswith("cuda"):
        import cupy

        return cupy.cuda.get_current_stream().synchronize
    return lambda: None


if __name__ == "__main__":
    main()
