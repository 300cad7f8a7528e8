"""train_lm.py --distributed: data-parallel training in the processes an MPI launcher started.

    mpiexec -n 2 python -m mpi4py examples/train_lm.py --distributed
    mpiexec -n 2 python -m mpi4py examples/train_lm.py --distributed --device cuda  # a GPU each

Every process draws the same global batch (the batches' generator has the same seed
everywhere) and trains on its own block of rows; DistributedDataParallel averages the
gradients, so each step is the step that one process takes on the whole batch, up to the order
in which float32 sums are added. Rank 0 prints and writes the files. Ctrl-C (mpiexec passes it
on to every process) or a signal to any one process stops all of them after the same step, and
they save one checkpoint, which --resume --distributed continues (in any number of processes
that divides --batch-size). Without --distributed no process group exists and every function
here is that of a single process, at no cost.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

from _cli import fail, require
from tqdm import tqdm

import seqlib as sl
import seqlib.distributed as dist

LAUNCH = "mpiexec -n {} python -m mpi4py "  # -m mpi4py: a rank that crashes ends the job


def start(config):
    """``config``, once this process has joined the MPI job (with ``--distributed``: backend
    ``nccl`` for ``--device cuda``, else ``mpi``) and its device is checked."""
    device = config.device
    if config.distributed:
        require(dist.is_mpi_available(), "--distributed needs mpi4py and an MPI launcher: "
                'pip install ".[distributed]"')
        require(device in ("cpu", "cuda"), f"--device {device}: with --distributed give cpu "
                "or cuda (each process takes the GPU of its rank on its machine)")
        try:
            dist.init_process_group("nccl" if device == "cuda" else "mpi")
        except RuntimeError as error:
            fail(f"--distributed: {error}")
        size = dist.get_world_size()
        require(config.batch_size % size == 0, f"--batch-size {config.batch_size} does not "
                f"split evenly across {size} processes")
    try:  # the device exists
        sl.zeros(1, device=device_of(device))
    except (ValueError, RuntimeError) as error:
        fail(str(error))
    return config


def device_of(device: str) -> str:
    """This process's device for ``--device``: with --distributed, cuda is the GPU of the
    process's rank on its machine (as the nccl backend chose)."""
    if device == "cuda" and dist.is_initialized():
        return f"cuda:{dist.get_node_local_rank()}"
    return device


class Progress(tqdm):
    """The training's progress bar, on rank 0 only: the loss of each step, averaged over the
    processes, and the tokens per second of all of them; and the record of the validations,
    timed by a training clock that stops while they run (so that runs compare on training
    time)."""

    def __init__(self, config, step: int):
        super().__init__(total=config.steps, initial=step, desc="training", dynamic_ncols=True,
                         disable=not is_main())
        self.tokens = config.batch_size * config.block_size  # per step, of all processes
        self.started = time.perf_counter()
        self.losses = []  # of the steps taken since, averaged over the processes
        self.history = []  # {step, seconds, val_loss, val_bpc} of each validation since
        self.paused_seconds = 0.0  # spent in ``paused`` blocks (validations): not training

    @property
    def seconds(self) -> float:
        """Since the bar began."""
        return time.perf_counter() - self.started

    @property
    def training_seconds(self) -> float:
        """Since the bar began, less the time spent in ``paused`` blocks."""
        return self.seconds - self.paused_seconds

    @contextlib.contextmanager
    def paused(self):
        """A block whose time the training clock leaves out (a validation)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.paused_seconds += time.perf_counter() - started

    def validated(self, step: int, loss: float, bpc: float) -> None:
        """Print a validation's loss (nats per token), perplexity and bits per character, and
        record them with the step and the training seconds so far."""
        self.history.append({"step": step, "seconds": self.training_seconds, "val_loss": loss,
                             "val_bpc": bpc})
        say(f"step {step}: validation loss {loss:.4f}, perplexity {math.exp(loss):.2f}, "
            f"{bpc:.3f} bits per character")

    def step(self, loss: float) -> None:
        """Count a step that had this process's ``loss``."""
        self.losses.append(average(loss))
        self.update(1)
        rate = self.tokens * len(self.losses) / max(self.training_seconds, 1e-9)
        self.set_postfix(loss=f"{self.losses[-1]:.3f}", tok_s=f"{rate:,.0f}")


def is_main() -> bool:
    """Whether this process prints and writes files (rank 0, or the only process)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def say(text: str) -> None:
    """Print ``text`` from rank 0 only (above a progress bar, if one is running)."""
    if is_main():
        tqdm.write(text)


def rank_seed(seed: int) -> int:
    """This process's seed for dropout: ``seed`` itself on rank 0 and alone."""
    return dist.rank_seed(seed) if dist.is_initialized() else seed


def wrap(model):
    """``model`` in DistributedDataParallel across the processes, or as it is alone."""
    return dist.DistributedDataParallel(model) if dist.is_initialized() else model


def rows(batch_size: int) -> slice:
    """This process's rows of a global batch: the rank's block, the blocks in rank order."""
    if not dist.is_initialized():
        return slice(None)
    part = batch_size // dist.get_world_size()
    return slice(dist.get_rank() * part, (dist.get_rank() + 1) * part)


def average(value: float) -> float:
    """The mean of ``value`` over the processes (a loss of equal parts of a batch)."""
    if not dist.is_initialized():
        return value
    mean = sl.tensor([value], dtype=sl.float64)
    dist.all_reduce(mean, dist.ReduceOp.AVG)
    return mean.item()


def agree(signal_number: int) -> int:
    """The signal any process received (the largest number; 0: none), the same on all, so
    that all stop at the same step and save one checkpoint."""
    if not dist.is_initialized():
        return signal_number
    flag = sl.tensor([signal_number])
    dist.all_reduce(flag, dist.ReduceOp.MAX)
    return int(flag.item())


def same(digests: dict) -> dict:
    """``digests`` (a ``fingerprint``), checked to be every process's: the same text, the
    same tokenizer."""
    if dist.is_initialized():
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, digests)
        differ = sorted({name for other in everyone for name in digests
                         if other[name] != digests[name]})
        require(not differ, f"--distributed: the processes differ in their {', '.join(differ)} "
                "(sha256): give them all the same files")
    return digests


def command() -> str:
    """How this run was launched: the prefix of the command that resumes it."""
    if not dist.is_initialized():
        return "python examples/train_lm.py"
    return LAUNCH.format(dist.get_world_size()) + "examples/train_lm.py --distributed"


def finish() -> None:
    """Leave the MPI job once every process is done (rank 0's output written first), and end
    MPI: an interrupted run then exits with its status (130) instead of MPI_Abort, which
    ``python -m mpi4py`` calls at a non-zero exit while MPI is running."""
    if dist.is_initialized():
        sys.stdout.flush()
        dist.barrier()
        dist.destroy_process_group()
        from mpi4py import MPI

        MPI.Finalize()
