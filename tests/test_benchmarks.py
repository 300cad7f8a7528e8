"""The benchmark scripts run end to end at toy sizes, print readable tables, write to a scratch
folder or --out (the committed benchmarks/results/ only with --record) and describe every flag
in --help. Timings are never asserted: speed is measured by running the scripts, not by tests."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
from types import SimpleNamespace

import pytest
from scripts import BENCHMARKS, EXAMPLES, help_text, load, options, scripts

RESULTS = BENCHMARKS / "results"
SAMPLE = str(BENCHMARKS.parent / "tests" / "data" / "hamlet_sample.txt")
TOY = {  # seconds, not minutes
    "attention_speed": ["--lengths", "16", "40", "--positions", "4", "8", "--d-model", "8",
                        "--heads", "2", "--layers", "1", "--repeat", "1", "--max-gb", "1e-6"],
    "causal_dot_product": ["--lengths", "70", "--heads", "2", "--dim", "8", "--chunks", "16",
                           "64", "--repeat", "1"],
    "lstm": ["--batch", "2", "--steps", "3", "--input", "4", "--hidden", "4", "--repeat", "1"],
    "overhead": ["--quick"],
    "transformer": ["--layers", "1", "--d-model", "8", "--heads", "2", "--batch", "2",
                    "--length", "8", "--repeat", "1"],
    "transformer_lm": ["--vocab", "16", "--d-model", "8", "--layers", "1", "--heads", "2",
                       "--batch", "2", "--length", "8", "--generate-batches", "1",
                       "--new-tokens", "2", "--repeat", "1"],
}
JSON = {"attention_speed": "attention_speed_cpu.json",
        "causal_dot_product": "causal_dot_product_cpu.json", "lstm": "lstm_cpu_h4.json",
        "overhead": "overhead.json", "transformer": "transformer_causal-linear_cpu.json",
        "transformer_lm": "transformer_lm_cpu.json"}


def _committed() -> dict:
    return {path: (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in RESULTS.rglob("*") if path.is_file() and "scratch" not in path.parts}


@pytest.fixture(autouse=True)
def committed_results_untouched():
    """No test here may change a committed result file (JSON, README plot, log)."""
    before = _committed()
    assert before, f"no committed results in {RESULTS}"
    yield
    assert _committed() == before, "a benchmark wrote over benchmarks/results/"


@pytest.fixture
def benchmark_module(monkeypatch):
    """``benchmark_module("lstm")``: benchmarks/lstm.py as a fresh module, and its ``_common``."""
    def load_one(name: str):
        module = load(BENCHMARKS / f"{name}.py", monkeypatch)
        return module, sys.modules["_common"]

    return load_one


@pytest.mark.parametrize("script", scripts(BENCHMARKS), ids=lambda path: path.name)
def test_help_describes_every_flag_and_its_default(script, monkeypatch):
    flags = options(help_text(script, monkeypatch))
    flags.pop("-h"), flags.pop("--help")
    assert {"--out", "--record"} <= set(flags)
    for flag, text in flags.items():
        assert text and "(default: " in text, f"{script.name} {flag}: {text!r}"


@pytest.mark.parametrize("name", TOY)
def test_benchmark_writes_to_out_and_nowhere_else(name, benchmark_module, tmp_path, monkeypatch):
    module, common = benchmark_module(name)
    monkeypatch.setattr(common, "SCRATCH", tmp_path / "scratch")  # the default: unused here
    no_plot = ["--no-plot"] if name == "attention_speed" else []  # the JSON alone, here
    report = module.main([*TOY[name], *no_plot, "--out", str(tmp_path / "out")])
    assert [p.name for p in (tmp_path / "out").iterdir()] == [JSON[name]]
    assert json.loads((tmp_path / "out" / JSON[name]).read_text()) == json.loads(
        json.dumps(report))
    assert not (tmp_path / "scratch").exists()


def test_the_default_output_is_the_scratch_folder(benchmark_module, tmp_path, monkeypatch, capsys):
    module, common = benchmark_module("lstm")
    monkeypatch.setattr(common, "SCRATCH", tmp_path / "scratch")
    module.main(TOY["lstm"])
    assert (tmp_path / "scratch" / JSON["lstm"]).is_file()
    assert "not recorded: --record writes benchmarks/results/" in capsys.readouterr().out


def test_record_writes_the_committed_results(benchmark_module, tmp_path, monkeypatch):
    module, common = benchmark_module("lstm")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    module.main([*TOY["lstm"], "--record"])
    assert (tmp_path / "results" / JSON["lstm"]).is_file()
    with pytest.raises(SystemExit):  # one place or the other
        module.main([*TOY["lstm"], "--record", "--out", str(tmp_path)])


def test_the_scratch_folder_is_ignored_by_git():
    ignored = (BENCHMARKS.parent / ".gitignore").read_text().split()
    assert "/benchmarks/results/scratch/" in ignored


def test_causal_dot_product_prints_a_table_of_every_case(benchmark_module, tmp_path, capsys):
    report = benchmark_module("causal_dot_product")[0].main([*TOY["causal_dot_product"], "--out",
                                                       str(tmp_path)])
    assert [row["chunk"] for row in report["results"]] == [16, 64]
    for row in report["results"]:
        assert row["seqlib forward"] > 0 and row["seqlib forward+backward"] > 0
    assert report["malloc_tuned"] in (True, False)
    output = capsys.readouterr().out
    assert "chunk  seqlib forward" in output and "{" not in output


def test_attention_speed_prints_tables_and_marks_skipped_points(benchmark_module, tmp_path, capsys):
    module = benchmark_module("attention_speed")[0]
    report = module.main([*TOY["attention_speed"], "--out", str(tmp_path)])
    skipped = [row for row in report["layers"] if "skipped" in row]
    assert [row["L"] for row in skipped] == [16, 40]  # --max-gb 1e-6: full attention never fits
    output = capsys.readouterr().out
    assert "{" not in output and "'" not in output  # tables, not dicts
    header = next(line for line in output.splitlines() if "forward+backward ms" in line)
    assert header.split() == ["L", "attention", "forward", "ms", "forward+backward", "ms", "note"]
    assert "skipped: needs ~" in output and "linear ms/token" in output
    if importlib.util.find_spec("matplotlib"):
        assert sorted(report["plots"]) == [str(tmp_path / "attention_speed_cpu.png"),
                                           str(tmp_path / "generation_latency_cpu.png")]


def test_attention_speed_plots_are_titled_by_their_arguments(benchmark_module):
    pytest.importorskip("matplotlib")
    module = benchmark_module("attention_speed")[0]
    args = SimpleNamespace(d_model=48, heads=3, layers=5, repeat=2, device="cpu", threads=1,
                           lengths=[64, 128], positions=[4, 8])
    layers = [{"L": L, "attention": kind, "forward ms": 1.0, "forward+backward ms": 2.0}
              for L in (64, 128) for kind in ("linear", "full")][:-1]
    layers.append({"L": 128, "attention": "full", "skipped": "needs ~9 GB"})
    generation = [{"attention": kind, "position": p, "ms per token": 0.5}
                  for kind in ("linear", "softmax") for p in (4, 8)]
    (_, speed), (_, latency) = module.figures(layers, generation, args)
    assert "d_model 48, 3 heads" in speed._suptitle.get_text()
    assert "median of 2" in speed._suptitle.get_text()
    assert "5 layers, d_model 48, 3 heads" in latency.axes[0].get_title()
    for axis in speed.axes:  # the skipped point: an x at the top, and what it would need
        notes = [text.get_text() for text in axis.texts]
        assert notes == ["full: skipped,\nneeds ~9 GB"]
        marks = [line for line in axis.get_lines() if line.get_marker() == "x"]
        assert [list(line.get_xdata()) for line in marks] == [[128]]
        assert "skipped (memory)" in [t.get_text() for t in axis.get_legend().get_texts()]


@pytest.fixture
def tiny_recipes(benchmark_module, monkeypatch):
    """benchmarks/recipes.py with three tiny recipes (a character model, a retention one and a
    SentencePiece one) in place of the main job's."""
    module = benchmark_module("recipes")[0]
    tiny = {**module.MAIN_JOB, "d_model": 16, "n_layers": 1, "n_heads": 2, "block_size": 16,
            "batch_size": 2, "warmup": 2}
    monkeypatch.setattr(module, "RECIPES", {
        "tiny": tiny, "tiny-retention": {**tiny, "model": "retention"},
        "tiny-bpe": {**tiny, "tokenizer": "sentencepiece", "vocab_size": 400}})
    monkeypatch.setattr(module, "COMPARED", list(module.RECIPES))
    return module


