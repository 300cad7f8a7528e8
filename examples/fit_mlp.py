"""Fit a 2-layer MLP to a noisy 1-D function with seqlib's autograd and plain SGD.

Run:
    python examples/fit_mlp.py                 # defaults: 2000 steps, a few seconds on a CPU
    python examples/fit_mlp.py --steps 200 --hidden 32

It samples y = sin(3x) + 0.1 * noise, trains with mini-batch SGD (momentum), and prints the
training loss as it goes and the validation MSE at the end. (Until seqlib.nn and seqlib.optim
land, the layers and the update are written out by hand: this is the autograd core at work.)
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import seqlib as sl
import seqlib.nn.functional as F


@dataclass
class Config:
    steps: int = 2000
    batch_size: int = 64
    hidden: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    samples: int = 2048
    log_every: int = 200
    seed: int = 0


def parse_args(argv=None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in vars(Config()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return Config(**vars(parser.parse_args(argv)))


def make_data(config: Config, generator: sl.Generator):
    x = sl.rand(config.samples, 1, generator=generator) * 4 - 2  # (S, 1) in [-2, 2)
    y = (x * 3).sin() + sl.randn(config.samples, 1, generator=generator) * 0.1
    split = config.samples * 7 // 8
    return (x[:split], y[:split]), (x[split:], y[split:])


def init_params(config: Config, generator: sl.Generator) -> dict:
    """PyTorch's Linear initialisation: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    def uniform(*shape, fan_in):
        bound = 1 / math.sqrt(fan_in)
        return (sl.rand(*shape, generator=generator) * 2 - 1) * bound

    params = {
        "w1": uniform(config.hidden, 1, fan_in=1), "b1": uniform(config.hidden, fan_in=1),
        "w2": uniform(1, config.hidden, fan_in=config.hidden),
        "b2": uniform(1, fan_in=config.hidden),
    }
    return {name: p.requires_grad_() for name, p in params.items()}


def model(params: dict, x: sl.Tensor) -> sl.Tensor:
    hidden = F.linear(x, params["w1"], params["b1"]).tanh()  # (B, H)
    return F.linear(hidden, params["w2"], params["b2"])  # (B, 1)


def main(argv=None) -> float:
    config = parse_args(argv)
    generator = sl.Generator().manual_seed(config.seed)
    (x_train, y_train), (x_val, y_val) = make_data(config, generator)
    params = init_params(config, generator)
    velocity = {name: sl.zeros_like(p) for name, p in params.items()}
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        rows = sl.randint(0, len(x_train), (config.batch_size,), generator=generator)
        loss = F.mse_loss(model(params, x_train[rows]), y_train[rows])
        for p in params.values():
            p.grad = None
        loss.backward()
        with sl.no_grad():
            for name, p in params.items():
                velocity[name].mul_(config.momentum).add_(p.grad)
                p.sub_(velocity[name], alpha=config.lr)
        if step % config.log_every == 0 or step == config.steps:
            print(f"step {step:5d}/{config.steps}  train mse {loss.item():.4f}  "
                  f"({time.perf_counter() - start:.1f}s)")
    with sl.no_grad():
        val_mse = F.mse_loss(model(params, x_val), y_val).item()
    print(f"validation mse {val_mse:.4f} (noise floor 0.0100)")
    return val_mse


if __name__ == "__main__":
    main()
