"""Run examples/train_lm.py in every process of an MPI job (or in this one process) and write
what its ``main()`` returns: a helper of tests/test_distributed_training.py.

    mpiexec -n 2 python -m mpi4py tests/train_lm_job.py RESULTS [STEP:RANK[:SIGNAL]] -- <flags>
    python tests/train_lm_job.py RESULTS [STEP:RANK[:SIGNAL]] -- <flags>

Each process writes ``RESULTS/rank<r>.json``: main()'s result (step, val_loss, interrupted,
the losses of the steps it took) with its ``rank``, ``world_size`` and ``first_batch`` (the
input rows of its first training batch). With ``STEP:RANK``, the
process of that rank sends itself the signal (default SIGINT) as its optimizer step STEP
begins, in the middle of the step, as a Ctrl-C would arrive. The example is not changed: the
library calls it makes are wrapped. Exits as the example does (128 + the signal when
interrupted), or with 3 if the signal was never sent, which would make the test vacuous.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import seqlib.distributed as dist
from seqlib import optim

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main(results: Path, spec: str | None, argv: list) -> int:
    sys.path.insert(0, str(EXAMPLES))
    import train_lm

    where = {"rank": 0, "world_size": 1}
    original_start = train_lm.job.start

    def start(config):  # this process's place in the job, once it has joined
        config = original_start(config)
        if dist.is_initialized():
            where.update(rank=dist.get_rank(), world_size=dist.get_world_size())
        return config

    train_lm.job.start = start
    original_batches = train_lm.batches

    def batches(data, config, rng):  # the first call is the training's, evaluate's come later
        stream = original_batches(data, config, rng)
        if "first_batch" in where:
            return stream
        where["first_batch"] = None

        def training():
            for inputs, targets in stream:
                if where["first_batch"] is None:
                    where["first_batch"] = inputs.tolist()
                yield inputs, targets

        return training()

    train_lm.batches = batches
    pending = None
    if spec:
        step, rank, *name = spec.split(":")
        pending = (int(step), int(rank), getattr(signal, name[0] if name else "SIGINT"))
        original_step, steps = optim.AdamW.step, []

        def step_with_signal(self, closure=None):
            nonlocal pending
            steps.append(1)
            if pending and (len(steps), where["rank"]) == pending[:2]:
                os.kill(os.getpid(), pending[2])  # its handler runs before the next line
                pending = None
            return original_step(self, closure)

        optim.AdamW.step = step_with_signal
    result = train_lm.main(argv)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"rank{where['rank']}.json").write_text(json.dumps({**result, **where}))
    if pending and pending[1] == where["rank"]:
        print(f"train_lm_job: rank {pending[1]} never reached step {pending[0]}", file=sys.stderr)
        return 3
    number = result["interrupted"]
    return 128 + number if number else 0


if __name__ == "__main__":
    separator = sys.argv.index("--")
    spec = sys.argv[2] if separator == 3 else None
    sys.exit(main(Path(sys.argv[1]), spec, sys.argv[separator + 1:]))
