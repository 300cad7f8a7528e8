"""An example's flags: built from its Config dataclass, checked, saved with a run, restored.

Every field declared with ``flag(default, help)`` becomes ``--field-name``: its help says what
it does and shows its default, its type is the default's, and a list default takes one or more
values. A number must be > 0 unless the field gives a ``minimum``; ``keep=True`` marks what a
resumed run cannot change (what shapes its model). ``parse`` returns the config and,
separately, the flags the user actually typed, so that a resumed run tells a flag given again
from a changed one. Bad flags stop the script with a one-line error (``fail``). What a resumed
run must find as it was, besides its flags (its text, its tokenizer), it checks by
``fingerprint``; ``resumed`` gives the flags of a run to continue.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path

import seqlib as sl
from seqlib.atomic_write import atomic_write

OURS = ("minimum", "keep")  # flag() options for this module, not for argparse


def flag(default, help: str, **options):
    """A Config field that is also a flag (``options``: argparse's, e.g. ``choices``, or
    ``minimum`` and ``keep``)."""
    metadata = {"help": help, **options}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option(name: str) -> str:
    """The flag of a Config field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def parse(config_class, argv=None, description: str = "") -> tuple:
    """``(config, given)``: ``config_class`` with the flags of ``argv`` applied, and a dict of
    just the flags given."""
    parser = argparse.ArgumentParser(description=description,  # the docstring, as laid out
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     argument_default=argparse.SUPPRESS)  # absent: not given
    defaults = config_class()
    for field in dataclasses.fields(config_class):
        options = {k: v for k, v in field.metadata.items() if k not in OURS}
        default = getattr(defaults, field.name)
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        options["help"] += f" (default: {shown if shown != '' else repr('')})"
        if isinstance(default, bool):
            options["action"] = "store_false" if default else "store_true"
        elif isinstance(default, list):
            options.update(type=type(default[0]), nargs="+")
        else:
            options["type"] = type(default)
        parser.add_argument(option(field.name), **options)
    given = vars(parser.parse_args(argv))
    return config_class(**given), given


def fail(message: str):
    """Stop with a one-line error and no traceback: the flags are wrong, not the code."""
    raise SystemExit(f"error: {message}")


def require(condition, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not condition:
        fail(message)


def check(config) -> None:
    """Fail unless every number is > 0 (>= its field's ``minimum``, where one is given)."""
    for field in dataclasses.fields(config):
        values = getattr(config, field.name)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            minimum = field.metadata.get("minimum")
            if value <= 0 if minimum is None else value < minimum:
                bound = "> 0" if minimum is None else f">= {minimum}"
                fail(f"{option(field.name)} must be {bound}, got {value}")


def save(config, path: Path) -> None:
    """Write the flags of a run to ``path`` (JSON, atomically), for ``restore``."""
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def restore(config_class, path: Path, given: dict):
    """The flags saved at ``path``, updated by those ``given`` now, except that the fields
    marked ``keep`` must not change."""
    require(path.is_file(), f"--resume: {path.parent} holds no saved run (no {path.name})")
    saved = json.loads(path.read_text())
    for field in dataclasses.fields(config_class):
        name = field.name
        if field.metadata.get("keep") and name in given and given[name] != saved.get(name):
            fail(f"{option(name)} {given[name]} conflicts with the run in {path.parent}, which "
                 f"has {option(name)} {saved.get(name)}: leave it out, or start a new run")
    known = {field.name for field in dataclasses.fields(config_class)}
    return config_class(**{**{k: v for k, v in saved.items() if k in known}, **given})


def resumed(config_class, given: dict, checkpoint: str, run: str):
    """The run saved in --out to continue: its flags (``run``, in --out) with those ``given``
    now, as ``restore`` merges them, once its ``checkpoint`` (in --out) is found at a step
    before --steps. ``config_class`` has the fields ``out`` and ``steps``."""
    out = Path(given.get("out", config_class.out))
    require((out / checkpoint).is_file(), f"--resume: {out} holds no checkpoint to resume")
    config = dataclasses.replace(restore(config_class, out / run, given), out=str(out))
    step = sl.load(out / checkpoint)["step"]
    require(step < config.steps, f"--resume: the run in {out} is at step {step} already: "
            "pass a larger --steps")
    return config


def fingerprint(**parts) -> dict:
    """``{name: sha256}`` of the parts of a run that a resumed run must find unchanged: a text
    (its UTF-8), bytes, or an object with ``save(path)`` (a tokenizer), as saved."""
    digests = {}
    for name, part in parts.items():
        if hasattr(part, "save"):
            with tempfile.TemporaryDirectory() as folder:
                part.save(Path(folder) / name)
                part = (Path(folder) / name).read_bytes()
        data = part.encode() if isinstance(part, str) else part
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def unchanged(saved: dict, now: dict, run: str, **what: str) -> None:
    """Fail naming the first part (``what[name]`` describes it) whose ``fingerprint`` differs
    from the one ``saved`` with ``run``; a part saved without one passes."""
    for name, digest in now.items():
        require(saved.get(name, digest) == digest, f"--resume: {what[name]} is not the {name} "
                f"{run} was trained on (its sha256 differs): resume with the run's {name}, or "
                "start a new run")
