"""Test helpers for the scripts in examples/ and benchmarks/: load one as a module, read the
options of its ``--help``."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES, BENCHMARKS = ROOT / "examples", ROOT / "benchmarks"
# An option's entry in --help: "  --flag VALUE  help..." and its indented continuation lines.
OPTION = re.compile(r"^  (-[^\n]*(?:\n   +\S[^\n]*)*)", re.M)


def scripts(folder: Path) -> list:
    """The runnable scripts of ``folder`` (not its private helpers such as ``_common.py``)."""
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def load(path: Path, monkeypatch):
    """The script at ``path`` as a fresh module, with its folder first on ``sys.path`` as when
    it runs; ``monkeypatch`` undoes every change to ``sys.path`` and ``sys.modules`` after the
    test (benchmarks put the checkout on the path, which the suite must not keep)."""
    monkeypatch.setattr(sys, "path", [str(path.parent), *sys.path])
    monkeypatch.delitem(sys.modules, path.stem, raising=False)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, path.stem, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def help_text(path: Path, monkeypatch) -> str:
    """What ``python <path> --help`` prints (through the script's ``main(["--help"])``)."""
    module = load(path, monkeypatch)
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
        module.main(["--help"])
    return output.getvalue()


def options(help: str) -> dict:
    """``{"--flag": "its help text"}`` for every option in a ``--help`` output."""
    found = {}
    for entry in OPTION.findall(help):
        first, *rest = entry.split("\n")
        invocation, *text = re.split(r" {2,}", first.strip(), maxsplit=1)
        text = " ".join([*text, *(line.strip() for line in rest)])
        for word in invocation.split():
            if word.startswith("-"):
                found[word.rstrip(",")] = text
    return found
