"""A causal-linear TransformerLM: training step and generation, against the same model in torch.

Run:
    python benchmarks/transformer_lm.py --device cuda
    python benchmarks/transformer_lm.py --device cpu --batch 4 --length 128

Training step = forward + cross-entropy + backward + AdamW step on (batch, length) tokens.
Generation = tokens per second of greedy decoding through the recurrent twin, one token per
step for every row of the batch (seqlib: ``model.recurrent()``; torch: the same recurrence
written with torch ops). The torch peer is the same architecture (post-norm layers as
fast-transformers builds them, elu+1 feature map, GELU feed-forward, final LayerNorm, tied
head) with its causal product computed by the chunked algorithm of
``benchmarks/causal_dot_product.py``, timed in the same process on the same device. The JSON
goes to a scratch folder (or --out; --record replaces the committed one in results/).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
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
from causal_dot_product import torch_chunked  # noqa: E402


def torch_peer(torch, vocab: int, d_model: int, layers: int, heads: int):
    """The peer model: ``forward(tokens) -> logits`` and ``step(token, state) -> logits``."""
    nn, F = torch.nn, torch.nn.functional

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
            self.ff1, self.ff2 = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)
            self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

        def project(self, x):
            shape = (*x.shape[:-1], heads, d_model // heads)
            q, k = (F.elu(p(x).view(shape)) + 1 for p in (self.q, self.k))
            v = self.v(x).view(shape)
            return q, k, torch.cat([v, torch.ones_like(v[..., :1])], -1)

        def finish(self, x, attended):
            x = self.norm1(x + self.o(attended))
            return self.norm2(x + self.ff2(F.gelu(self.ff1(x))))

        def forward(self, x):
            N, L, _ = x.shape
            q, k, v = (t.transpose(1, 2) for t in self.project(x))
            out = torch_chunked(torch, q, k, v, 64).transpose(1, 2)
            attended = out[..., :-1] / (out[..., -1:] + 1e-6)
            return self.finish(x, attended.reshape(N, L, d_model))

        def step(self, x, state):
            q, k, v = self.project(x)  # (N, H, E), (N, H, E), (N, H, E + 1)
            state = state + k.unsqueeze(-1) * v.unsqueeze(-2)
            out = (q.unsqueeze(-2) @ state).squeeze(-2)
            attended = out[..., :-1] / (out[..., -1:] + 1e-6)
            return self.finish(x, attended.reshape(x.shape[0], d_model)), state

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab, d_model)
            self.layers = nn.ModuleList(Layer() for _ in range(layers))
            self.norm = nn.LayerNorm(d_model)
            position = torch.arange(4096)[:, None]
            rate = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            table = torch.zeros(4096, d_model)
            table[:, 0::2], table[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate)
            self.register_buffer("positions", table)

        def embed(self, tokens, positions):
            return self.embedding(tokens) * math.sqrt(d_model) + self.positions[positions]

        def forward(self, tokens):
            x = self.embed(tokens, slice(0, tokens.shape[1]))
            for layer in self.layers:
                x = layer(x)
            return self.norm(x) @ self.embedding.weight.T

        def step(self, token, position: int, states):
            x = self.embed(token, position)
            new_states = []
            for layer, state in zip(self.layers, states):
                x, state = layer.step(x, state)
                new_states.append(state)
            return self.norm(x) @ self.embedding.weight.T, new_states

    return Model()


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    parser.add_argument("--vocab", type=int, default=256, help="vocabulary size")
    parser.add_argument("--d-model", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="transformer layers")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--batch", type=int, default=16, help="sequences per training step")
    parser.add_argument("--length", type=int, default=256, help="tokens per training sequence")
    parser.add_argument("--generate-batches", type=int, nargs="+", default=[1, 16],
                        help="batch sizes to time generation at")
    parser.add_argument("--new-tokens", type=int, default=64,
                        help="tokens generated per timed run")
    parser.add_argument("--repeat", type=int, default=7,
                        help="timed runs per case (alternating); the median counts")
    parser.add_argument("--threads", type=int, default=2, help="BLAS and torch threads")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    import numpy

    import seqlib as sl
    from seqlib.models import TransformerLM, TransformerLMConfig

    sl.utils.tune_malloc()
    cuda = args.device.startswith("cuda")
    config = TransformerLMConfig(args.vocab, args.d_model, args.layers, args.heads, dropout=0.0)
    model = TransformerLM(config).to(args.device)
    optimizer = sl.optim.AdamW(model.parameters(), lr=1e-4)
    rng = numpy.random.default_rng(0)
    data = rng.integers(0, args.vocab, (args.batch, args.length + 1))
    tokens = sl.tensor(data[:, :-1], device=args.device)
    targets = sl.tensor(data[:, 1:], device=args.device)

    def seqlib_train():
        optimizer.zero_grad()
        model(tokens, targets)[1].backward()
        optimizer.step()

    recurrent = model.recurrent().eval()

    def seqlib_generate(batch: int):
        def run():
            token = sl.zeros(batch, dtype=sl.int64, device=args.device)
            state = None
            with sl.no_grad():
                for _ in range(args.new_tokens):
                    logits, state = recurrent(token, state)
                    token = logits.argmax(-1)
        return run

    cases = {"seqlib train step": seqlib_train}
    cases.update({f"seqlib generate batch {b}": seqlib_generate(b)
                  for b in args.generate_batches})
    torch_version = None
    try:
        import torch
    except ImportError:
        print("torch is not installed: timing seqlib only")
    else:
        torch_version = torch.__version__
        torch.set_num_threads(args.threads)
        peer = torch_peer(torch, args.vocab, args.d_model, args.layers, args.heads)
        peer = peer.to(args.device)
        peer_optimizer = torch.optim.AdamW(peer.parameters(), lr=1e-4)
        t_tokens, t_targets = (torch.from_numpy(a).to(args.device)
                               for a in (data[:, :-1], data[:, 1:]))
        head = args.d_model // args.heads

        def torch_train():
            peer_optimizer.zero_grad()
            logits = peer(t_tokens)
            F = torch.nn.functional
            F.cross_entropy(logits.flatten(0, 1), t_targets.flatten()).backward()
            peer_optimizer.step()

        def torch_generate(batch: int):
            def run():
                token = torch.zeros(batch, dtype=torch.int64, device=args.device)
                states = [torch.zeros(batch, args.heads, head, head + 1, device=args.device)
                          for _ in range(args.layers)]
                with torch.no_grad():
                    for position in range(args.new_tokens):
                        logits, states = peer.step(token, position, states)
                        token = logits.argmax(-1)
            return run

        cases["torch train step"] = torch_train
        cases.update({f"torch generate batch {b}": torch_generate(b)
                      for b in args.generate_batches})
    times = alternate(cases, args.repeat, cuda=cuda)
    results = {}
    for name, ms in times.items():
        if "generate" in name:
            batch = int(name.rsplit(" ", 1)[1])
            results[f"{name} tokens/s"] = round(batch * args.new_tokens / (ms / 1e3), 1)
            results[f"{name} ms per step"] = round(ms / args.new_tokens, 4)
        else:
            results[f"{name} ms"] = round(ms, 3)
            results[f"{name} tokens/s"] = round(args.batch * args.length / (ms / 1e3), 1)
    ratios = {}
    for name in times:
        if name.startswith("seqlib") and name.replace("seqlib", "torch") in times:
            ratios[name[7:]] = round(times[name] / times[name.replace("seqlib", "torch")], 3)
    for name, value in {**results, **{f"time ratio {k}": v for k, v in ratios.items()}}.items():
        print(f"{name:45s} {value:12.3f}")
    report = {"benchmark": "transformer_lm", **machine(args.device), "torch": torch_version,
              "device": args.device, "threads": args.threads,
              "config": run_config(args),
              "results": results, "time_ratio_seqlib_over_torch": ratios}
    write(f"transformer_lm_{args.device.split(':')[0]}", report, output_dir(args))
    return report


if __name__ == "__main__":
    main()
