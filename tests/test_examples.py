"""Every example's main() runs for a couple of steps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
