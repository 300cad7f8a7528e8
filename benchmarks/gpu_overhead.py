"""Where GPU time goes when the GPU is not the limit: the host's cost per launched operation.

Run (on a machine with a GPU):
    python benchmarks/gpu_overhead.py

Times, per call, on 4x4 arrays (so the GPU's own work is negligible): a CuPy elementwise add,
a CuPy matmul, a torch add; then the three phases of a TransformerLM training step
(forward, backward, AdamW step) for seqlib and for the torch peer of
``benchmarks/transformer_lm.py``, with CUDA events. Dividing a phase's time by the per-op
cost estimates how many launches it makes. The JSON goes to a scratch folder (or --out;
--record replaces the committed one in results/).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (  # noqa: E402
    add_output_flags,
    alternate,
    machine,
    make_parser,
    output_dir,
    write,
)


def per_op_us(fn, sync, calls: int = 2000) -> float:
    """Host microseconds per call of ``fn`` in a long loop (launch throughput)."""
    for _ in range(100):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=7,
                        help="timed runs of each training phase (alternating); the median counts")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    import cupy
    import numpy
    import torch
    from transformer_lm import torch_peer

    import seqlib as sl
    from seqlib.models import TransformerLM, TransformerLMConfig

    sl.utils.tune_malloc()
    a = cupy.ones((4, 4), cupy.float32)
    ta = torch.ones(4, 4, device="cuda")
    sync = cupy.cuda.Device().synchronize
    ops = {"cupy add us": per_op_us(lambda: a + a, sync),
           "cupy matmul us": per_op_us(lambda: a @ a, sync),
           "torch add us": per_op_us(lambda: ta + ta, torch.cuda.synchronize),
           "torch matmul us": per_op_us(lambda: ta @ ta, torch.cuda.synchronize)}
    ts = sl.ones(4, 4, device="cuda")
    ops["seqlib tensor add us"] = per_op_us(lambda: ts + ts, sync)

    config = TransformerLMConfig(256, 256, 4, 4, dropout=0.0)
    model = TransformerLM(config).cuda()
    optimizer = sl.optim.AdamW(model.parameters(), lr=1e-4)
    data = numpy.random.default_rng(0).integers(0, 256, (16, 257))
    tokens, targets = (sl.tensor(x, device="cuda") for x in (data[:, :-1], data[:, 1:]))
    peer = torch_peer(torch, 256, 256, 4, 4).cuda()
    peer_optimizer = torch.optim.AdamW(peer.parameters(), lr=1e-4)
    t_tokens, t_targets = (torch.from_numpy(x).cuda() for x in (data[:, :-1], data[:, 1:]))
    held = {}

    def seqlib_forward():
        held["loss"] = model(tokens, targets)[1]

    def seqlib_backward():
        optimizer.zero_grad()
        seqlib_forward()
        held["loss"].backward()

    def torch_forward():
        held["t"] = torch.nn.functional.cross_entropy(peer(t_tokens).flatten(0, 1),
                                                      t_targets.flatten())

    def torch_backward():
        peer_optimizer.zero_grad()
        torch_forward()
        held["t"].backward()

    phases = alternate({"seqlib forward": seqlib_forward,
                        "seqlib forward+backward": seqlib_backward,
                        "seqlib optimizer step": optimizer.step,
                        "torch forward": torch_forward,
                        "torch forward+backward": torch_backward,
                        "torch optimizer step": peer_optimizer.step},
                       args.repeat, cuda=True)
    results = {**{k: round(v, 2) for k, v in ops.items()},
               **{f"{k} ms": round(v, 3) for k, v in phases.items()}}
    for name, value in results.items():
        print(f"{name:35s} {value:10.3f}")
    report = {"benchmark": "gpu_overhead", **machine("cuda"), "torch": torch.__version__,
              "results": results}
    write("gpu_overhead_cuda", report, output_dir(args))
    return report


if __name__ == "__main__":
    main()
