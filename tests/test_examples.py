"""Every example's main() runs for a couple of steps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_fit_mlp_runs_and_learns(capsys):
    fit_mlp = load("fit_mlp")
    short = fit_mlp.main(["--steps", "2", "--samples", "64"])
    assert short > 0
    trained = fit_mlp.main(["--steps", "600", "--log-every", "300"])
    assert trained < 0.05  # sin(3x) has variance ~0.5; the noise floor is 0.01
    assert "validation mse" in capsys.readouterr().out


SAMPLE = str(Path(__file__).parent / "data" / "hamlet_sample.txt")
TINY = ["--data", SAMPLE, "--d-model", "16", "--n-layers", "1", "--n-heads", "2",
        "--block-size", "16", "--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "5"]


@pytest.mark.parametrize("model", ["linear", "softmax", "lstm"])
def test_train_lm_runs_two_steps_and_saves_a_model(tmp_path, model, capsys):
    train_lm = load("train_lm")
    result = train_lm.main(["--steps", "2", "--model", model, "--out", str(tmp_path), *TINY])
    assert result["step"] == 2 and result["val_loss"] > 0
    assert (tmp_path / "config.json").is_file() and (tmp_path / "tokenizer.json").is_file()
    output = capsys.readouterr().out
    assert "--- sample ---" in output and "perplexity" in output
    text = load("generate").main(["--model", str(tmp_path), "--prompt", "Ham", "--tokens", "4"])
    assert text.startswith("Ham") and len(text) == 7


def test_train_lm_with_sentencepiece_and_resume(tmp_path, capsys):
    train_lm = load("train_lm")
    common = ["--out", str(tmp_path), "--tokenizer", "sentencepiece", "--vocab-size", "400",
              "--checkpoint-every", "1", *TINY]
    train_lm.main(["--steps", "2", *common])
    assert (tmp_path / "tokenizer.model").is_file()
    resumed = train_lm.main(["--steps", "3", "--resume", *common])
    assert resumed["step"] == 3
    assert "resumed from" in capsys.readouterr().out


def test_copy_task_runs(capsys):
    copy_task = load("copy_task")
    results = copy_task.main(["--steps", "2", "--length", "4", "--d-model", "16",
                              "--batch-size", "4"])
    assert set(results) == {"linear", "softmax", "lstm"}
    assert all(0 <= r["accuracy"] <= 1 for r in results.values())
    assert "copy accuracy" in capsys.readouterr().out


def test_train_lm_saves_a_checkpoint_on_ctrl_c(tmp_path, monkeypatch, capsys):
    from seqlib import optim

    train_lm = load("train_lm")
    calls = []
    original = optim.AdamW.step

    def interrupted(self, closure=None):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, closure)

    monkeypatch.setattr(optim.AdamW, "step", interrupted)
    result = train_lm.main(["--steps", "5", "--out", str(tmp_path), *TINY])
    assert result["step"] == 1
    assert (tmp_path / "checkpoint.safetensors").is_file()
    assert "interrupted: checkpoint saved" in capsys.readouterr().out
    monkeypatch.setattr(optim.AdamW, "step", original)
    assert train_lm.main(["--steps", "2", "--resume", "--out", str(tmp_path), *TINY])["step"] == 2


def test_generate_streams_multibyte_text_exactly(tmp_path, capsys):
    """With a SentencePiece model and a prompt spelled with byte-fallback tokens, the example
    prints exactly the text it returns (the prompt without U+FFFD)."""
    import seqlib as sl
    from seqlib.models import TransformerLM, TransformerLMConfig
    from seqlib.tokenizers import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer.train(files=[SAMPLE], vocab_size=400)
    sl.manual_seed(0)
    model = TransformerLM(TransformerLMConfig(vocab_size=tokenizer.vocab_size, d_model=16,
                                              n_layers=1, n_heads=2, dropout=0.0))
    model.eval().save_pretrained(tmp_path, tokenizer=tokenizer)
    capsys.readouterr()
    text = load("generate").main(["--model", str(tmp_path), "--prompt", "Où est le café?",
                                  "--tokens", "30", "--temperature", "0"])
    printed = capsys.readouterr().out
    assert text.startswith("Où est le café?") and printed.startswith(text + "\n")
