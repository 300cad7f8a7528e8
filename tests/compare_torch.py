"""Run the fuzzer's random programs (tests/fuzz_programs.py) on seqlib and on torch, in float64
and float32, and print every disagreement: a value, dtype or shape, a gradient, or one library
raising where the other computes. It also checks the NumPy reference against torch, which is
how the reference's own reading of PyTorch's semantics was verified.

Not part of CI (torch is never a dependency of seqlib or its tests). Where torch is importable
and seqlib is installed::

    python tests/compare_torch.py --programs 2000 --seed 0
    python tests/compare_torch.py --programs 500 --max-steps 10 --quiet
    python tests/compare_torch.py --replay program.txt    # a listing a failure printed

The exit status is 1 when anything disagreed.
"""

from __future__ import annotations

import argparse
import collections
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_programs import (  # noqa: E402 - the fuzzer's modules live next to this script
    Leaf,
    Lib,
    Program,
    RandomDrawer,
    Reference,
    execute,
    generate,
    gradients,
    loss_weights,
)

MARGIN = 1e-3  # as tests/test_fuzz.py: no float32 values near a discontinuity
FRAGILE = 1e-9  # closer than this to a kink or jump, yet not on it: rounding decides


@dataclass
class Disagreement:
    kind: str  # "raises", "dtype", "shape", "value", "broken", "gradient", "reference"
    dtype: str
    where: str  # the op, or the leaf for a gradient
    detail: str


def libraries(float_dtype: str) -> dict:
    import torch
    import torch.nn.functional as torch_functional

    import seqlib
    import seqlib.nn.functional as seqlib_functional

    return {"seqlib": Lib(seqlib, seqlib_functional, float_dtype),
            "torch": Lib(torch, torch_functional, float_dtype)}


def run(program: Program, L: Lib):
    """(tensors, None, None) or (None, the error, the line that raised)."""
    trace = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return execute(program, L, trace=trace), None, None
    except Exception as error:  # noqa: BLE001 - any error is an answer to compare
        return None, error, trace[-1] if trace else None


def as_numpy(tensor):
    tensor = tensor.detach()
    if hasattr(tensor, "resolve_conj"):
        tensor = tensor.cpu()
    return numpy.asarray(tensor.numpy())