def test_recipes_draw_a_curve_per_recipe_within_the_budget(tiny_recipes, tmp_path, capsys):
    out = tmp_path / "out"
    report = tiny_recipes.main(["--budget", "0.2", "--data", SAMPLE, "--eval-batches", "1",
                                "--points", "4", "--out", str(out)])
    written = json.loads((out / "recipes_cpu.json").read_text())
    assert written["results"] == json.loads(json.dumps(report["results"]))
    assert [r["name"] for r in written["results"]] == ["tiny", "tiny-retention", "tiny-bpe"]
    for result in written["results"]:
        history = result["history"]
        steps = [point["step"] for point in history]
        seconds = [point["seconds"] for point in history]
        assert steps == sorted(set(steps)) and steps[-1] == result["steps"]
        assert len(history) >= min(4, result["steps"])  # about --points validations
        assert seconds == sorted(seconds) and 0 < seconds[-1] == result["seconds"]
        assert result["final_val_bpc"] == history[-1]["val_bpc"] > 0
        assert result["tokens_per_s"] > 0 and result["pilot_seconds_per_step"] > 0
    bpe = written["results"][-1]
    assert bpe["final_val_bpc"] < bpe["final_val_loss"] / math.log(2)  # tokens of >1 character
    files = {path.name for path in out.iterdir()}
    assert files == ({"recipes_cpu.json", "recipes_cpu.png"}
                     if importlib.util.find_spec("matplotlib") else {"recipes_cpu.json"})
    output = capsys.readouterr().out
    assert "[3/3] tiny-bpe: " in output and "pilot: " in output
    assert "recipe          final bpc" in output  # the summary table


