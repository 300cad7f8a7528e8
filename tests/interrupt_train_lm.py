"""Run examples/train_lm.py and send it signals at chosen points of its training loop: a helper
of tests/test_interruptions.py.

    python tests/interrupt_train_lm.py STEP:PHASE[:SIGNAL][,...] -- <train_lm flags>

PHASE is where in step STEP (counted from 1 in this process) the signal (default SIGINT)
arrives: ``data`` (the batch has been drawn), ``forward``, ``backward``, ``clip``,
``optimizer`` and ``scheduler`` (as that call begins), or ``save`` (in the middle of writing
the checkpoint of step STEP). The example is not changed: the library calls it makes are
wrapped. Exits as the example does (128 + the signal when interrupted), or with 3 if an event
never happened, which would make the test that asked for it vacuous.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import safetensors.numpy

import seqlib as sl
from seqlib import models, optim

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHASES = ("data", "forward", "backward", "clip", "optimizer", "scheduler", "save")


def parse(spec: str) -> dict:
    """``{(step, phase): signal number}`` from ``"3:backward,3:save:SIGTERM"``."""
    events = {}
    for item in spec.split(","):
        step, phase, *name = item.split(":")
        assert phase in PHASES, f"unknown phase {phase!r}; phases: {', '.join(PHASES)}"
        events[int(step), phase] = getattr(signal, name[0] if name else "SIGINT")
    return events


def main(spec: str, argv: list) -> int:
    events = parse(spec)
    now = {"step": 0, "saving": None, "stream": None}  # the step under way; the one being saved

    def arrive(phase: str, step=None) -> None:
        number = events.pop((now["step"] if step is None else step, phase), None)
        if number is not None:
            os.kill(os.getpid(), number)  # its handler runs before the next line

    def wrap(owner, name: str, phase: str, when=lambda *args, **kwargs: True) -> None:
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            if when(*args, **kwargs):
                arrive(phase)
            return original(*args, **kwargs)

        setattr(owner, name, wrapped)

    sys.path.insert(0, str(EXAMPLES))
    import train_lm

    original_batches = train_lm.batches

    def batches(data, config, rng):
        stream = original_batches(data, config, rng)
        if now["stream"] is not None:  # evaluate()'s batches are not steps
            return stream

        def training():
            for batch in stream:  # drawing the batch advanced the batch generator
                now["step"] += 1
                arrive("data")
                yield batch

        now["stream"] = training()
        return now["stream"]

    train_lm.batches = batches
    for model_class in (models.TransformerLM, models.LSTMLM):
        wrap(model_class, "forward", "forward", lambda model, *args, **kwargs: model.training)
    wrap(sl.Tensor, "backward", "backward")
    wrap(sl.nn.utils, "clip_grad_norm_", "clip")
    wrap(optim.AdamW, "step", "optimizer")
    wrap(optim.lr_scheduler.LambdaLR, "step", "scheduler")
    original_save_checkpoint = sl.save_checkpoint

    def save_checkpoint(*args, **kwargs):
        now["saving"] = kwargs["step"]
        try:
            return original_save_checkpoint(*args, **kwargs)
        finally:
            now["saving"] = None

    sl.save_checkpoint = save_checkpoint
    original_save_file = safetensors.numpy.save_file

    def save_file(*args, **kwargs):
        if now["saving"] is not None:  # inside atomic_write, with the temporary created
            arrive("save", now["saving"])
        return original_save_file(*args, **kwargs)

    safetensors.numpy.save_file = save_file
    number = train_lm.main(argv)["interrupted"]
    if events:
        print(f"interrupt_train_lm: never reached {sorted(events)}", file=sys.stderr)
        return 3
    return 128 + number if number else 0


if __name__ == "__main__":
    separator = sys.argv.index("--")
    sys.exit(main(sys.argv[1], sys.argv[separator + 1:]))
