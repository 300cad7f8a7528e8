"""Random op programs: their representation, their generation, and three interpreters.

A program is a list of lines over named tensors: ``Leaf`` lines make inputs, ``Step`` lines
apply an op of ``fuzz_ops.OPS`` to earlier names and Python scalars. One program runs on

* ``Reference``: float64 NumPy (values only, with NumPy views for PyTorch's views, so in-place
  writes through views land where they land in PyTorch); the generator runs it step by step
  to keep every op inside its domain;
* ``execute(program, Lib(seqlib ...))``: seqlib, in float64 or float32;
* ``execute(program, Lib(torch ...))``: torch, in tests/compare_torch.py only.

``str(program)`` is a listing that ``Program.parse`` reads back::

    x0 = leaf('f', (2, 3), [0.5, -1.25, ...])
    x1 = exp(x0, style='fn')
    x2, x3 = max(x1, dim=1, keepdim=False, style='method')
    add_(x1, x2, style='op')
"""

from __future__ import annotations

import ast
import math
import warnings
from dataclasses import dataclass, field

import numpy
from fuzz_ops import FLOATS, OPS, WEIGHTS, constant, dtype_name

INF = math.inf
LIMIT = 1e5  # larger intermediate values only measure rounding, not semantics


# ---- drawing decisions -----------------------------------------------------------------------
class Drawer:
    """Where a generator's decisions come from: hypothesis (``HypothesisDrawer``, so failures
    shrink) or a seeded NumPy generator (``RandomDrawer``, for the comparison script)."""

    def integer(self, low: int, high: int) -> int:  # inclusive
        raise NotImplementedError

    def choice(self, options):
        options = list(options)
        return options[self.integer(0, len(options) - 1)]

    def boolean(self, p: float = 0.5) -> bool:
        return self.integer(0, 99) >= 100 - round(100 * p)  # shrinks towards False


class HypothesisDrawer(Drawer):
    def __init__(self, draw):
        from hypothesis import strategies

        self._draw, self._integers = draw, strategies.integers

    def integer(self, low: int, high: int) -> int:
        return self._draw(self._integers(low, high))


class RandomDrawer(Drawer):
    def __init__(self, seed: int):
        self._random = numpy.random.default_rng(seed)

    def integer(self, low: int, high: int) -> int:
        return int(self._random.integers(low, high + 1))


# ---- the program -----------------------------------------------------------------------------
@dataclass(frozen=True)
class V:
    """A reference to a named tensor of the program."""

    name: str

    def __repr__(self) -> str:
        return self.name


@dataclass
class Leaf:
    """An input tensor: dtype code, shape, values (flat), and whether it requires grad."""

    name: str
    code: str
    shape: tuple
    values: list
    grad: bool = True

    def array(self):
        dtype = {"b": bool, "i": numpy.int64}.get(self.code, numpy.float32)
        return numpy.array(self.values, dtype=dtype).reshape(self.shape).astype(
            numpy.float64 if self.code in FLOATS else dtype)

    def __str__(self) -> str:
        values = [str(numpy.float32(v)) if self.code in FLOATS else repr(v) for v in self.values]
        grad = "" if self.grad or self.code not in FLOATS else ", grad=False"
        return f"{self.name} = leaf({self.code!r}, {self.shape!r}, [{', '.join(values)}]{grad})"


@dataclass
class Step:
    """``outs = op(*args, **params)``; an in-place op has no outs."""

    op: str
    args: tuple
    params: dict
    outs: tuple = ()

    def __str__(self) -> str:
        arguments = [repr(a) for a in self.args]
        arguments += [f"{k}={v!r}" for k, v in self.params.items()]
        call = f"{self.op}({', '.join(arguments)})"
        if not self.outs:
            return call
        names = ", ".join(self.outs) + ("," if len(self.outs) == 1 and
                                        OPS[self.op].effect == "views" else "")
        return f"{names} = {call}"


