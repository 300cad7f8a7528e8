"""Every example's main() runs for a couple of steps, describes its flags in --help, and refuses
bad flags with a one-line error before it reads or writes anything."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy
import pytest
from scripts import EXAMPLES, help_text, options, scripts

SAMPLE = str(Path(__file__).parent / "data" / "hamlet_sample.txt")
TINY = ["--data", SAMPLE, "--tokenizer", "char", "--d-model", "16", "--n-layers", "1",
        "--n-heads", "2", "--block-size", "16",
        "--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "5"]


@pytest.fixture
def example(monkeypatch):
    """``example("train_lm")``: the script examples/train_lm.py as a fresh module."""
    from scripts import load

    return lambda name: load(EXAMPLES / f"{name}.py", monkeypatch)


@pytest.mark.parametrize("script", scripts(EXAMPLES), ids=lambda path: path.name)
def test_help_describes_every_flag_and_its_default(script, monkeypatch):
    flags = options(help_text(script, monkeypatch))
    flags.pop("-h"), flags.pop("--help")
    assert flags, f"{script.name} --help lists no flags"
    for flag, text in flags.items():
        assert text and "(default: " in text, f"{script.name} {flag}: {text!r}"


def test_fit_mlp_runs_and_learns(example, capsys):
    fit_mlp = example("fit_mlp")
    short = fit_mlp.main(["--steps", "2", "--samples", "64"])
    assert short > 0
    trained = fit_mlp.main(["--steps", "600", "--log-every", "300"])
    assert trained < 0.05  # sin(3x) has variance ~0.5; the noise floor is 0.01
    assert "validation mse" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["linear", "retention", "gated-linear", "softmax", "lstm"])
def test_train_lm_runs_two_steps_and_saves_a_model(tmp_path, model, example, capsys):
    result = example("train_lm").main(["--steps", "2", "--model", model, "--out", str(tmp_path),
                                       *TINY])
    assert result["step"] == 2 and result["val_loss"] > 0
    assert result["val_bpc"] == pytest.approx(result["val_loss"] / math.log(2))  # a char each
    assert [point["step"] for point in result["history"]] == [2]
    assert (tmp_path / "config.json").is_file() and (tmp_path / "tokenizer.json").is_file()
    output = capsys.readouterr().out
    assert "--- sample ---" in output and "perplexity" in output
    assert f"{result['val_bpc']:.3f} bits per character" in output.splitlines()[-1]
    text = example("generate").main(["--model", str(tmp_path), "--prompt", "Ham", "--tokens", "4"])
    assert text.startswith("Ham") and len(text) == 7


def test_train_lm_with_sentencepiece_and_resume(tmp_path, example, capsys):
    train_lm = example("train_lm")
    common = [*TINY, "--out", str(tmp_path), "--tokenizer", "sentencepiece", "--vocab-size",
              "400", "--checkpoint-every", "1"]
    result = train_lm.main(["--steps", "2", *common])
    assert (tmp_path / "tokenizer.model").is_file()
    # a token spans more than one character: fewer bits per character than per token
    assert 0 < result["val_bpc"] < 0.9 * result["val_loss"] / math.log(2)
    resumed = train_lm.main(["--steps", "3", "--resume", *common])  # repeating flags is fine
    assert resumed["step"] == 3
    assert "resumed the run in" in capsys.readouterr().out


def test_train_lm_history_times_training_without_validation(tmp_path, example, monkeypatch):
    """Each validation point has the step, the validation loss and bits per character, and the
    seconds of training so far: the validations (slowed to 0.5 s here) are not counted."""
    train_lm = example("train_lm")
    evaluate = train_lm.evaluate

    def slow(*args):
        time.sleep(0.5)
        return evaluate(*args)

    monkeypatch.setattr(train_lm, "evaluate", slow)
    result = train_lm.main(["--steps", "5", "--eval-every", "2", "--out", str(tmp_path), *TINY])
    history = result["history"]
    assert [point["step"] for point in history] == [2, 4, 5]
    assert history[-1]["val_loss"] == result["val_loss"]
    assert history[-1]["val_bpc"] == result["val_bpc"]
    seconds = [point["seconds"] for point in history]
    assert 0 < seconds[0] < seconds[1] < seconds[2] < 0.5  # 5 tiny steps, not 1.5 s of waiting


def test_train_lm_resume_takes_the_model_and_tokenizer_from_out(tmp_path, example, capsys):
    """Only --resume and what changes: the model type, its shape, the tokenizer and the data
    come from --out."""
    train_lm = example("train_lm")
    train_lm.main(["--steps", "2", "--model", "lstm", "--out", str(tmp_path), *TINY])
    saved = json.loads((tmp_path / "train_config.json").read_text())
    assert saved["model"] == "lstm" and saved["d_model"] == 16 and saved["data"] == SAMPLE
    capsys.readouterr()
    resumed = train_lm.main(["--resume", "--out", str(tmp_path), "--steps", "3"])
    assert resumed["step"] == 3
    output = capsys.readouterr().out
    assert "lstm model" in output and "resumed the run in" in output and "at step 2" in output


@pytest.mark.parametrize("flag, value, saved", [("--d-model", "32", "16"),
                                                ("--model", "softmax", "gated-linear"),
                                                ("--tokenizer", "sentencepiece", "char")])
def test_train_lm_resume_refuses_a_flag_that_changes_the_model(tmp_path, example, flag, value,
                                                               saved):
    train_lm = example("train_lm")
    train_lm.main(["--steps", "2", "--out", str(tmp_path), *TINY])
    with pytest.raises(SystemExit) as error:
        train_lm.main(["--resume", "--out", str(tmp_path), "--steps", "4", flag, value])
    message = str(error.value)
    assert f"{flag} {value}" in message and f"{flag} {saved}" in message
    assert "\n" not in message


def test_train_lm_resume_needs_a_checkpoint_and_more_steps(tmp_path, example):
    train_lm = example("train_lm")
    missing = tmp_path / "never_trained"
    with pytest.raises(SystemExit, match="holds no checkpoint to resume") as error:
        train_lm.main(["--resume", "--out", str(missing)])
    assert "\n" not in str(error.value) and not missing.exists()
    train_lm.main(["--steps", "2", "--out", str(tmp_path), *TINY])
    with pytest.raises(SystemExit, match="at step 2 already: pass a larger --steps"):
        train_lm.main(["--resume", "--out", str(tmp_path)])


@pytest.mark.parametrize("flags, message", [
    (["--eval-every", "0"], "--eval-every must be > 0, got 0"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
    (["--dropout", "1.5"], "--dropout must be < 1"),
    (["--d-model", "10", "--n-heads", "4"], "--d-model 10 is not divisible by --n-heads 4"),
    (["--data", "no/such/file.txt"], "no such file or directory"),
    (["--device", "gpu"], "device"),
    (["--model", "gpt"], None),  # argparse: invalid choice (its usage line and exit code 2)
])
def test_train_lm_checks_flags_before_reading_or_writing(tmp_path, example, flags, message,
                                                        monkeypatch):
    import seqlib.text

    def unread(*args, **kwargs):
        raise AssertionError("the corpus was read before the flags were checked")

    monkeypatch.setattr(seqlib.text, "read_corpus", unread)
    train_lm = example("train_lm")
    monkeypatch.setattr(train_lm, "read_corpus", unread)
    out = tmp_path / "not_created"
    with pytest.raises(SystemExit) as error:
        train_lm.main(["--out", str(out), "--data", SAMPLE, *flags])
    if message is None:
        assert error.value.code == 2
    else:
        assert message in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_train_lm_knows_characters_only_the_validation_text_has(tmp_path, example):
    text = Path(SAMPLE).read_text() + "Zürich, Straße"  # the last 5%: the validation part
    (tmp_path / "text.txt").write_text(text)
    out = tmp_path / "run"
    result = example("train_lm").main(["--steps", "2", "--out", str(out), *TINY,
                                       "--data", str(tmp_path / "text.txt")])
    assert result["step"] == 2 and result["val_loss"] > 0
    assert {"ü", "ß"} <= set(json.loads((out / "tokenizer.json").read_text())["vocab"])


@pytest.mark.parametrize("text, message", [
    ("to be or not to be\n" * 3, "its validation (the last 5%) part has 3 tokens, fewer than "
                                 "one window of 17"),
    ("to be\n", "its training part has 5 tokens, fewer than one window of 17"),
    ("", "no text"),
])
def test_train_lm_refuses_a_text_too_short_before_training(tmp_path, example, text, message):
    (tmp_path / "tiny.txt").write_text(text)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as error:
        example("train_lm").main(["--out", str(out), *TINY, "--data", str(tmp_path / "tiny.txt")])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith(f"error: --data {tmp_path / 'tiny.txt'}: ")
    assert (not text) or "use a longer text or a smaller --block-size" in str(error.value)
    assert not out.exists()


def test_train_lm_trains_on_a_validation_part_of_exactly_one_window(tmp_path, example):
    (tmp_path / "text.txt").write_text(Path(SAMPLE).read_text()[:340])  # validation: 17 chars
    result = example("train_lm").main(["--steps", "2", "--out", str(tmp_path / "run"), *TINY,
                                       "--data", str(tmp_path / "text.txt")])
    assert result["step"] == 2 and result["val_loss"] > 0


def test_token_splits_checks_each_part():
    from seqlib.text import token_splits
    from seqlib.tokenizers import CharTokenizer

    text = "abcdefghijklmnopqrst"  # 19 training characters, 1 of validation
    train, val = token_splits(text, CharTokenizer.fit(text))
    assert train.dtype == numpy.int64 and len(train) == 19 and val.tolist() == [19]
    with pytest.raises(ValueError, match="validation .* has 1 tokens, fewer than one window of 2"):
        token_splits(text, CharTokenizer.fit(text), window=2)


@pytest.mark.parametrize("change", ["other data", "edited data", "other tokenizer"])
def test_train_lm_resume_refuses_other_data_or_another_tokenizer(tmp_path, example, change):
    from seqlib.tokenizers import CharTokenizer

    text = tmp_path / "text.txt"
    text.write_text(Path(SAMPLE).read_text())
    out, train_lm = tmp_path / "run", example("train_lm")
    train_lm.main(["--steps", "2", "--out", str(out), *TINY, "--data", str(text)])
    given = ["--resume", "--out", str(out), "--steps", "3"]
    if change == "other data":
        (tmp_path / "other.txt").write_text(text.read_text().upper())
        given += ["--data", str(tmp_path / "other.txt")]
    elif change == "edited data":
        text.write_text(text.read_text()[:-10])
    else:  # the same characters, in another order: other ids
        vocab = json.loads((out / "tokenizer.json").read_text())["vocab"]
        CharTokenizer(vocab[::-1]).save(out / "tokenizer.json")
    checkpoint = (out / "checkpoint.safetensors").read_bytes()
    with pytest.raises(SystemExit) as error:
        train_lm.main(given)
    message = str(error.value)
    what = (f"the tokenizer in {out}" if change == "other tokenizer" else
            f"the text of --data {given[-1] if change == 'other data' else text}")
    assert message.startswith(f"error: --resume: {what} is not the ") and "\n" not in message
    assert f"the run in {out} was trained on (its sha256 differs)" in message
    assert (out / "checkpoint.safetensors").read_bytes() == checkpoint


@pytest.mark.parametrize("name, flags", [("copy_task", ["--steps", "0"]),
                                         ("copy_task", ["--d-model", "6"]),
                                         ("fit_mlp", ["--batch-size", "-4"])])
def test_other_examples_check_their_flags(example, name, flags):
    with pytest.raises(SystemExit, match="error: --"):
        example(name).main(flags)


def test_copy_task_runs(example, capsys):
    results = example("copy_task").main(["--steps", "2", "--length", "4", "--d-model", "16",
                                         "--batch-size", "4"])
    assert set(results) == {"linear", "softmax", "lstm"}
    assert all(0 <= r["accuracy"] <= 1 for r in results.values())
    assert "copy accuracy" in capsys.readouterr().out


def test_train_lm_saves_a_checkpoint_on_ctrl_c(tmp_path, monkeypatch, example, capsys):
    """Ctrl-C in the middle of step 2 (in optimizer.step) finishes that step, saves it and
    stops; tests/test_interruptions.py checks, in subprocesses, that the resumed run ends
    bit-identical."""
    import os
    import signal

    from seqlib import optim

    train_lm = example("train_lm")
    calls = []
    original = optim.AdamW.step

    def interrupted(self, closure=None):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, closure)

    def undeferred(number, frame):  # a failure, not the end of the test session
        raise AssertionError("train_lm did not defer Ctrl-C")

    monkeypatch.setattr(optim.AdamW, "step", interrupted)
    before = signal.signal(signal.SIGINT, undeferred)
    try:
        result = train_lm.main(["--steps", "5", "--out", str(tmp_path), *TINY])
        assert signal.getsignal(signal.SIGINT) is undeferred  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    assert result["step"] == 2 and result["interrupted"] == signal.SIGINT
    assert (tmp_path / "checkpoint.safetensors").is_file()
    assert "interrupted at step 2" in capsys.readouterr().out
    monkeypatch.setattr(optim.AdamW, "step", original)
    assert train_lm.main(["--steps", "3", "--resume", "--out", str(tmp_path), *TINY])["step"] == 3


def test_generate_streams_multibyte_text_exactly(example, tmp_path, capsys):
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
    text = example("generate").main(["--model", str(tmp_path), "--prompt", "Où est le café?",
                                     "--tokens", "30", "--temperature", "0"])
    printed = capsys.readouterr().out
    assert text.startswith("Où est le café?") and printed.startswith(text + "\n")
