"""Generate text from a model saved by train_lm.py, streaming it to the terminal.

Run:
    python examples/generate.py                                  # out/lm, prompt "ROMEO:"
    python examples/generate.py --model out/lm --prompt "To be" --tokens 500 --temperature 0.7
    python examples/generate.py --top-k 20 --top-p 0.9 --seed 7
    python examples/generate.py --temperature 0                  # greedy
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from _cli import check, flag, parse, require

import seqlib as sl
from seqlib.models import from_pretrained


@dataclass
class Config:
    model: str = flag("out/lm", "directory written by train_lm.py (save_pretrained)")
    prompt: str = flag("ROMEO:", "text to continue")
    tokens: int = flag(300, "new tokens to generate")
    temperature: float = flag(0.8, "sampling temperature; 0 for greedy (the most likely token)",
                              minimum=0)
    top_k: int = flag(0, "sample from the k most likely tokens only; 0 for no limit", minimum=0)
    top_p: float = flag(1.0, "sample from the smallest set of tokens whose probability reaches "
                        "p (nucleus); 1 for no limit")
    seed: int = flag(0, "seed of the sampling generator", minimum=0)
    device: str = flag("cpu", "where to run: cpu or cuda")


def parse_args(argv=None) -> Config:
    config, _ = parse(Config, argv, __doc__)
    check(config)
    require(config.top_p <= 1, f"--top-p must be in (0, 1], got {config.top_p}")
    return config


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
