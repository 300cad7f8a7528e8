"""The sequence-copy task: read random symbols, then repeat them after a separator.

Run:
    python examples/copy_task.py                          # linear, softmax and LSTM, ~1-2 min
    python examples/copy_task.py --models linear --steps 600 --length 32

Compares how quickly causal linear attention, softmax attention and an LSTM learn to copy
(accuracy on the copied half), the experiment of "Transformers are RNNs" (Katharopoulos et
al., 2020) in miniature.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy
from _cli import check, flag, parse, require

import seqlib as sl
from seqlib import models, optim


@dataclass
class Config:
    models: list = flag(["linear", "softmax", "lstm"], "the models to train, one after another",
                        choices=["linear", "softmax", "lstm"])
    symbols: int = flag(10, "distinct symbols to copy")
    length: int = flag(16, "symbols per sequence (the model reads them, then copies them)")
    steps: int = flag(300, "Adam steps per model")
    batch_size: int = flag(32, "sequences per step")
    d_model: int = flag(64, "model width (the LSTM's hidden size is twice this)")
    lr: float = flag(3e-3, "learning rate")
    seed: int = flag(0, "seed of the initialization and the data", minimum=0)


def parse_args(argv=None) -> Config:
    config, _ = parse(Config, argv, __doc__)
    check(config)
    require(config.d_model % 4 == 0 or config.models == ["lstm"],
            f"--d-model {config.d_model} must be a multiple of the transformers' 4 heads")
    return config


def batch(config: Config, rng):
    """``symbols... SEP symbols...``; the loss and accuracy count only the copied half."""
    separator = config.symbols
    data = rng.integers(0, config.symbols, (config.batch_size, config.length))
    sequence = numpy.concatenate([data, numpy.full((config.batch_size, 1), separator), data], 1)
    inputs, targets = sequence[:, :-1], sequence[:, 1:].copy()
    targets[:, : config.length] = -100  # ignore_index: nothing to predict before the copy
    return sl.tensor(inputs), sl.tensor(targets)


def make_model(kind: str, config: Config):
    vocab = config.symbols + 1
    if kind == "lstm":
        return models.LSTMLM(models.LSTMLMConfig(vocab, config.d_model, config.d_model * 2,
                                                 num_layers=1, dropout=0.0))
    attention = {"linear": "causal-linear", "softmax": "full"}[kind]
    options = {"attention_dropout": 0.0} if kind == "softmax" else {}
    return models.TransformerLM(models.TransformerLMConfig(
        vocab, config.d_model, n_layers=2, n_heads=4, dropout=0.0, attention_type=attention,
        positional_encoding="learned", max_length=2 * config.length + 1,
        attention_options=options))


def accuracy(model, config: Config) -> float:
    inputs, targets = batch(config, numpy.random.default_rng(12345))
    with sl.no_grad():
        predictions = model(inputs)[0].argmax(-1).numpy()
    copied = targets.numpy() != -100
    return float((predictions == targets.numpy())[copied].mean())


def main(argv=None) -> dict:
    config = parse_args(argv)
    sl.utils.tune_malloc()  # reuse freed memory for NumPy's temporaries (process-wide)
    results = {}
    for kind in config.models:
        sl.manual_seed(config.seed)
        rng = numpy.random.default_rng(config.seed)
        model = make_model(kind, config)
        optimizer = optim.Adam(model.parameters(), lr=config.lr)
        start = time.perf_counter()
        for step in range(1, config.steps + 1):
            _, loss = model(*batch(config, rng))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % max(config.steps // 4, 1) == 0:
                print(f"{kind:8s} step {step:5d}  loss {loss.item():.4f}")
        results[kind] = {"loss": loss.item(), "accuracy": accuracy(model.eval(), config),
                         "seconds": time.perf_counter() - start}
    print(f"\n{'model':8s} {'loss':>8s} {'copy accuracy':>14s} {'seconds':>8s}")
    for kind, r in results.items():
        print(f"{kind:8s} {r['loss']:8.4f} {r['accuracy']:14.3f} {r['seconds']:8.1f}")
    return results


if __name__ == "__main__":
    main()
