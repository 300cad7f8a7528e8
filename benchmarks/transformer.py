"""A causal-linear transformer: the language model's training step, the encoder's forward and
forward+backward, and the recurrent step.

Run:
    python benchmarks/transformer.py             # 4 layers, d_model 256, 4 heads, (16, 256)
    python benchmarks/transformer.py --attention full --length 512

The training step is the whole of one step of a TransformerLM (vocabulary --vocab, GELU
feed-forward, tied head, no dropout): forward, cross-entropy, backward and AdamW. When torch and
fast-transformers are importable, the same model built by fast-transformers' own builder, with
the same weights, is timed too, alternating with seqlib's in this process, and the JSON gives
the ratio of tokens per second. The recurrent step is one position of the whole stack at batch
1: the per-token cost of generation, which must not depend on the position for linear
attention. The JSON goes to a scratch folder (or --out; --record replaces the committed one in
results/).
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


def fast_transformers_peer(model, torch):
    """``model`` (a seqlib TransformerLM) rebuilt with torch and fast-transformers' builder,
    holding a copy of its weights: ``peer(tokens, targets) -> loss``; None when either is not
    importable."""
    try:
        from fast_transformers.builders import TransformerEncoderBuilder
        from fast_transformers.masking import TriangularCausalMask
    except ImportError:
        return None
    nn, F = torch.nn, torch.nn.functional
    config = model.config
    scale = config.d_model ** 0.5

    class Peer(nn.Module):
        def __init__(self):
            super().__init__()
            self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
            self.encoder = TransformerEncoderBuilder.from_kwargs(
                **config.builder_kwargs(), attention_dropout=0.0).get()
            self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
            self.head.weight = self.token_embedding.weight

        def forward(self, tokens, targets):
            L = tokens.shape[1]
            x = self.token_embedding(tokens) * scale + positions[:L]
            hidden = self.encoder(x, attn_mask=TriangularCausalMask(L))
            return F.cross_entropy(self.head(hidden).flatten(0, 1), targets.flatten())

    peer = Peer()
    weights = {name: torch.from_numpy(value.numpy().copy())
               for name, value in model.state_dict().items()}
    peer.load_state_dict(weights, strict=True)
    positions = torch.from_numpy(model.positions(range(4096)).numpy().copy())
    return peer


def main(argv=None) -> dict:
    parser = make_parser(__doc__)
    parser.add_argument("--attention", default="causal-linear",
                        help="a registered attention type (full, linear, causal-linear, ...)")
    parser.add_argument("--layers", type=int, default=4, help="encoder layers")
    parser.add_argument("--d-model", type=int, default=256, help="model width")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--vocab", type=int, default=256,
                        help="vocabulary of the language model's training step")
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

    lm_train, peer_train = language_model_steps(args, sl, numpy)
    cases = {"seqlib": lm_train, "GEMM floor": gemm_floor(lm_train.model, args, numpy),
             "causal products": causal_products(args, numpy)}
    if peer_train:
        cases["torch + fast-transformers"] = peer_train
    lm = alternate(cases, args.repeat, 2)

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
    tokens = args.batch * args.length
    results = {
        "LM training step ms": lm["seqlib"],
        "LM training tokens/s": tokens / (lm["seqlib"] / 1e3),
        "LM training GEMM floor ms": lm["GEMM floor"],
        "LM training causal products ms": lm["causal products"],
    }
    if peer_train:
        peer_ms = lm["torch + fast-transformers"]
        results["torch + fast-transformers LM training step ms"] = peer_ms
        results["torch + fast-transformers LM training tokens/s"] = tokens / (peer_ms / 1e3)
        results["LM training speed-up over torch + fast-transformers"] = peer_ms / lm["seqlib"]
    results |= {
        "forward ms": median_ms(forward, args.repeat),
        "forward+backward ms": median_ms(train_step, args.repeat),
        "recurrent step ms (batch 1)": step["step"] / 10,
        "weight GEMV floor ms (batch 1)": step["floor"] / 10,
    }
    results["training tokens/s"] = tokens / (results["forward+backward ms"] / 1e3)
    for name, value in results.items():
        print(f"{name:52s} {value:10.3f}")
    report = {"benchmark": "transformer", **machine(), **peer_versions(peer_train),
              "device": "cpu", "threads": args.threads, "config": run_config(args),
              "results": results}
    write(f"transformer_{args.attention}_cpu", report, output_dir(args))
    return report


def language_model_steps(args, sl, numpy):
    """One training step of a TransformerLM in seqlib and (if importable) of the same model,
    same weights, in torch + fast-transformers: ``(seqlib_step, peer_step or None)``."""
    from seqlib.models import TransformerLM, TransformerLMConfig

    config = TransformerLMConfig(args.vocab, args.d_model, args.layers, args.heads,
                                 d_ff=4 * args.d_model, dropout=0.0,
                                 attention_type=args.attention)
    model = TransformerLM(config)
    optimizer = sl.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    data = numpy.random.default_rng(0).integers(0, args.vocab, (args.batch, args.length + 1))
    inputs, targets = sl.tensor(data[:, :-1]), sl.tensor(data[:, 1:])

    def seqlib_step():
        optimizer.zero_grad()
        model(inputs, targets)[1].backward()
        optimizer.step()

    seqlib_step.model = model

    try:
        import torch
    except ImportError:
        return seqlib_step, None
    torch.set_num_threads(args.threads)
    peer = fast_transformers_peer(model, torch)
    if peer is None:
        return seqlib_step, None
    peer_optimizer = torch.optim.AdamW(peer.parameters(), lr=1e-4, weight_decay=0.1)
    peer_inputs, peer_targets = torch.from_numpy(data[:, :-1]), torch.from_numpy(data[:, 1:])
    with sl.no_grad(), torch.no_grad():  # the same model: the same loss
        ours = model(inputs, targets)[1].item()
        theirs = peer(peer_inputs, peer_targets).item()
    if abs(ours - theirs) > 1e-4 * max(1.0, abs(theirs)):
        raise RuntimeError(f"the peer is not the same model: loss {theirs} against {ours}")

    def peer_step():
        peer_optimizer.zero_grad()
        peer(peer_inputs, peer_targets).backward()
        peer_optimizer.step()

    return seqlib_step, peer_step


def gemm_floor(model, args, numpy):
    """The training step's GEMMs alone, as NumPy runs them: per Linear (and the tied head) of
    ``model``, ``x W^T`` forward and ``g W``, ``g^T x`` backward, over the step's rows. No
    fusing of the rest of the step removes this time (the model's FLOPs are the peer's)."""
    rows = args.batch * args.length
    rng = numpy.random.default_rng(0)
    shapes = [m.weight.shape for m in model.modules() if type(m).__name__ == "Linear"]
    operands = [(rng.standard_normal((rows, n_in), numpy.float32),
                 rng.standard_normal((n_out, n_in), numpy.float32),
                 rng.standard_normal((rows, n_out), numpy.float32)) for n_out, n_in in shapes]

    def gemms():
        for x, w, g in operands:
            x @ w.T, g @ w, g.T @ x

    return gemms


def causal_products(args, numpy):
    """The step's causal products alone (forward and backward, every layer), as the kernel
    computes them for causal linear attention: values with the normaliser's column of ones."""
    from seqlib import kernels

    head = args.d_model // args.heads
    shape = (args.batch, args.heads, args.length)
    rng = numpy.random.default_rng(0)
    q, k = (rng.random((*shape, head), numpy.float32) for _ in range(2))
    v, g = (rng.standard_normal((*shape, head + 1), numpy.float32) for _ in range(2))

    def products():
        for _ in range(args.layers):
            saved = kernels.causal_dot_product(q, k, v, keep_for_backward=True).saved
            kernels.causal_dot_product_backward(q, k, v, g, saved=saved)

    return products


def peer_versions(peer) -> dict:
    """torch's and fast-transformers' versions when the peer was timed."""
    if peer is None:
        return {}
    from importlib.metadata import version

    return {"torch": version("torch"), "fast_transformers": version("pytorch-fast-transformers")}


if __name__ == "__main__":
    main()
