"""Fit a 2-layer MLP to a noisy 1-D function with seqlib.nn and SGD with momentum.

Run:
    python examples/fit_mlp.py                 # defaults: 2000 steps, a few seconds on a CPU
    python examples/fit_mlp.py --steps 200 --hidden 32

It samples y = sin(3x) + 0.1 * noise, trains on shuffled mini-batches, and prints the training
loss as it goes and the validation MSE at the end (the noise floor is 0.01).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from _cli import check, flag, parse

import seqlib as sl
import seqlib.nn.functional as F
from seqlib import nn, optim


@dataclass
class Config:
    steps: int = flag(2000, "SGD steps")
    batch_size: int = flag(64, "samples per step")
    hidden: int = flag(64, "hidden units")
    lr: float = flag(0.05, "learning rate")
    momentum: float = flag(0.9, "SGD momentum", minimum=0)
    samples: int = flag(2048, "samples drawn (7/8 to train, 1/8 to validate)", minimum=8)
    log_every: int = flag(200, "steps between printed training losses")
    seed: int = flag(0, "seed of the data, the initialization and the shuffling", minimum=0)


def parse_args(argv=None) -> Config:
    config, _ = parse(Config, argv, __doc__)
    check(config)
    return config


def make_data(config: Config, generator: sl.Generator):
    x = sl.rand(config.samples, 1, generator=generator) * 4 - 2  # (S, 1) in [-2, 2)
    y = (x * 3).sin() + sl.randn(config.samples, 1, generator=generator) * 0.1
    split = config.samples * 7 // 8
    return (x[:split], y[:split]), (x[split:], y[split:])


def make_model(config: Config) -> nn.Module:
    return nn.Sequential(nn.Linear(1, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 1))


def main(argv=None) -> float:
    config = parse_args(argv)
    generator = sl.Generator().manual_seed(config.seed)
    (x_train, y_train), (x_val, y_val) = make_data(config, generator)
    model = make_model(config)
    optimizer = optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    loader = sl.data.DataLoader(sl.data.TensorDataset(x_train, y_train),
                                batch_size=config.batch_size, shuffle=True, generator=generator)
    start = time.perf_counter()
    step = 0
    while step < config.steps:
        for x, y in loader:
            step += 1
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % config.log_every == 0 or step == config.steps:
                print(f"step {step:5d}/{config.steps}  train mse {loss.item():.4f}  "
                      f"({time.perf_counter() - start:.1f}s)")
            if step == config.steps:
                break
    with sl.no_grad():
        val_mse = F.mse_loss(model(x_val), y_val).item()
    print(f"validation mse {val_mse:.4f} (noise floor 0.0100)")
    return val_mse


if __name__ == "__main__":
    main()
