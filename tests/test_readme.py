"""README.md's code runs as written: every ```python block executes in a fresh namespace, and
every command it shows (bash blocks and inline `python ...` / `pip ...` spans) names scripts,
flags, modules and extras that exist."""

from __future__ import annotations

import importlib.util
import re
import shlex
import textwrap

import pytest
from scripts import ROOT, help_text, options, scripts

README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)
BLOCKS = [(language, textwrap.dedent(body)) for _, language, body in FENCE.findall(README)]
PYTHON = [body for language, body in BLOCKS if language == "python"]
PROSE = FENCE.sub("", README)
COMMANDS = [line for language, body in BLOCKS if language in ("bash", "sh")
            for line in body.splitlines() if line.strip() and not line.startswith("#")]
COMMANDS += re.findall(r"`((?:python|pip) [^`]+)`", PROSE)
MAX_LINES = 30  # a README snippet stays short enough to read, and quick to run


def test_the_readme_has_code_to_check():
    assert len(PYTHON) >= 2 and len(COMMANDS) >= 3


@pytest.mark.parametrize("code", PYTHON, ids=[f"block{i}" for i in range(len(PYTHON))])
def test_python_block_runs_as_written(code, tmp_path, monkeypatch):
    assert len(code.splitlines()) <= MAX_LINES, "README snippets stay under 30 lines"
    monkeypatch.chdir(tmp_path)  # files a snippet writes (run.safetensors) land here
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})


def _script_flags(path, monkeypatch) -> set:
    return set(options(help_text(path, monkeypatch)))


def _check_python(words: list, monkeypatch) -> None:
    if words[:1] == ["-m"]:
        assert importlib.util.find_spec(words[1]), f"no module {words[1]}"
        return
    script = ROOT / words[0]
    assert script.is_file(), f"README runs {words[0]}, which does not exist"
    unknown = {w.split("=")[0] for w in words[1:] if w.startswith("--")}
    unknown -= _script_flags(script, monkeypatch)
    assert not unknown, f"README passes {sorted(unknown)} to {words[0]}, which has no such flag"


def _check_pip(words: list) -> None:
    assert words[0] == "install", words
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^([\w-]+) = \[", section, re.M))
    assert extras, "no extras found in pyproject.toml"
    for spec in words[1:]:
        local = re.fullmatch(r"\.(?:\[(.*)\])?", spec)
        if local and local.group(1) and "..." not in local.group(1):  # ".[extra,...]": prose
            assert set(local.group(1).split(",")) <= extras, f"unknown extra in {spec}"


@pytest.mark.parametrize("line", COMMANDS)
def test_command_names_what_exists(line, monkeypatch):
    for command in line.split("&&"):
        program, *words = shlex.split(command)
        if program == "python":
            _check_python(words, monkeypatch)
        elif program == "pip":
            _check_pip(words)
        else:
            pytest.fail(f"README runs {program!r}: add a check for it here")


def test_inline_flags_exist(monkeypatch):
    """A flag quoted alone in the prose (`--steps 4000`) is a flag of some script."""
    quoted = {span.split()[0] for span in re.findall(r"`(--[\w-]+[^`]*)`", PROSE)}
    known = set()
    for script in scripts(ROOT / "examples") + scripts(ROOT / "benchmarks"):
        known |= _script_flags(script, monkeypatch)
    assert quoted and quoted <= known, f"README quotes unknown flags {sorted(quoted - known)}"
