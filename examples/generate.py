"""Generate text from a model saved by train_lm.py, streaming it to the terminal.

Run:
    python examples/generate.py                                  # out/lm, prompt "ROMEO:"
    python examples/generate.py --model out/lm --prompt "To be" --tokens 500 --temperature 0.7
    python examples/generate.py --top-k 20 --top-p 0.9 --seed 7
    python examples/generate.py --temperature 0                  # greedy
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import seqlib as sl
from seqlib.models import from_pretrained


@dataclass
class Config:
    model: str = "out/lm"
    prompt: str = "ROMEO:"
    tokens: int = 300
    temperature: float = 0.8  # 0: greedy (the most likely token each step)
    top_k: int = 0  # 0: no top-k filtering
    top_p: float = 1.0  # 1: no nucleus filtering
    seed: int = 0
    device: str = "cpu"


def parse_args(argv=None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in vars(Config()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return Config(**vars(parser.parse_args(argv)))


def main(argv=None) -> str:
    config = parse_args(argv)
    model = from_pretrained(config.model, map_location=config.device)
    if model.tokenizer is None:
        raise SystemExit(f"{config.model} holds no tokenizer; save it with save_pretrained("
                         "..., tokenizer=...)")
    prompt = model.tokenizer.encode(config.prompt)
    start = time.perf_counter()
    # TextStreamer prints the prompt, then each piece of text as soon as it is whole.
    ids = model.generate(prompt, max_new_tokens=config.tokens,
                         do_sample=config.temperature > 0, temperature=config.temperature or 1.0,
                         top_k=config.top_k or None,
                         top_p=config.top_p if config.top_p < 1 else None,
                         generator=sl.Generator().manual_seed(config.seed),
                         streamer=sl.TextStreamer(model.tokenizer))
    elapsed = time.perf_counter() - start
    new = len(ids) - len(prompt)
    print(f"\n[{new} tokens in {elapsed:.2f} s, {new / elapsed:.0f} tokens/s]")
    return model.tokenizer.decode(ids.tolist())


if __name__ == "__main__":
    main()