def test_recipes_list_and_select_by_name(benchmark_module, capsys):
    module = benchmark_module("recipes")[0]
    listed = module.main(["--list", "--recipes", "lr1e-3,sp2000"])
    assert list(listed["recipes"]) == ["lr1e-3", "sp2000"]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["recipe", "lr1e-3", "sp2000"]
    with pytest.raises(SystemExit):
        module.main(["--list", "--recipes", "lr1e-3,no-such-recipe"])
    assert "no-such-recipe; choose from old-main-job," in capsys.readouterr().err


def test_every_recipe_is_a_valid_train_lm_command(benchmark_module, monkeypatch):
    """Flags that train_lm.py accepts (choices, --d-model divisible by --n-heads, ...), and the
    main job's recipe is train_lm.py's defaults."""
    module = benchmark_module("recipes")[0]
    train_lm = load(EXAMPLES / "train_lm.py", monkeypatch)
    assert set(module.RECIPES) >= {"old-main-job", "retention", "gated-linear", "sp2000"}
    assert set(module.COMPARED) <= set(module.RECIPES)
    assert {"old-main-job", module.MAIN_JOB_RECIPE} <= set(module.COMPARED)
    for name, flags in module.RECIPES.items():
        config = train_lm.parse_args([*module.arguments(flags), "--data", SAMPLE])
        assert {key: getattr(config, key) for key in flags} == flags, name
    defaults = train_lm.Config()
    assert module.MAIN_JOB == {key: getattr(defaults, key) for key in module.MAIN_JOB}
    assert module.RECIPES["old-main-job"] == module.BEFORE
