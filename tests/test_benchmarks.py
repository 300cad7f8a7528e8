"""The benchmark scripts run end to end at toy sizes and write their JSON (timings are never
asserted: speed is measured by running the scripts, not by tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name):
        import importlib

        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load


def test_causal_dot_product_benchmark_writes_results(benchmark_module, tmp_path, capsys):
    out = tmp_path / "causal.json"
    report = benchmark_module("causal_dot_product").main(
        ["--lengths", "70", "--heads", "2", "--dim", "8", "--chunks", "16", "64",
         "--repeat", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    assert [row["chunk"] for row in saved["results"]] == [16, 64]
    for row in saved["results"]:
        assert row["seqlib forward"] > 0 and row["seqlib forward+backward"] > 0
    assert saved["malloc_tuned"] in (True, False)
    assert "seqlib forward" in capsys.readouterr().out


def test_lstm_benchmark_writes_results(benchmark_module, tmp_path):
    out = tmp_path / "lstm.json"
    benchmark_module("lstm").main(["--batch", "2", "--steps", "3", "--input", "4", "--hidden",
                                   "4", "--repeat", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "lstm"
    assert saved["results"]["seqlib forward"] > 0