@dataclass
class Program:
    """Lines (``Leaf`` and ``Step``) in the order they run; prints as a listing."""

    lines: list = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(line) for line in self.lines)

    __repr__ = __str__

    def _repr_pretty_(self, printer, cycle) -> None:  # how hypothesis prints a failing one
        printer.text('Program.parse("""\n' + str(self) + '\n""")')

    @property
    def leaves(self) -> list:
        return [line for line in self.lines if isinstance(line, Leaf)]

    @property
    def steps(self) -> list:
        return [line for line in self.lines if isinstance(line, Step)]

    @classmethod
    def parse(cls, text: str) -> Program:
        """Read a listing back (what a failing test or the comparison script printed)."""
        lines = []
        for statement in ast.parse(text).body:
            target, call = (statement.targets[0], statement.value) if isinstance(
                statement, ast.Assign) else (None, statement.value)
            names = [] if target is None else [
                t.id for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
            args = tuple(V(a.id) if isinstance(a, ast.Name) else ast.literal_eval(a)
                         for a in call.args)
            params = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            if call.func.id == "leaf":
                lines.append(Leaf(names[0], *args, **params))
            else:
                lines.append(Step(call.func.id, args, params, tuple(names)))
        return cls(lines)


# ---- the float64 NumPy reference -------------------------------------------------------------
class Invalid(Exception):
    """The step is outside PyTorch's domain for the op (the generator draws another)."""


class Storage:
    """Memory shared by a tensor and its views; ``frozen`` once no in-place write may touch it
    (a leaf's, one torch's backward keeps, one a view of undecided aliasing reads)."""

    def __init__(self, frozen: bool = False):
        self.frozen = frozen


@dataclass
class Var:
    """A named tensor of the reference: its current value (a NumPy view for a view) and what
    the generator needs to know about it."""

    name: str
    code: str
    array: numpy.ndarray
    storage: Storage
    requires_grad: bool = False
    leaf: bool = False
    overlapping: bool = False  # made by expand: elements share memory
    multi_view: bool = False  # one of the views split/chunk/unbind return
    dense: bool = True  # contiguous in torch as well as in NumPy, as far as can be told: a
    # layout PyTorch leaves to the op (clone preserves strides, einsum may give a permuted
    # view) can make torch.view raise where seqlib's contiguous copy allows it

    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def size(self) -> int:
        return self.array.size


def canonical(code: str):
    return {"b": numpy.bool_, "i": numpy.int64}.get(code, numpy.float64)


class Reference:
    """Runs a program line by line in float64 NumPy and keeps what the checks need: the
    smallest distance from a non-smooth point (``smooth``) and from a discontinuity
    (``steady``), whether a value went non-finite, and the largest magnitude (``scale``)."""

    def __init__(self):
        self.vars: dict[str, Var] = {}
        self.smooth = self.steady = INF
        self.finite = True
        self.scale = 1.0
        self.cut = False  # autograd's gradient is not the derivative by design (detach)
        self.unspecified = False  # PyTorch leaves a result unspecified (topk among ties)

    def run(self, program: Program) -> Reference:
        for line in program.lines:
            self.apply(line)
        return self

    def apply(self, line) -> None:
        if isinstance(line, Leaf):
            array = line.array()
            self.vars[line.name] = Var(line.name, line.code, array, Storage(frozen=True),
                                       line.grad and line.code in FLOATS, leaf=True)
            self.scale = max(self.scale, _magnitude(array))
            return
        op = OPS[line.op]
        operands = [self.vars[a.name] if isinstance(a, V) else a for a in line.args]
        if op.raises:
            return  # PyTorch refuses the call: nothing changes
        results, codes = self._evaluate(op, operands, line.params)
        self._commit(op, line, operands, results, codes)

    def _evaluate(self, op, operands, params):
        arrays = [o.array if isinstance(o, Var) else o for o in operands]
        try:
            with numpy.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the mean of nothing
                result = op.reference(*arrays, **params)
            codes = op.dtype(*operands, **params)
        except (ValueError, IndexError) as error:  # a TypeError is a bug of the table
            raise Invalid(f"{op.name}: {error}") from error
        results = tuple(result) if isinstance(result, tuple) else (result,)
        codes = codes if isinstance(codes, tuple) else (codes,) * len(results)
        if op.inplace:
            target = operands[0]
            if any(isinstance(o, Var) and o.storage is target.storage for o in operands[1:]):
                raise Invalid("an operand shares memory with the written tensor")
            results = (numpy.broadcast_to(results[0], target.shape),)
            codes = (target.code,)
        grad = op.differentiable and any(isinstance(o, Var) and o.requires_grad
                                         for o in operands)
        for result, code in zip(results, codes):
            if code == "f32" and grad:
                raise Invalid("a float32-only value in the gradient path of a float64 run")
            if code in FLOATS and numpy.abs(numpy.nan_to_num(result, nan=0.0)).max(
                    initial=0) > LIMIT:
                raise Invalid("values beyond the magnitude the checks handle")
        return results, codes

    def _commit(self, op, line, operands, results, codes) -> None:
        arrays = [o.array if isinstance(o, Var) else o for o in operands]
        if op.cuts is not None:
            self.cut |= op.cuts(*arrays, **line.params)
        if op.unspecified is not None:
            self.unspecified |= op.unspecified(*arrays, **line.params)
        for measure, kind in ((op.kink, "smooth"), (op.jump, "jump")):
            if measure is not None:
                with numpy.errstate(all="ignore"):
                    margin = measure(*arrays, **line.params)
                self.smooth = min(self.smooth, margin)
                if kind == "jump":
                    self.steady = min(self.steady, margin)
        variables = [o for o in operands if isinstance(o, Var)]
        grad = op.differentiable and any(v.requires_grad for v in variables)
        if "in" in op.saves:
            for v in variables[1 if op.inplace else 0:]:
                v.storage.frozen = True
        if op.inplace:
            self._write(op, variables[0], results[0], grad)
        else:
            self._bind(op, line, variables, results, codes, grad)
        for result, code in zip(results, codes):
            if code in FLOATS:
                self.finite &= bool(numpy.isfinite(result).all())
                self.scale = max(self.scale, _magnitude(result))

    def _write(self, op, target, value, grad) -> None:
        target.array[...] = value
        if "out" in op.saves:
            target.storage.frozen = True
        if grad:
            for v in self.vars.values():
                if v.storage is target.storage:
                    v.requires_grad = True

    def _bind(self, op, line, variables, results, codes, grad) -> None:
        if not line.outs:
            line.outs = tuple(f"x{len(self.vars) + k}" for k in range(len(results)))
        if len(line.outs) != len(results):
            raise Invalid(f"{op.name} gives {len(results)} results, the listing names "
                          f"{len(line.outs)}")
        first = variables[0] if variables else None
        dense = all(v.dense for v in variables)
        for name, result, code in zip(line.outs, results, codes):
            var = Var(name, code, result, Storage(), grad and code in FLOATS)
            var.dense = dense and op.name != "einsum"
            if op.effect in ("view", "views"):
                var.dense = dense and result.flags.c_contiguous
                var.storage = first.storage
                var.overlapping = first.overlapping or op.name == "expand"
                var.multi_view = op.effect == "views" or first.multi_view
                if op.effect == "views" or op.name == "detach":
                    first.storage.frozen = True  # torch refuses later writes to such storage
                self.cut |= op.name == "detach"
            else:
                var.array = numpy.array(result, dtype=canonical(code))
                if op.effect == "copy?":  # a view or a copy: PyTorch leaves it undecided
                    first.storage.frozen = var.storage.frozen = True
            if "out" in op.saves:
                var.storage.frozen = True
            self.vars[name] = var

    def outputs(self) -> dict:
        """The final value of every tensor a step made: name -> (array, dtype code)."""
        return {name: (var.array.copy(), var.code) for name, var in self.vars.items()
                if not var.leaf}


def _magnitude(array) -> float:
    array = numpy.asarray(array)
    if array.dtype.kind != "f" or array.size == 0:
        return 0.0
    return float(numpy.abs(array[numpy.isfinite(array)]).max(initial=0.0))


# ---- generation ------------------------------------------------------------------------------
SIZES = (1, 2, 3, 1, 2, 4, 0)  # size-1 dims often, size 0 now and then


class Generator:
    """Draws a program op by op, running the reference as it goes; what ``Op.draw`` sees."""

    def __init__(self, drawer: Drawer, max_numel: int = 36):
        self.d = drawer
        self.max_numel = max_numel
        self.program = Program()
        self.reference = Reference()

    # -- what op drawing uses ------------------------------------------------------------------
    def pick(self, predicate=None, fallback=None) -> Var | None:
        """A tensor of the pool (recent ones more often); or, when none satisfies
        ``predicate``, a fresh leaf drawn by ``fallback`` (a value range (low, high),
        ("apart", gap) or "bool"), if given."""
        candidates = [v for v in self.reference.vars.values()
                      if predicate is None or predicate(v)]
        if candidates and (fallback is None or self.d.boolean(0.85)):
            if len(candidates) > 3 and self.d.boolean(0.5):
                candidates = candidates[-3:]
            return self.d.choice(candidates)
        if fallback is None:
            return None
        return self._fallback_leaf(self.shape(), fallback)

    def partner(self, var: Var, predicate=None, fallback=None) -> Var:
        """A second operand whose shape broadcasts with ``var``'s (both ways)."""
        candidates = [v for v in self.reference.vars.values()
                      if _broadcast(v.shape, var.shape) is not None
                      and (predicate is None or predicate(v))]
        if candidates and self.d.boolean(0.5):
            return self.d.choice(candidates)
        shape = self._variant(var.shape, grow=True)
        return self._fallback_leaf(shape, fallback or ("code", var.code))

    def fitting(self, shape: tuple, predicate=None, fallback=None, exact=False, low=None,
                high=None, grad=True) -> Var:
        """An operand whose shape broadcasts to ``shape`` (or equals it, with ``exact``)."""
        candidates = [v for v in self.reference.vars.values()
                      if (v.shape == shape if exact else _broadcast(v.shape, shape) == shape)
                      and (predicate is None or predicate(v))]
        if candidates and self.d.boolean(0.5):
            return self.d.choice(candidates)
        leaf_shape = shape if exact else self._variant(shape, grow=False)
        if low is not None:
            return self.leaf(leaf_shape, "f", low=low, high=high, grad=grad)
        return self._fallback_leaf(leaf_shape, fallback or ("code", "f"), grad=grad)

    def target(self, predicate) -> Var | None:
        """A tensor an in-place op may write: a non-leaf whose memory no backward keeps; when
        the pool has none, a clone of a float tensor, or a view of one."""
        var = self.pick(lambda v: predicate(v) and not v.storage.frozen and not v.leaf
                        and not v.overlapping and not v.multi_view)
        if var is not None and self.d.boolean(0.7):
            return var
        source = self.pick(lambda v: v.code == "f")
        if source is None:
            return None
        var = self.step("clone", (source,), {})
        if self.d.boolean(0.5):
            view = self.d.choice(("getitem", "transpose", "unsqueeze", "permute", "view"))
            drawn = OPS[view].draw_params(self, var)
            if drawn is not None and (view != "view" or var.dense):
                var = self.step(view, (var,), drawn)
        return var if predicate(var) else None

    def step(self, name: str, operands: tuple, params: dict) -> Var:
        """Apply an op now, inside another op's drawing (rolled back with it)."""
        args = tuple(V(o.name) if isinstance(o, Var) else o for o in operands)
        step = Step(name, args, params)
        self.reference.apply(step)
        self.program.lines.append(step)
        return self.reference.vars[step.outs[0]]

    def dims(self, ndim: int, kind: str):
        """A ``dim`` argument: "one" an int, "one-or-none", "many" (None, an int or a tuple),
        "some" (an int or a tuple), "tuple"; negative dims too, and 0/-1 on a 0-d tensor."""
        if kind in ("one-or-none", "many") and self.d.boolean(0.25):
            return None
        if ndim == 0 or kind in ("one", "one-or-none") or (kind != "tuple"
                                                            and self.d.boolean(0.5)):
            return self.d.integer(-max(ndim, 1), max(ndim, 1) - 1)
        chosen = [d for d in range(ndim) if self.d.boolean(0.5)] or [self.d.integer(0, ndim - 1)]
        return tuple(d - ndim * self.d.integer(0, 1) for d in chosen)

    def shape(self, min_ndim: int = 0) -> tuple:
        ndim = max(min_ndim, self.d.choice((0, 1, 1, 2, 2, 2, 3, 3, 4)))
        sizes = [self.d.choice(SIZES) for _ in range(ndim)]
        while int(numpy.prod(sizes)) > self.max_numel:
            sizes[sizes.index(max(sizes))] -= 1
        return tuple(sizes)

    def mask(self, shape: tuple):
        random = numpy.random.default_rng(self.d.integer(0, 2**31 - 1))
        return random.random(shape) < 0.5

    def leaf(self, shape: tuple, code: str, low=None, high=None, apart=None, grad=True,
             values=None) -> Var:
        """A new input tensor, its values drawn from a seed (or given)."""
        if values is None:
            values = self._values(shape, code, low, high, apart)
        name = f"x{len(self.reference.vars)}"
        line = Leaf(name, code, tuple(shape), numpy.asarray(values).reshape(-1).tolist(),
                    grad and code in FLOATS)
        self.program.lines.append(line)
        self.reference.apply(line)
        return self.reference.vars[name]

    # -- the program ---------------------------------------------------------------------------
    def run(self, max_steps: int, require: str | None = None) -> Program:
        first = self.leaf(self.shape(), "f")
        if self.d.boolean(0.3):  # another dtype: promotion, indexing by values
            self.leaf(self._variant(first.shape, grow=True), self.d.choice(("i", "b", "f64")))
        if require is not None:  # that op first (a few tries: some need a suitable pool)
            for _ in range(20):
                if self._try(OPS[require]):
                    break
        wanted = self.d.integer(1, max_steps)
        families = sorted(WEIGHTS)
        for _ in range(wanted * 10):
            if len(self.program.steps) >= wanted:
                break
            family = self._weighted(families)
            ops = [op for op in OPS.values() if op.family == family]
            self._try(self.d.choice(ops))
        return self.program

    def _try(self, op) -> bool:
        mark = len(self.program.lines)
        names = set(self.reference.vars)
        try:
            drawn = op.draw(self)
            if drawn is None:
                raise Invalid("nothing in the pool fits")
            operands, params = drawn
            args = tuple(V(o.name) if isinstance(o, Var) else o for o in operands)
            step = Step(op.name, args, params)
            self.reference.apply(step)
        except Invalid:
            del self.program.lines[mark:]
            for name in set(self.reference.vars) - names:
                del self.reference.vars[name]
            return False
        # NOTE: a rolled-back clone or view never froze anything: those ops keep nothing
        self.program.lines.append(step)
        return True

    def _weighted(self, families):
        total = sum(WEIGHTS[f] for f in families)
        point = self.d.integer(0, total - 1)
        for family in families:
            point -= WEIGHTS[family]
            if point < 0:
                return family
        return families[-1]

    def _variant(self, shape: tuple, grow: bool) -> tuple:
        """A shape that broadcasts with ``shape``: leading dims dropped (or, with ``grow``,
        added), some sizes set to 1."""
        sizes = list(shape[self.d.integer(0, len(shape)):] if self.d.boolean(0.4) else shape)
        sizes = [1 if self.d.boolean(0.3) else s for s in sizes]
        if grow and self.d.boolean(0.2) and len(sizes) < 4:
            sizes.insert(0, self.d.choice((1, 2)))
        return tuple(sizes)

    def _fallback_leaf(self, shape, fallback, grad=True) -> Var:
        if fallback == "bool":
            return self.leaf(shape, "b")
        if fallback[0] == "code":
            return self.leaf(shape, "f" if fallback[1] == "f32" else fallback[1], grad=grad)
        if fallback[0] == "apart":
            return self.leaf(shape, "f", apart=fallback[1], grad=grad)
        return self.leaf(shape, "f", low=fallback[0], high=fallback[1], grad=grad)

    def _values(self, shape, code, low, high, apart):
        random = numpy.random.default_rng(self.d.integer(0, 2**31 - 1))
        if code == "b":
            return random.random(shape) < 0.5
        if code == "i":
            return random.integers(-3, 4, shape)
        if low is not None:
            values = random.uniform(low, high, shape)
        elif self.d.boolean(0.2):  # a grid: exact zeros and ties, where kinks are decided
            values = random.integers(-8, 9, shape) / 4
        else:
            values = random.standard_normal(shape) * self.d.choice((0.5, 1.0, 2.0))
        if apart is not None:
            values = numpy.sign(values + (values == 0)) * (apart + numpy.abs(values))
        return values.astype(numpy.float32).astype(numpy.float64)


def _broadcast(a: tuple, b: tuple):
    try:
        return numpy.broadcast_shapes(a, b)
    except ValueError:
        return None


def generate(drawer: Drawer, max_steps: int = 6, require: str | None = None) -> Program:
    """A random program of 1 to ``max_steps`` steps, the first one ``require`` if given."""
    return Generator(drawer).run(max_steps, require)


# ---- running a program on a library (seqlib or torch) ----------------------------------------
class Lib:
    """What an op's call sees: the library, its functional namespace, its dtypes."""

    def __init__(self, module, functional, float_dtype: str):
        self.lib, self.F = module, functional
        self.float_dtype = float_dtype

    def dtype(self, code: str):
        return getattr(self.lib, dtype_name(code, self.float_dtype))

    def tensor(self, values, code: str, requires_grad: bool = False):
        return self.lib.tensor(values, dtype=self.dtype(code), requires_grad=requires_grad)

    def constant(self, spec: tuple):
        """An index constant (see fuzz_ops.constant): a tensor, or a list for kind "l"."""
        array = constant(spec)
        if spec[0] == "l":
            return array.tolist()
        return self.tensor(array, "b" if spec[0] == "m" else "i")

    def index(self, spec: tuple):
        def part(p):
            if p == "...":
                return Ellipsis
            if isinstance(p, tuple):
                return slice(*p[1:]) if p[0] == "s" else self.constant(p)
            return p
        return tuple(part(p) for p in spec)


def execute(program: Program, L: Lib, given: dict | None = None, trace: list | None = None
            ) -> dict:
    """Run ``program`` on ``L``'s library: name -> tensor. ``given`` supplies some leaves;
    ``trace`` receives each line before it runs (the last one is where an error arose)."""
    env = {}
    for line in program.lines:
        if trace is not None:
            trace.append(line)
        if isinstance(line, Leaf):
            if given and line.name in given:
                env[line.name] = given[line.name]
            else:
                env[line.name] = L.tensor(line.array(), line.code,
                                          requires_grad=line.grad and line.code in FLOATS)
            continue
        op = OPS[line.op]
        operands = [env[a.name] if isinstance(a, V) else a for a in line.args]
        if op.raises:
            _refuse(op, L, operands, line)
            continue
        result = op.call(L, *operands, **line.params)
        if op.inplace:
            continue
        results = tuple(result) if isinstance(result, (tuple, list)) else (result,)
        if len(results) != len(line.outs):
            raise AssertionError(f"{line.op} returned {len(results)} results, the reference "
                                 f"{len(line.outs)}")
        env.update(zip(line.outs, results))
    return env


class NotRefused(AssertionError):
    """A call PyTorch refuses ran without an error."""


def _refuse(op, L, operands, line) -> None:
    if not L.lib.is_grad_enabled():
        return  # gradcheck's evaluations run without grad, where a leaf may be written
    try:
        op.call(L, *operands, **line.params)
    except (RuntimeError, IndexError, ValueError, TypeError):
        return
    raise NotRefused(f"`{line}` should raise, as in PyTorch")


def loss_weights(outputs: dict) -> dict:
    """Fixed random weights per float output: the loss is sum_k <w_k, output_k>."""
    return {name: numpy.random.default_rng(k).standard_normal(array.shape)
            for k, (name, (array, code)) in enumerate(sorted(outputs.items()))
            if code in FLOATS}


def gradients(program: Program, L: Lib, weights: dict, env: dict | None = None) -> dict:
    """Gradients of sum_k <w_k, output_k> with respect to the leaves that require grad."""
    env = execute(program, L) if env is None else env
    total = None
    for name, w in weights.items():
        tensor = env[name]
        if not tensor.requires_grad:
            continue
        term = (tensor * L.lib.tensor(w, dtype=tensor.dtype)).sum()
        total = term if total is None else total + term
    leaves = [line for line in program.leaves if line.grad and line.code in FLOATS]
    if total is not None:
        total.backward()
    return {line.name: numpy.zeros(line.shape) if env[line.name].grad is None
            else _numpy(env[line.name].grad) for line in leaves}


def _numpy(tensor):
    if hasattr(tensor, "detach"):
        tensor = tensor.detach()
    if hasattr(tensor, "cpu"):
        tensor = tensor.cpu()
    return numpy.asarray(tensor.numpy(), dtype=numpy.float64)