def close(a, b, float_dtype: str, scale: float, gradient: bool = False) -> bool:
    """Equal up to rounding: float64's, or float32's (looser for gradients, which also carry
    the rounding of every value they were computed from, as tests/test_fuzz.py)."""
    a, b = numpy.asarray(a, dtype=numpy.float64), numpy.asarray(b, dtype=numpy.float64)
    if a.shape != b.shape:
        return False
    if float_dtype == "float64":
        rtol, atol = 1e-7, 1e-9 * scale
    else:
        rtol, atol = (1e-2, 1e-3 * scale) if gradient else (2e-3, 2e-4 * scale)
    return bool(numpy.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def producers(program: Program) -> dict:
    """name -> the op (or "leaf") that made it."""
    made = {}
    for line in program.lines:
        if isinstance(line, Leaf):
            made[line.name] = "leaf"
        else:
            made.update((name, line.op) for name in line.outs)
    return made


def compare(program: Program, float_dtype: str) -> list:
    """Every disagreement between seqlib, torch and the reference on ``program``."""
    L = libraries(float_dtype)
    reference = Reference().run(program)
    expected = reference.outputs()
    # values are compared unless rounding may decide a discontinuity (float32 near one; either
    # dtype within rounding of one but not on it), or PyTorch leaves a result unspecified
    # (topk among ties: the reference checks seqlib's choice)
    steady = (not 0 < reference.steady < FRAGILE) if float_dtype == "float64" else (
        reference.finite and reference.steady >= MARGIN)
    steady = steady and not reference.unspecified
    made = producers(program)
    found = []
    runs = {name: run(program, lib) for name, lib in L.items()}
    (env_s, error_s, line_s), (env_t, error_t, line_t) = runs["seqlib"], runs["torch"]
    if error_s or error_t:
        if not (error_s and error_t):
            line = line_s or line_t
            who, error = ("seqlib", error_s) if error_s else ("torch", error_t)
            found.append(Disagreement("raises", float_dtype, getattr(line, "op", "leaf"),
                                      f"only {who} raises at `{line}`: "
                                      f"{type(error).__name__}: {str(error)[:300]}"))
        return found
    for name, (array, _) in expected.items():
        s, t = env_s[name], env_t[name]
        if str(s.dtype) != str(t.dtype).replace("torch.", ""):
            found.append(Disagreement("dtype", float_dtype, made[name],
                                      f"{name}: seqlib {s.dtype}, torch {t.dtype}"))
        if tuple(s.shape) != tuple(t.shape):
            found.append(Disagreement("shape", float_dtype, made[name],
                                      f"{name}: seqlib {tuple(s.shape)}, torch "
                                      f"{tuple(t.shape)}"))
            continue
        if not steady:
            continue
        try:
            got_s, got_t = as_numpy(s), as_numpy(t)
        except Exception as error:  # noqa: BLE001 - a tensor that cannot be read is an answer
            found.append(Disagreement("broken", float_dtype, made[name],
                                      f"{name}: {type(error).__name__}: {error}"))
            continue
        if not close(got_s, got_t, float_dtype, reference.scale):
            found.append(Disagreement("value", float_dtype, made[name],
                                      f"{name}: seqlib {got_s.tolist()} torch {got_t.tolist()}"))
        if float_dtype == "float64" and not close(array, got_t, float_dtype, reference.scale):
            found.append(Disagreement("reference", float_dtype, made[name],
                                      f"{name}: reference {array.tolist()} torch "
                                      f"{got_t.tolist()}"))
    # at a kink each library picks its documented subgradient: compared when the kink is hit
    # exactly in float64, not when rounding decides which side of it a value falls (a std of
    # ~1e-17); float32 rounding may miss any kink, so its gradients are compared away from them
    if float_dtype == "float64":
        smooth = steady and not 0 < reference.smooth < FRAGILE
    else:
        smooth = steady and reference.smooth >= MARGIN
    found += compare_gradients(program, L, {"seqlib": env_s, "torch": env_t}, expected,
                               float_dtype, smooth)
    return found


def compare_gradients(program, L, envs, expected, float_dtype, steady) -> list:
    weights = loss_weights(expected)
    grads = {}
    for name, lib in L.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                grads[name] = gradients(program, lib, weights, envs[name]), None
        except Exception as error:  # noqa: BLE001 - any error is an answer to compare
            grads[name] = None, error
    (g_s, e_s), (g_t, e_t) = grads["seqlib"], grads["torch"]
    if e_s or e_t:
        if not (e_s and e_t):
            who, error = ("seqlib", e_s) if e_s else ("torch", e_t)
            return [Disagreement("raises", float_dtype, "backward",
                                 f"only {who} raises in backward: {type(error).__name__}: "
                                 f"{str(error)[:300]}")]
        return []
    if not steady:
        return []
    found = []
    for leaf, grad in g_t.items():
        scale = 1 + numpy.abs(numpy.nan_to_num(grad)).max(initial=0)
        if not close(g_s[leaf], grad, float_dtype, scale, gradient=True):
            found.append(Disagreement("gradient", float_dtype, leaf,
                                      f"d/d{leaf}: seqlib {g_s[leaf].tolist()} torch "
                                      f"{grad.tolist()}"))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=1000, help="how many random programs")
    parser.add_argument("--seed", type=int, default=0, help="the first program's seed")
    parser.add_argument("--max-steps", type=int, default=6, help="steps per program, at most")
    parser.add_argument("--replay", type=Path, help="compare one program listing from a file")
    parser.add_argument("--quiet", action="store_true", help="print the summary only")
    args = parser.parse_args(argv)
    if args.replay:
        programs = [(None, Program.parse(args.replay.read_text()))]
    else:
        programs = ((seed, generate(RandomDrawer(seed), args.max_steps))
                    for seed in range(args.seed, args.seed + args.programs))
    counts, failing, total = collections.Counter(), 0, 0
    for seed, program in programs:
        total += 1
        found = [d for dtype in ("float64", "float32") for d in compare(program, dtype)]
        if not found:
            continue
        failing += 1
        if not args.quiet:
            print(f"==== program (seed {seed})\n{program}")
            for d in found:
                print(f"  [{d.kind} {d.dtype} {d.where}] {d.detail}")
        for d in found:
            counts[(d.kind, d.where)] += 1
    print(f"\n{total} programs, {failing} with disagreements")
    for (kind, where), count in counts.most_common():
        print(f"  {count:5d}  {kind:9s} {where}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
