"""The differential fuzzer's op table: one entry per op, in one place.

Each ``Op`` says how to draw its operands and parameters from a program's pool of tensors
(``draw``), what it computes as a float64 NumPy reference (``reference``), and how to call it
(``call``): one call serves seqlib and torch alike, because seqlib spells its API as PyTorch
does; ``L`` is ``fuzz_programs.Lib``, which holds the library (``L.lib``), its functional
namespace (``L.F``) and the conversion of index constants (``L.index``, ``L.constant``). The
other fields describe PyTorch's semantics the generator needs: the result's dtype, whether
the result is a view of its first operand, what torch's backward keeps (no in-place write may
touch it afterwards), where the op is non-smooth (kinks) or discontinuous (jumps), and calls
PyTorch refuses (family "refused": the library must raise too).

The families, in order below: pointwise, binary (broadcasting), reduce (and sorting), shape
(views, conversions, cat/stack/split), index (indexing, gather/scatter, pad, embedding),
matmul (matmul, bmm, einsum, linear), softmax, loss (and layer_norm), inplace (on
non-leaves, through views), refused. WEIGHTS at the bottom says how often each is drawn.

Dtypes are codes: ``"b"`` bool, ``"i"`` int64, ``"f"`` the float dtype of the run (float64
or float32), ``"f32"`` float32 in either run (the default float dtype: what an int tensor
divided by an int tensor gives) and ``"f64"`` float64 in either run (so a float32 run mixes
float dtypes). Ordered b < i < f32 <= f <= f64, promotion takes the larger in both runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy

INF = math.inf


@dataclass(frozen=True)
class Op:
    """One op: how to draw it, its NumPy reference, its call, and PyTorch's semantics."""

    name: str
    family: str
    draw: Callable  # (gen) -> (operands, params), or None when nothing in the pool fits
    reference: Callable  # (*arrays, **params) -> NumPy result (a view for effect "view")
    call: Callable  # (L, *tensors, **params) -> the result on seqlib or torch
    dtype: Callable  # (*operands, **params) -> dtype code, or a tuple of codes
    effect: str = "new"  # "new", "view" (of operand 0), "copy?" (view or copy: undecided)
    saves: str = "in+out"  # what torch's backward keeps: "", "in", "out" or "in+out"
    kink: Callable | None = None  # (*arrays, **params) -> distance from a non-smooth point
    jump: Callable | None = None  # (*arrays, **params) -> distance from a discontinuity
    differentiable: bool = True
    inplace: bool = False  # writes operand 0 (the target), returns nothing new
    draw_params: Callable | None = None  # (gen, tensor) -> params, for ops of one tensor
    raises: bool = False  # PyTorch refuses this call: the library must raise, change nothing
    cuts: Callable | None = None  # (*arrays, **params) -> True where autograd's gradient
    # differs from the function's derivative by design (detach, embedding's padding_idx)
    unspecified: Callable | None = None  # (*arrays, **params) -> True where PyTorch leaves
    # the result unspecified (topk's order among ties): seqlib's documented choice is checked


# ---- dtypes: PyTorch's promotion (c10 ScalarType promote_types + result_type) -------------
ORDER = ("b", "i", "f32", "f", "f64")
FLOATS = ("f32", "f", "f64")


def dtype_name(code: str, float_dtype: str) -> str:
    """The dtype a code stands for in a run whose float dtype is ``float_dtype``."""
    return {"b": "bool", "i": "int64", "f32": "float32", "f": float_dtype, "f64": "float64"}[code]


def code_of(operand) -> str:
    """The dtype code of a pool variable or a Python scalar (a float scalar is a default
    float; an int scalar an int64; a bool a bool)."""
    if isinstance(operand, bool):
        return "b"
    if isinstance(operand, int):
        return "i"
    if isinstance(operand, float):
        return "f32"
    return operand.code


def promote(a: str, b: str) -> str:
    return a if ORDER.index(a) >= ORDER.index(b) else b


def category(code: str) -> int:
    return {"b": 0, "i": 1}.get(code, 2)


def _combine(higher, lower):
    """c10's combine_categories: a more dimensioned class wins unless the other is of a higher
    category (bool < integer < floating)."""
    if higher is None:
        return lower
    if lower is None or category(higher) == 2:
        return higher
    if higher == "b" or category(lower) == 2:
        return promote(higher, lower)
    return higher


def result_type(*operands) -> str:
    """``torch.result_type`` of pool variables (with dimensions or 0-d) and Python scalars."""
    classes = {"dim": None, "0d": None, "scalar": None}
    for operand in operands:
        if isinstance(operand, (bool, int, float)):
            kind = "scalar"
        else:
            kind = "dim" if operand.ndim else "0d"
        code = code_of(operand)
        classes[kind] = code if classes[kind] is None else promote(classes[kind], code)
    return _combine(_combine(classes["dim"], classes["0d"]), classes["scalar"])


def same(x, *rest, **params) -> str:
    return x.code


def floating(x, *rest, **params) -> str:
    """Float ops keep a float dtype and give the default float dtype for ints and bools."""
    return x.code if x.code in FLOATS else "f32"


def promoted(*operands, **params) -> str:
    return result_type(*operands)


def boolean(*operands, **params) -> str:
    return "b"


def int64(*operands, **params) -> str:
    return "i"


def summed(x, *rest, **params) -> str:
    """sum, prod, cumsum: bools and ints accumulate in int64."""
    return x.code if x.code in FLOATS else "i"


# ---- predicates and small helpers ------------------------------------------------------------
def is_float(var) -> bool:
    return var.code == "f"


def above(low: float):
    return lambda var: is_float(var) and var.size and var.array.min() > low


def below(high: float):
    return lambda var: is_float(var) and var.size and var.array.max() < high


def apart_from_zero(gap: float):
    return lambda var: is_float(var) and var.size and numpy.abs(var.array).min() > gap


def no_nan(var) -> bool:
    """sign(NaN) is NaN in seqlib (NumPy's) and 0 in PyTorch's CPU kernel, and so are the
    gradients of abs and l1_loss there: a deliberate difference, so NaN is not drawn for
    them."""
    return not numpy.isnan(var.array).any() if var.code in FLOATS else True


def distance(x, points) -> float:
    """How close any element of ``x`` comes to any of ``points``."""
    x = numpy.asarray(x, dtype=numpy.float64)
    if x.size == 0:
        return INF
    return min(float(numpy.abs(x - p).min()) for p in points)


def to_integer(x) -> float:
    x = numpy.asarray(x, dtype=numpy.float64)
    return float(numpy.abs(x - numpy.round(x)).min()) if x.size else INF


def to_half(x) -> float:
    x = numpy.asarray(x, dtype=numpy.float64)
    return float(numpy.abs(x - numpy.floor(x) - 0.5).min()) if x.size else INF


def axes(ndim: int, dim) -> tuple:
    """PyTorch's ``dim`` (None, an int or a tuple) as NumPy axes; a 0-d tensor has none."""
    if ndim == 0:
        return ()
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return tuple(sorted(d % ndim for d in dims))


def gap(x, axis_tuple, largest=True) -> float:
    """The smallest distance between the extreme and the runner-up in each reduced group: at 0
    the maximum is tied, where max and its gradient are not smooth."""
    x = numpy.asarray(x, dtype=numpy.float64)
    if x.ndim == 0 or x.size == 0:
        return INF
    kept = [d for d in range(x.ndim) if d not in axis_tuple]
    groups = numpy.transpose(x, kept + list(axis_tuple)).reshape(
        int(numpy.prod([x.shape[d] for d in kept])), -1)
    if groups.shape[1] < 2:
        return INF
    ordered = numpy.sort(groups, axis=1)
    if largest:
        return float((ordered[:, -1] - ordered[:, -2]).min())
    return float((ordered[:, 1] - ordered[:, 0]).min())


def quiet():
    return numpy.errstate(all="ignore")


def method_or_function(name: str):
    """A call as ``lib.name(x, ...)`` or ``x.name(...)``, chosen by the ``style`` parameter."""
    def call(L, x, *args, style="fn", **params):
        if style == "method":
            return getattr(x, name)(*args, **params)
        return getattr(L.lib, name)(x, *args, **params)
    return call


def styles(gen, *choices) -> str:
    return gen.d.choice(choices or ("fn", "method"))


# ---- pointwise unary -------------------------------------------------------------------------
def _erf(x):
    return numpy.vectorize(math.erf, otypes=[numpy.float64])(x) if x.size else x * 1.0


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1 + numpy.tanh(inner))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _unary(name, reference, *, pool=is_float, fallback=None, kink=None, jump=None,
           dtype=floating, call=None, saves="in", functional=False, params=None,
           differentiable=True):
    """A pointwise op of one tensor; ``pool`` says which variables it may take (its domain),
    ``fallback`` the value range of a fresh leaf when none fits."""
    def draw(gen):
        x = gen.pick(pool, fallback=fallback)
        if x is None:
            return None
        drawn = params(gen) if params else {}
        if call is None and not functional:
            drawn["style"] = styles(gen)
        return (x,), drawn

    if call is None:
        call = ((lambda L, x, **p: getattr(L.F, name)(x, **p)) if functional
                else method_or_function(name))
    def ref(x, style=None, **p):
        return reference(x, **p)

    def point(measure):
        return None if measure is None else (lambda x, style=None, **p: measure(x, **p))

    return Op(name, "pointwise", draw, ref, call, dtype, saves=saves, kink=point(kink),
              jump=point(jump), differentiable=differentiable)


def _zero_kink(x, **params):
    return distance(x, (0.0,))


def _clamp_params(gen):
    low = gen.d.choice((None, -1.0, -0.5, 0.0))
    high = gen.d.choice((None, 0.5, 1.0, 2.0) if low is not None else (0.5, 1.0, 2.0))
    return {"min": low, "max": high}


def _clamp_reference(x, min=None, max=None):  # noqa: A002 - PyTorch's names
    if min is not None:
        x = numpy.maximum(x, min)
    if max is not None:
        x = numpy.minimum(x, max)
    return x


def _clamp_kink(x, min=None, max=None):  # noqa: A002
    return distance(x, [b for b in (min, max) if b is not None])


# exponent -> what the base needs: nothing, values above a bound, or values apart from 0
EXPONENTS = ((2, None), (3, None), (0, None), (2.0, None), (0.5, 0.05), (1.5, 0.05),
             (-1, "apart"), (-2, "apart"))


def _pow_draw(gen):
    exponent, need = gen.d.choice(EXPONENTS)
    if need is None:
        pool = (lambda v: is_float(v) or v.code == "i") if isinstance(exponent, int) \
            and exponent > 0 else is_float
        x = gen.pick(pool)
    elif need == "apart":
        x = gen.pick(apart_from_zero(0.25), fallback=("apart", 0.25))
    else:
        x = gen.pick(above(need), fallback=(need + 0.05, 3.0))
    if x is None:
        return None
    return (x,), {"exponent": exponent, "style": styles(gen, "op", "fn", "method")}


def _pow_call(L, x, exponent, style):
    if style == "op":
        return x ** exponent
    if style == "method":
        return x.pow(exponent)
    return L.lib.pow(x, exponent)


def _rpow_draw(gen):
    x = gen.pick(below(5.0), fallback=(-2.0, 2.0))
    return None if x is None else ((gen.d.choice((2.0, 0.5, 3.0)), x), {})


UNARY = [
    _unary("neg", numpy.negative, pool=lambda v: v.code in ("f", "i"), dtype=same, saves=""),
    _unary("abs", numpy.abs, pool=lambda v: v.code in ("f", "i") and no_nan(v), dtype=same,
           kink=_zero_kink),
    _unary("exp", numpy.exp, pool=below(5.0), fallback=(-2.0, 2.0), saves="out"),
    _unary("log", numpy.log, pool=above(0.05), fallback=(0.1, 3.0)),
    _unary("log1p", numpy.log1p, pool=above(-0.9), fallback=(-0.5, 3.0)),
    _unary("sqrt", numpy.sqrt, pool=above(0.05), fallback=(0.1, 3.0), saves="out"),
    _unary("rsqrt", lambda x: 1 / numpy.sqrt(x), pool=above(0.05), fallback=(0.1, 3.0),
           saves="out"),
    _unary("sin", numpy.sin),
    _unary("cos", numpy.cos),
    _unary("tanh", numpy.tanh, saves="out"),
    _unary("sigmoid", lambda x: 1 / (1 + numpy.exp(-x)), saves="out"),
    _unary("erf", _erf),
    _unary("relu", lambda x: numpy.maximum(x, 0), kink=_zero_kink, dtype=same, saves="out",
           call=lambda L, x: x.relu()),  # no torch.relu in seqlib: a deliberate omission
    _unary("sign", numpy.sign, pool=lambda v: v.code in ("f", "i") and no_nan(v),
           jump=_zero_kink, dtype=same, saves=""),
    _unary("floor", numpy.floor, jump=lambda x: to_integer(x), dtype=same, saves=""),
    _unary("ceil", numpy.ceil, jump=lambda x: to_integer(x), dtype=same, saves=""),
    _unary("trunc", numpy.trunc, jump=lambda x: to_integer(x), dtype=same, saves=""),
    _unary("round", numpy.round, jump=lambda x: to_half(x), dtype=same, saves=""),
    _unary("clamp", _clamp_reference, kink=_clamp_kink, dtype=same, params=_clamp_params),
    _unary("gelu", _gelu, functional=True,
           params=lambda gen: {"approximate": gen.d.choice(("none", "tanh"))}),
    _unary("silu", lambda x: x / (1 + numpy.exp(-x)), functional=True),
    _unary("elu", lambda x, alpha=1.0: numpy.where(x > 0, x, alpha * (numpy.exp(x) - 1)),
           functional=True, kink=lambda x, alpha=1.0: INF if alpha == 1.0 else distance(x, (0,)),
           params=lambda gen: {"alpha": gen.d.choice((1.0, 0.5))}),
    _unary("leaky_relu", lambda x, negative_slope=0.01: numpy.where(x > 0, x, negative_slope * x),
           functional=True, kink=lambda x, negative_slope=0.01: distance(x, (0,)),
           params=lambda gen: {"negative_slope": gen.d.choice((0.01, 0.2))}),
    _unary("F_sigmoid", lambda x: 1 / (1 + numpy.exp(-x)), saves="out",
           call=lambda L, x: L.F.sigmoid(x)),
    _unary("F_relu", lambda x: numpy.maximum(x, 0), kink=_zero_kink, dtype=same, saves="out",
           call=lambda L, x: L.F.relu(x)),
    Op("pow", "pointwise", _pow_draw, lambda x, exponent, style: numpy.power(
        x.astype(numpy.float64) if isinstance(exponent, float) or exponent < 0 else x,
        exponent), _pow_call, lambda x, exponent, style: result_type(x, exponent),
       saves="in"),
    Op("rpow", "pointwise", _rpow_draw, lambda base, x: numpy.power(base, x),
       lambda L, base, x: base ** x, lambda base, x: result_type(base, x)),
]


# ---- pointwise binary, with broadcasting -----------------------------------------------------
def _arith_call(name, symbol):
    def call(L, a, b, style="op", **params):
        if style == "op":
            return symbol(a, b)
        if style == "method":
            return getattr(a, name)(b, **params)
        return getattr(L.lib, name)(a, b, **params)
    return call


def _binary(name, reference, symbol, *, left=None, left_fallback=None, right=None, fallback=None,
            dtype=promoted, kink=None, jump=None, saves="in", scalars=(0.5, -1.5, 2, 3.0),
            params=None, styles_=("op", "fn", "method"), call=None, differentiable=True,
            codes=("f", "i", "f64")):
    """``a <op> b`` with broadcasting; an operand may be a Python scalar (then only the
    operator form: ``torch.add(2, x)`` is not an overload). ``codes``: the dtypes it takes
    (a fresh partner of another dtype than the first operand's tests promotion)."""
    left = left or (lambda v: v.code in codes)

    def draw(gen):
        a = gen.pick(left, fallback=left_fallback)
        if a is None:
            return None
        if scalars and gen.d.boolean(0.25):
            b = gen.d.choice(scalars)
        else:
            code = a.code if gen.d.boolean(0.7) else gen.d.choice(codes)
            b = gen.partner(a, right or left, fallback=fallback or ("code", code))
        if b is None:
            return None
        drawn = params(gen) if params else {}
        style = gen.d.choice(styles_)
        if drawn and style == "op":  # an operator takes no keyword arguments
            style = "fn"
        if isinstance(b, (int, float)):
            if not drawn and gen.d.boolean(0.4):
                return (b, a), {"style": "op"}
            style = "method" if drawn else "op"
        return (a, b), dict(drawn, style=style)

    def point(measure):
        return None if measure is None else (lambda a, b, style, **p: measure(a, b, **p))

    return Op(name, "binary", draw, lambda a, b, style, **p: reference(a, b, **p),
              call or _arith_call(name, symbol), dtype, saves=saves, kink=point(kink),
              jump=point(jump), differentiable=differentiable)


def _small(array) -> bool:
    return numpy.abs(array).max(initial=0) < 2.5


def _not_bool_minus(a, b, **params):
    if "b" in (code_of(a), code_of(b)):
        raise ValueError("torch refuses subtraction with a bool tensor")
    return result_type(a, b)


def _true_division(a, b, **params):
    code = result_type(a, b)
    return code if code in FLOATS else "f32"


def _apart(a, b, **params):
    return distance(numpy.asarray(a, dtype=numpy.float64) - b, (0.0,))


def _quotient_jump(a, b, rounding_mode=None):
    if rounding_mode is None:
        return INF
    return to_integer(numpy.asarray(a, dtype=numpy.float64) / b)


def _divide(a, b, rounding_mode=None):
    with quiet():
        if rounding_mode is None:
            return numpy.true_divide(a, b)
        if rounding_mode == "floor":
            return numpy.floor_divide(a, b) if numpy.asarray(a).dtype.kind == "i" and \
                numpy.asarray(b).dtype.kind == "i" else numpy.floor(numpy.true_divide(a, b))
        return numpy.trunc(numpy.true_divide(a, b)).astype(numpy.result_type(a, b))


def _division_dtype(a, b, rounding_mode=None, **params):
    if rounding_mode is None:
        return _true_division(a, b)
    return result_type(a, b)


def _where_draw(gen):
    a = gen.pick(lambda v: v.code in ("f", "i"))
    if a is None:
        return None
    b = gen.partner(a, lambda v: v.code in ("f", "i")) if gen.d.boolean(0.7) else \
        gen.d.choice((0.0, -1.0, 2))
    condition = gen.partner(a, lambda v: v.code == "b", fallback="bool")
    return (condition, a, b), {}


def _masked_fill_draw(gen, target=None):
    x = target or gen.pick(lambda v: v.code in ("f", "i"))
    if x is None:
        return None
    mask = gen.fitting(x.shape, lambda v: v.code == "b", fallback="bool")
    if x.code == "f" and gen.d.boolean(0.3):
        value = gen.fitting((), is_float)  # a 0-d tensor value, differentiable
    else:
        value = gen.d.choice((0.0, -1.5, 2.0) if x.code == "f" else (0, 3))
    return (x, mask, value), {"style": styles(gen)}


def _masked_fill(x, mask, value, style="fn"):
    return numpy.where(mask, value, x).astype(x.dtype)


def _masked_fill_call(L, x, mask, value, style="fn"):
    if style == "method":
        return x.masked_fill(mask, value)
    return L.lib.masked_fill(x, mask, value)


def _logical(name, reference, symbol):
    def call(L, a, b, style="op"):
        return symbol(a, b) if style == "op" else getattr(L.lib, name)(a, b)

    def draw(gen):
        a = gen.pick(lambda v: v.code == "b", fallback="bool")
        b = gen.partner(a, lambda v: v.code == "b", fallback="bool")
        return (a, b), {"style": gen.d.choice(("op", "fn"))}
    return Op(name, "binary", draw, lambda a, b, style: reference(a, b), call, boolean,
              saves="", differentiable=False)


def _comparison(name, reference, symbol):
    return _binary(name, reference, symbol, codes=("f", "i", "b", "f64"), dtype=boolean,
                   jump=_apart,
                   saves="", differentiable=False)


DIVISOR = apart_from_zero(0.25)
BINARY = [
    _binary("add", numpy.add, lambda a, b: a + b, saves="", codes=("f", "i", "b", "f64")),
    _binary("sub", numpy.subtract, lambda a, b: a - b, dtype=_not_bool_minus, saves=""),
    _binary("mul", numpy.multiply, lambda a, b: a * b, codes=("f", "i", "b", "f64")),
    _binary("div", _divide, lambda a, b: a / b, right=DIVISOR, fallback=("apart", 0.25),
            dtype=_division_dtype, scalars=(0.5, -2, 4.0), jump=_quotient_jump,
            params=lambda gen: {"rounding_mode": None} if gen.d.boolean(0.75)
            else {"rounding_mode": gen.d.choice(("floor", "trunc"))}),
    _binary("maximum", numpy.maximum, None, kink=_apart, styles_=("fn", "method"),
            scalars=(), call=method_or_function("maximum")),  # no Python scalars in PyTorch
    _binary("minimum", numpy.minimum, None, kink=_apart, styles_=("fn", "method"),
            scalars=(), call=method_or_function("minimum")),
    _binary("pow_tensor", lambda a, b: numpy.power(a, b), lambda a, b: a ** b,
            left=above(0.1), left_fallback=(0.2, 2.0),
            right=lambda v: is_float(v) and _small(v.array),
            fallback=(-1.5, 1.5), scalars=(), styles_=("op",), saves="in+out"),
    _comparison("eq", numpy.equal, lambda a, b: a == b),
    _comparison("ne", numpy.not_equal, lambda a, b: a != b),
    _comparison("lt", numpy.less, lambda a, b: a < b),
    _comparison("le", numpy.less_equal, lambda a, b: a <= b),
    _comparison("gt", numpy.greater, lambda a, b: a > b),
    _comparison("ge", numpy.greater_equal, lambda a, b: a >= b),
    _logical("logical_and", numpy.logical_and, lambda a, b: a & b),
    _logical("logical_or", numpy.logical_or, lambda a, b: a | b),
    Op("where", "binary", _where_draw, lambda c, a, b: numpy.where(c, a, b),
       lambda L, c, a, b: L.lib.where(c, a, b), lambda c, a, b: result_type(a, b), saves="in"),
    Op("masked_fill", "binary", _masked_fill_draw, _masked_fill, _masked_fill_call,
       lambda x, mask, value, style: x.code, saves="in"),
]


# ---- reductions ------------------------------------------------------------------------------
def _reduction(name, reference, *, pool=is_float, dims="many", keepdim=True, dtype=same,
               saves="in+out", kink=None, jump=None, nonempty_groups=False, params=None,
               differentiable=True, call=None):
    """``x.name(dim, keepdim)``: ``dims`` is "many" (None, an int or a tuple), "one" (an int)
    or "one-or-none"; ``nonempty_groups``: PyTorch refuses to reduce a size-0 dimension."""
    def draw(gen):
        x = gen.pick(pool)
        if x is None:
            return None
        drawn = {"dim": gen.dims(x.ndim, dims)}
        if nonempty_groups and any(x.shape[a] == 0 for a in axes(x.ndim, drawn["dim"])):
            return None
        if nonempty_groups and x.size == 0 and drawn["dim"] is None:
            return None
        if drawn["dim"] is None and dims == "one-or-none":
            del drawn["dim"]  # prod, all, any: torch has no dim=None overload
        elif keepdim and gen.d.boolean(0.4):
            drawn["keepdim"] = True
        drawn.update(params(gen) if params else {})
        drawn["style"] = styles(gen)
        return (x,), drawn

    def ref(x, dim=None, keepdim=False, style=None, **p):
        with quiet():
            return reference(x, axes(x.ndim, dim), keepdim, **p)

    def call_(L, x, style, **p):
        if call is not None:
            return call(L, x, style, **p)
        return method_or_function(name)(L, x, style=style, **p)

    def dtype_(x, **p):
        return dtype(x)

    def point(distance_function):
        if distance_function is None:
            return None
        return lambda x, dim=None, keepdim=False, style=None, **p: distance_function(
            x, axes(x.ndim, dim), **p)

    return Op(name, "reduce", draw, ref, call_, dtype_, saves=saves, kink=point(kink),
              jump=point(jump), differentiable=differentiable)


def _np_reduction(function):
    def reference(x, axis_tuple, keepdim):
        return function(x, axis=axis_tuple, keepdims=keepdim)
    return reference


def _var(x, axis_tuple, keepdim, unbiased=None, correction=None):
    ddof = 1 if correction is None and unbiased in (None, True) else (correction or 0)
    n = int(numpy.prod([x.shape[a] for a in axis_tuple])) if axis_tuple else 1
    mean = numpy.mean(x, axis=axis_tuple, keepdims=True) if x.size else x
    squares = numpy.sum((x - mean) ** 2, axis=axis_tuple, keepdims=keepdim)
    return squares / max(n - ddof, 0)


def _variance_params(gen):
    choice = gen.d.choice(("none", "unbiased", "correction"))
    if choice == "unbiased":
        return {"unbiased": gen.d.boolean()}
    if choice == "correction":
        return {"correction": gen.d.choice((0, 1, 2))}
    return {}


def _std_kink(x, axis_tuple, **params):
    """std is not differentiable where a group's variance is 0."""
    if x.size == 0:
        return 0.0
    spread = numpy.std(x, axis=axis_tuple) if axis_tuple else numpy.zeros(x.shape)
    return float(numpy.min(spread))


def _logsumexp(x, axis_tuple, keepdim):
    return numpy.log(numpy.sum(numpy.exp(x), axis=axis_tuple, keepdims=keepdim))


def _norm(x, axis_tuple, keepdim, p=2):
    if p == 1:
        return numpy.sum(numpy.abs(x), axis=axis_tuple, keepdims=keepdim)
    return numpy.sqrt(numpy.sum(x * x, axis=axis_tuple, keepdims=keepdim))


def _norm_kink(x, axis_tuple, p=2):
    if p == 1:
        return distance(x, (0.0,))
    return float(numpy.min(_norm(x, axis_tuple, False), initial=INF))


def _max_gap(largest):
    return lambda x, axis_tuple, **p: gap(x, axis_tuple, largest)


def _max_dim(largest):
    """max/min along one dim: (values, indices), the first extreme's index (PyTorch's docs)."""
    def reference(x, axis_tuple, keepdim):
        if not axis_tuple:  # 0-d
            return x.copy(), numpy.zeros((), numpy.int64)
        (axis,) = axis_tuple
        index = (numpy.argmax if largest else numpy.argmin)(x, axis=axis, keepdims=True)
        values = numpy.take_along_axis(x, index, axis=axis)
        if not keepdim:
            values, index = values.squeeze(axis), index.squeeze(axis)
        return values, index.astype(numpy.int64)
    return reference


def _arg_extreme(largest):
    def reference(x, axis_tuple, keepdim, dim_given):
        function = numpy.argmax if largest else numpy.argmin
        if not dim_given:
            index = numpy.asarray(function(x.reshape(-1)), numpy.int64)
            return index.reshape((1,) * x.ndim) if keepdim else index
        if not axis_tuple:
            return numpy.zeros((), numpy.int64)
        return function(x, axis=axis_tuple[0], keepdims=keepdim).astype(numpy.int64)
    return reference


def _arg_call(name):
    def call(L, x, style, dim=None, keepdim=False):
        arguments = {} if dim is None and not keepdim else {"dim": dim, "keepdim": keepdim}
        if style == "method":
            return getattr(x, name)(**arguments)
        return getattr(L.lib, name)(x, **arguments)
    return call


def _extreme_draw(name, largest):
    """max(x) (the whole tensor, 0-d) or max(x, dim, keepdim) -> (values, indices)."""
    def draw(gen):
        x = gen.pick(lambda v: v.code in ("f", "i") and v.size > 0)
        if x is None:
            return None
        if gen.d.boolean(0.3):
            return (x,), {"style": styles(gen)}
        dim = gen.dims(x.ndim, "one")
        if any(x.shape[a] == 0 for a in axes(x.ndim, dim)):
            return None
        return (x,), {"dim": dim, "keepdim": gen.d.boolean(0.4), "style": styles(gen)}

    def reference(x, dim=None, keepdim=False, style=None):
        if dim is None:
            function = numpy.max if largest else numpy.min
            return numpy.asarray(function(x))
        return _max_dim(largest)(x, axes(x.ndim, dim), keepdim)

    def dtype(x, dim=None, **p):
        return x.code if dim is None else (x.code, "i")

    def kink(x, dim=None, **p):
        return gap(x, axes(x.ndim, dim), largest)

    return Op(name, "reduce", draw, reference, method_or_function(name), dtype, kink=kink,
              jump=lambda x, dim=None, **p: INF if dim is None else kink(x, dim))


def _cumulative(name, function):
    def draw(gen):
        x = gen.pick(lambda v: v.code in ("f", "i", "b"))
        if x is None:
            return None
        return (x,), {"dim": gen.dims(x.ndim, "one"), "style": styles(gen)}

    def reference(x, dim, style):
        result = function(x, axis=dim % x.ndim) if x.ndim else x.copy()
        return result.astype(numpy.int64) if x.dtype.kind in "bi" else result

    return Op(name, "reduce", draw, reference, method_or_function(name), summed,
              saves="" if name == "cumsum" else "in+out")


def _arg_reduction(name, largest):
    def draw(gen):
        x = gen.pick(lambda v: v.code in ("f", "i") and v.size > 0)
        if x is None:
            return None
        dim = gen.dims(x.ndim, "one-or-none")
        if dim is not None and any(x.shape[a] == 0 for a in axes(x.ndim, dim)):
            return None
        return (x,), {"dim": dim, "keepdim": gen.d.boolean(0.3), "style": styles(gen)}

    def reference(x, dim, keepdim, style):
        return _arg_extreme(largest)(x, axes(x.ndim, dim), keepdim, dim is not None)

    return Op(name, "reduce", draw, reference, _arg_call(name), int64, saves="",
              jump=lambda x, dim, keepdim, style: gap(x, axes(x.ndim, dim), largest),
              differentiable=False)


def _softmax(log):
    def reference(x, dim, style):
        if x.ndim == 0:  # x - x: a NaN stays NaN
            return x - x if log else x - x + 1
        if x.size == 0:
            return x.copy()
        shifted = x - numpy.max(x, axis=dim, keepdims=True)
        logp = shifted - numpy.log(numpy.sum(numpy.exp(shifted), axis=dim, keepdims=True))
        return logp if log else numpy.exp(logp)

    name = "log_softmax" if log else "softmax"

    def call(L, x, dim, style):
        if style == "F":
            return getattr(L.F, name)(x, dim=dim)
        if style == "method":
            return getattr(x, name)(dim)
        return getattr(L.lib, name)(x, dim)

    def draw(gen):
        x = gen.pick(is_float)
        if x is None:
            return None
        return (x,), {"dim": gen.dims(x.ndim, "one"), "style": styles(gen, "F", "fn", "method")}

    return Op(name, "softmax", draw, reference, call, same, saves="out")


REDUCE = [
    _reduction("sum", _np_reduction(numpy.sum), pool=lambda v: True, dtype=summed, saves=""),
    _reduction("mean", _np_reduction(numpy.mean), saves=""),
    _reduction("prod", _np_reduction(numpy.prod), pool=lambda v: v.code in ("f", "i"),
               dims="one-or-none", dtype=summed),
    _reduction("amax", _np_reduction(numpy.amax), pool=lambda v: v.code in ("f", "i"),
               nonempty_groups=True, kink=_max_gap(True)),
    _reduction("amin", _np_reduction(numpy.amin), pool=lambda v: v.code in ("f", "i"),
               nonempty_groups=True, kink=_max_gap(False)),
    _extreme_draw("max", True),
    _extreme_draw("min", False),
    _arg_reduction("argmax", True),
    _arg_reduction("argmin", False),
    _reduction("var", _var, params=_variance_params),
    _reduction("std", lambda x, a, k, **p: numpy.sqrt(_var(x, a, k, **p)), params=_variance_params,
               kink=_std_kink),
    _reduction("logsumexp", _logsumexp, dims="some"),
    _reduction("norm", _norm, params=lambda gen: {"p": gen.d.choice((1, 2))}, kink=_norm_kink),
    _reduction("all", _np_reduction(numpy.all), pool=lambda v: True, dims="one-or-none",
               dtype=boolean, saves="", differentiable=False),
    _reduction("any", _np_reduction(numpy.any), pool=lambda v: True, dims="one-or-none",
               dtype=boolean, saves="", differentiable=False),
    _cumulative("cumsum", numpy.cumsum),
    _cumulative("cumprod", numpy.cumprod),
    _softmax(False),
    _softmax(True),
]


# ---- sorting ---------------------------------------------------------------------------------
def _stable_order(x, axis, descending):
    """Indices that sort ``x`` along ``axis``, ties in their original order (PyTorch's
    stable sort; seqlib's topk takes the lower index first too)."""
    return numpy.argsort(-x if descending else x, axis=axis, kind="stable")


def _ties(x, dim) -> float:
    """The smallest gap between two values of one group along ``dim``: at 0 the order of the
    indices is decided by position, and the values' gradient is not smooth."""
    if x.ndim == 0 or x.size == 0 or x.shape[dim] < 2:
        return INF
    ordered = numpy.sort(x, axis=dim)
    return float(numpy.diff(ordered, axis=dim).min())


def _sort_draw(with_k):
    def draw(gen):
        x = gen.pick(lambda v: v.code in ("f", "i"))
        if x is None:
            return None
        dim = gen.dims(x.ndim, "one")
        params = {"dim": dim, "style": styles(gen)}
        if with_k:
            size = x.shape[dim] if x.ndim else 1
            params.update(k=gen.d.integer(0, size), largest=gen.d.boolean())
        else:
            params.update(descending=gen.d.boolean(), stable=True)
        return (x,), params
    return draw


def _sort(x, dim, style, descending=False, stable=True, k=None, largest=True):
    if x.ndim == 0:
        values, order = x.copy(), numpy.zeros((), numpy.int64)
    else:
        order = _stable_order(x, dim % x.ndim, descending if k is None else largest)
        values = numpy.take_along_axis(x, order, dim % x.ndim)
    if k is not None and x.ndim:
        keep = (slice(None),) * (dim % x.ndim) + (slice(0, k),)
        values, order = values[keep], order[keep]
    return values, order.astype(numpy.int64)


def _sort_call(name):
    def call(L, x, style, **params):
        if name == "topk":
            params["sorted"] = True
        if name == "argsort":
            return method_or_function(name)(L, x, style=style, **params)
        return tuple(method_or_function(name)(L, x, style=style, **params))
    return call


def _order_kink(x, dim, style, **params):
    return _ties(x, dim % x.ndim if x.ndim else 0)


SORTING = [
    Op("sort", "reduce", _sort_draw(False), _sort, _sort_call("sort"),
       lambda x, **p: (x.code, "i"), kink=_order_kink, jump=_order_kink),
    Op("argsort", "reduce", _sort_draw(False), lambda x, **p: _sort(x, **p)[1],
       _sort_call("argsort"), int64, saves="", jump=_order_kink, differentiable=False),
    Op("topk", "reduce", _sort_draw(True), _sort, _sort_call("topk"),
       lambda x, **p: (x.code, "i"), kink=_order_kink, jump=_order_kink,
       unspecified=lambda x, dim, style, k, largest: 0 < k and _order_kink(x, dim, style) == 0),
]

# ---- shape ops and views ---------------------------------------------------------------------
def _shape_op(name, draw_params, reference, *, effect="view", call=None, pool=lambda v: True,
              dtype=same, family="shape", saves=""):
    """An op of one tensor whose parameters depend on its shape."""
    def draw(gen):
        x = gen.pick(pool)
        if x is None:
            return None
        drawn = draw_params(gen, x)
        return None if drawn is None else ((x,), drawn)
    return Op(name, family, draw, reference, call or method_or_function(name), dtype,
              effect=effect, saves=saves, draw_params=draw_params)


def _regroup(gen, shape: tuple) -> tuple:
    """Another shape with as many elements: merge neighbours, split one, add or drop 1s."""
    sizes = list(shape)
    for _ in range(gen.d.integer(1, 3)):
        move = gen.d.integer(0, 3)
        if move == 0 and len(sizes) >= 2:
            at = gen.d.integer(0, len(sizes) - 2)
            sizes[at:at + 2] = [sizes[at] * sizes[at + 1]]
        elif move == 1 and sizes:
            at = gen.d.integer(0, len(sizes) - 1)
            factors = [f for f in range(1, sizes[at] + 1) if sizes[at] % f == 0] or [1]
            first = gen.d.choice(factors)
            sizes[at:at + 1] = [first, sizes[at] // first if first else 0]
        elif move == 2 and len(sizes) < 5:
            sizes.insert(gen.d.integer(0, len(sizes)), 1)
        elif 1 in sizes:
            sizes.remove(1)
    if sizes and 0 not in sizes and gen.d.boolean(0.3):
        sizes[gen.d.integer(0, len(sizes) - 1)] = -1
    return tuple(sizes)


def _reshape_call(name):
    def call(L, x, shape, style):
        if style == "args" and shape:  # torch: x.view() with no sizes is an error
            return getattr(x, name)(*shape)
        if style == "fn":
            return getattr(L.lib, name)(x, shape)
        return getattr(x, name)(shape)
    return call


def _view_draw(gen, x, functional=False):
    styles_ = ("args", "tuple", "fn") if functional else ("args", "tuple")  # no torch.view
    return {"shape": _regroup(gen, x.shape), "style": gen.d.choice(styles_)}


def _view_reference(x, shape, style):
    return x.reshape(shape, copy=False)  # raises where a view is impossible, as torch.view


def _flatten_draw(gen, x):
    if x.ndim == 0:
        return {"start_dim": gen.d.choice((0, -1)), "end_dim": -1, "style": styles(gen)}
    start = gen.d.integer(0, x.ndim - 1)
    end = gen.d.integer(start, x.ndim - 1)
    return {"start_dim": start - x.ndim * gen.d.integer(0, 1),
            "end_dim": end - x.ndim * gen.d.integer(0, 1), "style": styles(gen)}


def _flatten(x, start_dim, end_dim, style):
    if x.ndim == 0:
        return x.reshape(1).copy()
    start, end = start_dim % x.ndim, end_dim % x.ndim
    merged = int(numpy.prod(x.shape[start:end + 1]))
    return x.reshape(x.shape[:start] + (merged,) + x.shape[end + 1:]).copy()


def _unflatten_draw(gen, x):
    if x.ndim == 0:
        return None
    dim = gen.dims(x.ndim, "one")
    size = x.shape[dim]
    factors = [f for f in range(1, size + 1) if size % f == 0] or [1]
    first = gen.d.choice(factors)
    sizes = [first, size // first] if size else [gen.d.choice((1, 2)), 0]
    if size and gen.d.boolean(0.3):
        sizes[gen.d.integer(0, 1)] = -1
    return {"dim": dim, "sizes": tuple(sizes), "style": styles(gen)}


def _unflatten(x, dim, sizes, style):
    dim = dim % x.ndim
    return x.reshape(x.shape[:dim] + tuple(sizes) + x.shape[dim + 1:], copy=False)


def _permutation(gen, n: int) -> tuple:
    remaining, order = list(range(n)), []
    while remaining:
        order.append(remaining.pop(gen.d.integer(0, len(remaining) - 1)))
    return tuple(d - n * gen.d.integer(0, 1) for d in order)


def _permute_call(L, x, dims, style):
    if style == "args" and dims:  # torch: x.permute() with no dims is an error
        return x.permute(*dims)
    if style == "fn":
        return L.lib.permute(x, dims)
    return x.permute(dims)


def _transpose_draw(gen, x):
    if x.ndim == 0:
        return None
    return {"dim0": gen.dims(x.ndim, "one"), "dim1": gen.dims(x.ndim, "one"), "style": styles(gen)}


def _movedim_draw(gen, x):
    if x.ndim == 0:
        return None
    if gen.d.boolean(0.6):
        return {"source": gen.dims(x.ndim, "one"), "destination": gen.dims(x.ndim, "one"),
                "style": styles(gen)}
    count = gen.d.integer(1, x.ndim)
    source = _permutation(gen, x.ndim)[:count]
    destination = _permutation(gen, x.ndim)[:count]
    return {"source": source, "destination": destination, "style": styles(gen)}


def _squeeze_draw(gen, x):
    choice = gen.d.integer(0, 2)
    if choice == 0 or x.ndim == 0:
        return {"style": styles(gen)} if choice == 0 else {"dim": gen.dims(0, "one"),
                                                           "style": styles(gen)}
    if choice == 1:
        return {"dim": gen.dims(x.ndim, "one"), "style": styles(gen)}
    return {"dim": tuple(sorted(set(gen.dims(x.ndim, "tuple")))), "style": styles(gen)}


def _squeeze(x, dim=None, style=None):
    if dim is None:
        return numpy.squeeze(x)
    size_one = tuple(a for a in axes(x.ndim, dim) if x.shape[a] == 1)
    return numpy.squeeze(x, size_one) if size_one else x[...]


def _expand_draw(gen, x):
    sizes = [gen.d.choice((1, 2, 3)) for _ in range(gen.d.integer(0, 2))]
    for size in x.shape:
        sizes.append(gen.d.choice((1, 2, 3, -1)) if size == 1 else gen.d.choice((size, -1)))
    if sum(1 for _ in sizes) > 5:
        return None
    return {"sizes": tuple(sizes), "style": gen.d.choice(("args", "tuple"))}


def _expand(x, sizes, style):
    lead = len(sizes) - x.ndim
    shape = tuple(s if s != -1 else x.shape[i - lead] for i, s in enumerate(sizes))
    return numpy.broadcast_to(x, shape)


def _expand_call(L, x, sizes, style):
    return x.expand(*sizes) if style == "args" and sizes else x.expand(sizes)


def _dims_tuple(gen, x):
    return tuple(sorted(set(gen.dims(x.ndim, "tuple")), key=lambda d: d % x.ndim))


def _flip_draw(gen, x):
    if x.ndim == 0:
        return None
    return {"dims": _dims_tuple(gen, x), "style": gen.d.choice(("args", "tuple", "fn"))}


def _flip_call(L, x, dims, style):
    if style == "args":
        return x.flip(*dims)
    if style == "fn":
        return L.lib.flip(x, dims)
    return x.flip(dims)


def _roll_draw(gen, x):
    if x.ndim == 0:
        return None
    if gen.d.boolean(0.3):
        return {"shifts": gen.d.integer(-3, 3), "dims": None, "style": styles(gen)}
    dims = _dims_tuple(gen, x)
    shifts = tuple(gen.d.integer(-3, 3) for _ in dims)
    if len(dims) == 1 and gen.d.boolean(0.5):
        return {"shifts": shifts[0], "dims": dims[0], "style": styles(gen)}
    return {"shifts": shifts, "dims": dims, "style": styles(gen)}


def _roll(x, shifts, dims, style):
    if dims is None:
        return numpy.roll(x.reshape(-1), shifts).reshape(x.shape)
    return numpy.roll(x, shifts, axis=dims)


def _repeat_draw(gen, x):
    sizes = tuple(gen.d.choice((1, 2, 3, 0, 1)) for _ in range(x.ndim + gen.d.integer(0, 1)))
    if int(numpy.prod(sizes)) * x.size > 200:
        return None
    return {"sizes": sizes, "style": gen.d.choice(("args", "tuple"))}


def _repeat_call(L, x, sizes, style):
    return x.repeat(*sizes) if style == "args" and sizes else x.repeat(sizes)


def _tri_draw(gen, x):
    if x.ndim < 2:
        return None
    return {"diagonal": gen.d.integer(-2, 2), "style": styles(gen)}


def _split_draw(name):
    def draw(gen, x):
        if x.ndim == 0:
            return None
        dim = gen.dims(x.ndim, "one")
        size = x.shape[dim]
        if name == "unbind":
            return {"dim": dim, "style": styles(gen)} if size <= 4 else None
        if name == "chunk":
            return {"chunks": gen.d.integer(1, 3), "dim": dim, "style": styles(gen)}
        if gen.d.boolean(0.5) or size == 0:
            return {"split_size_or_sections": gen.d.integer(1, 3), "dim": dim,
                    "style": styles(gen)}
        cut = sorted(gen.d.integer(0, size) for _ in range(gen.d.integer(0, 2)))
        sections = [b - a for a, b in zip([0] + cut, cut + [size])]
        return {"split_size_or_sections": sections, "dim": dim, "style": styles(gen)}
    return draw


def _pieces(x, dim, sizes):
    dim = dim % x.ndim
    starts = numpy.cumsum([0] + list(sizes))
    return tuple(x[(slice(None),) * dim + (slice(int(a), int(a) + s),)]
                 for a, s in zip(starts, sizes))


def _split(x, split_size_or_sections, dim, style):
    size = x.shape[dim % x.ndim]
    if isinstance(split_size_or_sections, list):
        return _pieces(x, dim, split_size_or_sections)
    step = split_size_or_sections
    sizes = [min(step, size - a) for a in range(0, size, step)] or [0]
    return _pieces(x, dim, sizes)


def _split_call(L, x, split_size_or_sections, dim, style):
    if style == "method":  # the method's keyword is split_size, the function's is longer
        return x.split(split_size=split_size_or_sections, dim=dim)
    return L.lib.split(x, split_size_or_sections=split_size_or_sections, dim=dim)


def _chunk(x, chunks, dim, style):
    size = x.shape[dim % x.ndim]
    step = -(-size // chunks)
    if size == 0:
        return _pieces(x, dim, [0] * chunks)
    return _pieces(x, dim, [min(step, size - a) for a in range(0, size, step)])


def _unbind(x, dim, style):
    dim = dim % x.ndim
    return tuple(x[(slice(None),) * dim + (i,)] for i in range(x.shape[dim]))


def _pieces_dtype(x, **params):
    return x.code  # each piece; the generator repeats it per output


def _cat_draw(stack):
    def draw(gen):
        x = gen.pick(lambda v: v.ndim >= (0 if stack else 1))
        if x is None:
            return None
        dim = gen.dims(x.ndim + stack, "one")
        tensors = [x]
        for _ in range(gen.d.integer(0, 2)):
            if stack:
                shape = x.shape
            else:
                at = dim % x.ndim
                shape = x.shape[:at] + (gen.d.choice((0, 1, 2, 3)),) + x.shape[at + 1:]
            other = gen.pick(lambda v, s=shape: v.shape == s and v.code == x.code) \
                if gen.d.boolean(0.5) else None
            tensors.append(other or gen.leaf(shape, x.code))
        return tuple(tensors), {"dim": dim}
    return draw


def _cat_dtype(*tensors, dim):
    code = tensors[0].code
    for t in tensors[1:]:
        code = promote(code, t.code)
    return code


CONVERSIONS = {"float32": ("f32", "float"), "float64": ("f64", "double"), "int64": ("i", "long"),
               "bool": ("b", "bool")}  # dtype -> (its code, Tensor's shortcut method)


def _to_draw(gen, x):
    return {"dtype": gen.d.choice(list(CONVERSIONS)), "style": gen.d.choice(("to", "short"))}


def _to(x, dtype, style):
    if dtype == "bool":
        return x != 0
    if dtype == "int64":
        return numpy.trunc(x).astype(numpy.int64)  # toward zero, as a C cast
    return x.astype(numpy.float64)


def _to_draw_operand(gen):
    x = gen.pick(lambda v: v.code in ("f", "i", "b", "f64"))
    return None if x is None else ((x,), _to_draw(gen, x))


def _to_call(L, x, dtype, style):
    if style == "to":
        return x.to(getattr(L.lib, dtype))
    return getattr(x, CONVERSIONS[dtype][1])()


def _to_jump(x, dtype, style):
    if x.dtype.kind != "f":
        return INF
    if dtype == "int64":
        return to_integer(numpy.where(numpy.abs(x) < 0.5, 0.5, x))  # (-1, 1) truncates to 0
    return distance(x, (0.0,)) if dtype == "bool" else INF


SHAPE = [
    _shape_op("view", _view_draw, _view_reference, call=_reshape_call("view"),
              pool=lambda v: v.dense and v.array.flags.c_contiguous),
    _shape_op("reshape", lambda gen, x: _view_draw(gen, x, functional=True),
              lambda x, shape, style: x.reshape(shape).copy(),
              effect="copy?", call=_reshape_call("reshape")),
    _shape_op("flatten", _flatten_draw, _flatten, effect="copy?"),
    _shape_op("unflatten", _unflatten_draw, _unflatten),
    _shape_op("permute", lambda gen, x: {"dims": _permutation(gen, x.ndim),
                                         "style": gen.d.choice(("args", "tuple", "fn"))},
              lambda x, dims, style: x.transpose([d % x.ndim for d in dims]) if x.ndim
              else x[...], call=_permute_call),
    _shape_op("transpose", _transpose_draw,
              lambda x, dim0, dim1, style: numpy.swapaxes(x, dim0, dim1)),
    _shape_op("t", lambda gen, x: {"style": styles(gen)} if x.ndim <= 2 else None,
              lambda x, style: x.T),
    _shape_op("movedim", _movedim_draw,
              lambda x, source, destination, style: numpy.moveaxis(x, source, destination)),
    _shape_op("unsqueeze", lambda gen, x: {"dim": gen.d.integer(-x.ndim - 1, x.ndim),
                                           "style": styles(gen)},
              lambda x, dim, style: numpy.expand_dims(x, dim % (x.ndim + 1))),
    _shape_op("squeeze", _squeeze_draw, _squeeze),
    _shape_op("expand", _expand_draw, _expand, call=_expand_call),
    _shape_op("detach", lambda gen, x: {}, lambda x: x[...], call=lambda L, x: x.detach()),
    Op("to", "shape", lambda gen: _to_draw_operand(gen), _to, _to_call,
       lambda x, dtype, style: CONVERSIONS[dtype][0], effect="copy?", saves="",
       jump=_to_jump),  # the same dtype returns self (PyTorch's docs): a view, or a copy
    _shape_op("clone", lambda gen, x: {}, lambda x: x.copy(), effect="new",
              call=lambda L, x: x.clone()),
    _shape_op("contiguous", lambda gen, x: {}, lambda x: x.copy(), effect="copy?",
              call=lambda L, x: x.contiguous()),
    _shape_op("flip", _flip_draw, lambda x, dims, style: numpy.flip(x, dims).copy(),
              effect="new", call=_flip_call),
    _shape_op("roll", _roll_draw, _roll, effect="new"),
    _shape_op("repeat", _repeat_draw, lambda x, sizes, style: numpy.tile(x, sizes),
              effect="new", call=_repeat_call),
    _shape_op("tril", _tri_draw, lambda x, diagonal, style: numpy.tril(x, diagonal),
              effect="new"),
    _shape_op("triu", _tri_draw, lambda x, diagonal, style: numpy.triu(x, diagonal),
              effect="new"),
    _shape_op("split", _split_draw("split"), _split, dtype=_pieces_dtype, effect="views",
              call=_split_call),
    _shape_op("chunk", _split_draw("chunk"), _chunk, dtype=_pieces_dtype, effect="views"),
    _shape_op("unbind", _split_draw("unbind"), _unbind, dtype=_pieces_dtype, effect="views"),
    Op("cat", "shape", _cat_draw(False),
       lambda *ts, dim: numpy.concatenate(ts, axis=dim % ts[0].ndim),
       lambda L, *ts, dim: L.lib.cat(list(ts), dim=dim), _cat_dtype, saves=""),
    Op("stack", "shape", _cat_draw(True),
       lambda *ts, dim: numpy.stack(ts, axis=dim % (ts[0].ndim + 1)),
       lambda L, *ts, dim: L.lib.stack(list(ts), dim=dim), _cat_dtype, saves=""),
]


# ---- indexing --------------------------------------------------------------------------------
# An index is a tuple of parts: an int, ("s", start, stop, step) a slice, None, "..." (the
# Ellipsis), ("i", shape, values) an int64 tensor, ("m", shape, values) a bool mask and
# ("l", shape, values) a Python list of ints. numpy_index and Lib.index make a real index.
def constant(spec: tuple):
    """A ("i" | "m" | "l", shape, flat values) constant as a NumPy array."""
    kind, shape, values = spec
    return numpy.array(values, dtype=bool if kind == "m" else numpy.int64).reshape(shape)


def numpy_index(spec: tuple) -> tuple:
    def part(p):
        if p == "...":
            return Ellipsis
        if isinstance(p, tuple):
            return slice(*p[1:]) if p[0] == "s" else constant(p)
        return p
    return tuple(part(p) for p in spec)


def _slice(gen, size: int) -> tuple:
    def bound():
        return None if gen.d.boolean(0.4) else gen.d.integer(-size - 1, size + 1)
    return ("s", bound(), bound(), gen.d.choice((None, 1, 2, 3)))


def _basic_parts(gen, shape: tuple) -> list:
    parts = []
    for size in shape[:gen.d.integer(0, len(shape))]:
        if size and gen.d.boolean(0.35):
            parts.append(gen.d.integer(-size, size - 1))
        else:
            parts.append(_slice(gen, size))
    return parts


def _basic_index_draw(gen, x):
    parts = _basic_parts(gen, x.shape)
    if gen.d.boolean(0.3):  # an Ellipsis first: the parts then index the last dims
        parts = ["..."] + _basic_parts(gen, x.shape[::-1])[::-1][:x.ndim]
    for _ in range(gen.d.integer(0, 1)):
        parts.insert(gen.d.integer(0, len(parts)), None)
    return {"index": tuple(parts)}


def _getitem(x, index):
    parts = numpy_index(index)
    if Ellipsis not in parts:  # so that NumPy returns a view, never a scalar, as torch does
        parts = parts + (Ellipsis,)
    return x[parts]


def _index_values(gen, size: int, shape: tuple, negative=True, kind="i") -> tuple | None:
    """An index tensor of ``shape`` into a dim of ``size``, as a constant spec."""
    count = int(numpy.prod(shape))
    if size == 0 and count:
        return None
    low = -size if negative else 0
    return (kind, tuple(shape), [gen.d.integer(low, size - 1) for _ in range(count)])


def _advanced_index_draw(gen, x):
    """One or two index tensors (or a list), or a bool mask, among slices."""
    if x.ndim == 0:
        return None
    parts = [_slice(gen, size) for size in x.shape[:gen.d.integer(0, x.ndim - 1)]]
    at = len(parts)
    if gen.d.boolean(0.3):
        count = gen.d.integer(1, x.ndim - at)
        mask = gen.mask(x.shape[at:at + count])
        return {"index": tuple(parts) + (("m", mask.shape, mask.reshape(-1).tolist()),)}
    shape = gen.d.choice(((gen.d.integer(0, 4),), (2, 2), (1, 3)))
    kind = "l" if len(shape) == 1 and gen.d.boolean(0.3) else "i"
    values = _index_values(gen, x.shape[at], shape, kind=kind)
    if values is None:
        return None
    parts.append(values)
    if at + 1 < x.ndim and gen.d.boolean(0.4):
        if gen.d.boolean(0.5):
            parts.append(_slice(gen, x.shape[at + 1]))  # separated: the index dims go first
        later = len(parts)
        if later < x.ndim:
            second = _index_values(gen, x.shape[later], shape[-1:])
            if second is None:
                return None
            parts.append(second)
    return {"index": tuple(parts)}


def _index_call(L, x, index):
    return x[L.index(index)]


def _index_select_draw(gen, x):
    if x.ndim == 0:
        return None
    dim = gen.dims(x.ndim, "one")
    values = _index_values(gen, x.shape[dim], (gen.d.integer(0, 4),), negative=False)
    return None if values is None else {"dim": dim, "index": values, "style": styles(gen)}


def _index_select(x, dim, index, style):
    return numpy.take(x, constant(index), axis=dim % x.ndim)


def _index_select_call(L, x, dim, index, style):
    return method_or_function("index_select")(L, x, dim, L.constant(index), style=style)


def _gather_shape(gen, x, dim):
    return tuple(gen.d.integer(0, 3) if d == dim % x.ndim else gen.d.integer(0, size)
                 for d, size in enumerate(x.shape))


def _gather_draw(gen, x):
    if x.ndim == 0:
        return None
    dim = gen.dims(x.ndim, "one")
    shape = _gather_shape(gen, x, dim)
    values = _index_values(gen, x.shape[dim], shape, negative=False)
    return None if values is None else {"dim": dim, "index": values, "style": styles(gen)}


def _gather(x, dim, index, style):
    index = constant(index)
    positions = list(numpy.indices(index.shape, sparse=True))
    positions[dim % x.ndim] = index
    return x[tuple(positions)]  # out[i][j][k] = x[index[i][j][k]][j][k] for dim 0


def _gather_call(L, x, dim, index, style):
    return method_or_function("gather")(L, x, dim, L.constant(index), style=style)


def _scatter_add_draw(gen):
    x = gen.pick(lambda v: v.code == "f" and v.ndim > 0)
    if x is None:
        return None
    dim = gen.dims(x.ndim, "one")
    shape = _gather_shape(gen, x, dim)
    values = _index_values(gen, x.shape[dim], shape, negative=False)
    if values is None:
        return None
    source = gen.fitting(shape, lambda v: v.code == x.code and v.shape == shape, exact=True)
    return (x, source), {"dim": dim, "index": values, "style": styles(gen)}


def _scatter_add(x, source, dim, index, style):
    out = x.copy()
    index = constant(index)
    dim = dim % x.ndim
    positions = list(numpy.indices(index.shape))
    positions[dim] = index
    numpy.add.at(out, tuple(positions), source[tuple(slice(0, n) for n in index.shape)])
    return out


def _scatter_add_call(L, x, source, dim, index, style):
    return method_or_function("scatter_add")(L, x, dim, L.constant(index), source,
                                             style=style)


def _index_add_draw(gen):
    x = gen.pick(lambda v: v.code == "f" and v.ndim > 0)
    if x is None:
        return None
    dim = gen.dims(x.ndim, "one")
    values = _index_values(gen, x.shape[dim], (gen.d.integer(0, 4),), negative=False)
    if values is None:
        return None
    shape = x.shape[:dim % x.ndim] + values[1] + x.shape[dim % x.ndim + 1:]
    source = gen.fitting(shape, lambda v: v.code == x.code and v.shape == shape, exact=True)
    drawn = {"dim": dim, "index": values, "style": styles(gen)}
    if gen.d.boolean(0.3):
        drawn["alpha"] = gen.d.choice((2.0, -0.5))
    return (x, source), drawn


def _index_add(x, source, dim, index, style, alpha=1):
    out = x.copy()
    moved = numpy.moveaxis(out, dim % x.ndim, 0)
    numpy.add.at(moved, constant(index),
                 numpy.moveaxis(source, dim % x.ndim, 0) * alpha)
    return out


def _index_add_call(L, x, source, dim, index, style, **alpha):
    return method_or_function("index_add")(L, x, dim, L.constant(index), source,
                                           style=style, **alpha)


def _pad_draw(gen, x):
    mode = gen.d.choice(("constant", "constant", "reflect", "replicate", "circular"))
    if mode == "constant":
        count = gen.d.integer(1, min(x.ndim, 3)) if x.ndim else 0
    else:  # these need 1-3 padded dims after one or two leading dims, nothing empty
        if not 2 <= x.ndim <= 5 or x.size == 0:
            return None
        count = gen.d.integer(max(1, x.ndim - 2), min(3, x.ndim - 1))
    widths = []
    for size in reversed(x.shape[x.ndim - count:]):  # PyTorch's order: last dim first
        high = {"constant": 2, "reflect": size - 1, "replicate": 2, "circular": size}[mode]
        low = -size if mode == "constant" else 0
        before = gen.d.integer(low, high)
        after = gen.d.integer(max(low, -size - before) if before < 0 else low, high)
        widths += [before, after]
    params = {"pad": tuple(widths), "mode": mode}
    if mode == "constant" and gen.d.boolean(0.5):
        params["value"] = gen.d.choice((0.5, -1.0))
    return params if widths else None


def _pad(x, pad, mode, value=None):
    pairs = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        pairs[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if mode != "constant":
        return numpy.pad(x, pairs, mode={"reflect": "reflect", "replicate": "edge",
                                         "circular": "wrap"}[mode])
    crop = tuple(slice(max(-a, 0), n - max(-b, 0)) for (a, b), n in zip(pairs, x.shape))
    return numpy.pad(x[crop], [(max(a, 0), max(b, 0)) for a, b in pairs],
                     constant_values=0.0 if value is None else value)


def _embedding_draw(gen):
    weight = gen.pick(lambda v: is_float(v) and v.ndim == 2 and v.shape[0] > 0)
    if weight is None:
        weight = gen.leaf((gen.d.integer(1, 4), gen.d.integer(0, 3)), "f")
    rows = weight.shape[0]
    index = _index_values(gen, rows, gen.d.choice(((gen.d.integer(0, 3),), (2, 2), ())),
                          negative=False)
    params = {"index": index}
    if gen.d.boolean(0.3):
        params["padding_idx"] = gen.d.integer(-rows, rows - 1)
    return (weight,), params


def _padding_row_used(weight, index, padding_idx=None) -> bool:
    return padding_idx is not None and bool(
        (constant(index) == padding_idx % weight.shape[0]).any())


def _one_hot_draw(gen):
    x = gen.pick(lambda v: v.code == "i" and (v.size == 0 or v.array.min() >= 0))
    if x is None:
        x = gen.leaf(gen.shape(), "i", values=None)
        if x.size and x.array.min() < 0:
            return None
    top = int(x.array.max()) + 1 if x.size else 0
    classes = gen.d.choice((-1, top, top + 2)) if x.size else gen.d.integer(1, 3)
    return (x,), {"num_classes": classes}


def _one_hot(x, num_classes):
    classes = int(x.max()) + 1 if num_classes == -1 else num_classes
    return (x[..., None] == numpy.arange(classes)).astype(numpy.int64)


def _repeat_interleave_draw(gen, x):
    if gen.d.boolean(0.3) or x.ndim == 0:
        return {"repeats": gen.d.integer(0, 3), "dim": None, "style": styles(gen)}
    dim = gen.dims(x.ndim, "one")
    if gen.d.boolean(0.5):
        return {"repeats": gen.d.integer(0, 3), "dim": dim, "style": styles(gen)}
    size = x.shape[dim]
    return {"repeats": ("i", (size,), [gen.d.integer(0, 2) for _ in range(size)]), "dim": dim,
            "style": styles(gen)}


def _repeat_interleave(x, repeats, dim, style):
    repeats = constant(repeats) if isinstance(repeats, tuple) else repeats
    if dim is None:
        return numpy.repeat(x.reshape(-1), repeats)
    return numpy.repeat(x, repeats, axis=dim % x.ndim)


def _repeat_interleave_call(L, x, repeats, dim, style):
    repeats = L.constant(repeats) if isinstance(repeats, tuple) else repeats
    return method_or_function("repeat_interleave")(L, x, repeats, dim=dim, style=style)


INDEX = [
    _shape_op("getitem", _basic_index_draw, _getitem, call=_index_call, family="index"),
    _shape_op("index", _advanced_index_draw, lambda x, index: x[numpy_index(index)].copy(),
              effect="new", call=_index_call, family="index"),
    _shape_op("index_select", _index_select_draw, _index_select, effect="new",
              call=_index_select_call, family="index"),
    _shape_op("gather", _gather_draw, _gather, effect="new", call=_gather_call, family="index",
              pool=lambda v: v.code in ("f", "i"), saves="in"),
    Op("scatter_add", "index", _scatter_add_draw, _scatter_add, _scatter_add_call,
       lambda x, source, **p: x.code, saves=""),
    Op("index_add", "index", _index_add_draw, _index_add, _index_add_call,
       lambda x, source, **p: x.code, saves="in"),  # torch keeps source (for expand_as)
    _shape_op("pad", _pad_draw, _pad, effect="new", family="index", saves="in",
              call=lambda L, x, **p: L.F.pad(x, **p), pool=lambda v: v.code == "f"),
    Op("embedding", "index", _embedding_draw,
       lambda weight, index, padding_idx=None: weight[constant(index)],
       lambda L, weight, index, **p: L.F.embedding(L.constant(index), weight, **p), same,
       saves="", cuts=_padding_row_used),
    Op("one_hot", "index", _one_hot_draw, _one_hot,
       lambda L, x, num_classes: L.F.one_hot(x, num_classes), int64, saves="",
       differentiable=False),
    _shape_op("repeat_interleave", _repeat_interleave_draw, _repeat_interleave, effect="new",
              call=_repeat_interleave_call, family="index",
              pool=lambda v: v.code in ("f", "i")),
]


# ---- matmul, einsum, linear ------------------------------------------------------------------
def _matmul_partner_shape(gen, shape: tuple) -> tuple:
    """A right operand for ``x @ other``: the vector, matrix and batched-broadcast cases."""
    k = shape[-1]
    if len(shape) == 1:
        return gen.d.choice(((k,), (k, gen.d.integer(0, 3)),
                             (gen.d.integer(1, 2), k, gen.d.integer(1, 3))))
    m = gen.d.integer(0, 3)
    batch = tuple(gen.d.choice((1, size)) for size in shape[:-2][gen.d.integer(0, 1):])
    if gen.d.boolean(0.2) and len(shape) == 2:
        batch = (gen.d.integer(1, 2),)
    return gen.d.choice(((k,), batch + (k, m)))


def _matmul_draw(gen):
    x = gen.pick(lambda v: v.code == "f" and 1 <= v.ndim <= 4)
    if x is None:
        return None
    shape = _matmul_partner_shape(gen, x.shape)
    other = gen.fitting(shape, lambda v: v.code == "f" and v.shape == shape, exact=True)
    return (x, other), {"style": styles(gen, "op", "fn", "method")}


def _matmul_call(L, a, b, style):
    if style == "op":
        return a @ b
    return method_or_function("matmul")(L, a, b, style=style)


def _bmm_draw(gen):
    x = gen.pick(lambda v: v.code == "f" and v.ndim == 3) or gen.leaf(
        (gen.d.integer(0, 2), gen.d.integer(1, 3), gen.d.integer(0, 3)), "f")
    shape = (x.shape[0], x.shape[2], gen.d.integer(0, 3))
    other = gen.fitting(shape, lambda v: v.code == "f" and v.shape == shape, exact=True)
    return (x, other), {"style": styles(gen)}


EINSUM = {  # equation -> how many dims its first operand has
    "i->": 1, "i,i->": 1, "i,j->ij": 1, "i,i->i": 1,
    "ij->ji": 2, "ij->": 2, "ij->j": 2, "ij,jk->ik": 2, "ij,ij->ij": 2, "ij,j->i": 2,
    "ij,kj->ik": 2, "...j,j->...": 2,  # no "ii->i": seqlib refuses its gradient (deliberate)
    "bij,bjk->bik": 3, "bij->bji": 3, "...ij,...jk->...ik": 3, "bij,jk->bik": 3,
    "bij,bkj->bik": 3,
}


def _einsum_operand_shapes(gen, equation: str, shape: tuple):
    """Shapes of every operand of ``equation`` given the first: letters keep their size."""
    inputs = equation.split("->")[0].split(",")
    sizes = dict(zip(inputs[0].replace("...", "E"), shape))
    ellipsis = shape[:len(shape) - len(inputs[0].replace("...", ""))]
    shapes = [shape]
    for term in inputs[1:]:
        out = []
        if term.startswith("..."):
            out.extend(gen.d.choice((1, s)) for s in ellipsis)  # broadcast the batch
            term = term[3:]
        for letter in term:
            if letter not in sizes:
                sizes[letter] = gen.d.integer(0, 3)
            out.append(sizes[letter])
        shapes.append(tuple(out))
    return shapes


def _einsum_draw(gen):
    equation = gen.d.choice(list(EINSUM))
    ndim = EINSUM[equation]
    first = equation.split("->")[0].split(",")[0]
    x = gen.pick(lambda v: v.code == "f" and (v.ndim == ndim or first.startswith("...")
                                              and v.ndim >= ndim - 1))
    if x is None:
        return None
    shapes = _einsum_operand_shapes(gen, equation, x.shape)
    others = [gen.fitting(s, lambda v, s=s: v.code == "f" and v.shape == s, exact=True)
              for s in shapes[1:]]
    return (x, *others), {"equation": equation}


def _einsum(*operands, equation):
    return numpy.einsum(equation, *operands)


def _linear_draw(gen):
    x = gen.pick(lambda v: v.code == "f" and v.ndim >= 1)
    if x is None:
        return None
    out_features = gen.d.integer(0, 3)
    weight = gen.fitting((out_features, x.shape[-1]), lambda v: False, exact=True)
    if gen.d.boolean(0.3):
        return (x, weight), {}
    return (x, weight, gen.fitting((out_features,), lambda v: False, exact=True)), {}


def _linear(x, weight, bias=None):
    out = x @ weight.T
    return out if bias is None else out + bias


MATMUL = [
    Op("matmul", "matmul", _matmul_draw, lambda a, b, style: numpy.matmul(a, b), _matmul_call,
       promoted, saves="in"),
    Op("bmm", "matmul", _bmm_draw, lambda a, b, style: numpy.matmul(a, b),
       method_or_function("bmm"), promoted, saves="in"),
    Op("einsum", "matmul", _einsum_draw, _einsum,  # torch may return a view ("ij->ji")
       lambda L, *operands, equation: L.lib.einsum(equation, *operands), promoted, saves="in",
       effect="copy?"),
    Op("linear", "matmul", _linear_draw, _linear, lambda L, *operands: L.F.linear(*operands),
       promoted, saves="in"),
]


# ---- losses and normalization ----------------------------------------------------------------
def _class_scores(gen):
    """Class scores shaped (C,), (N, C) or (N, C, d) with C >= 1."""
    x = gen.pick(lambda v: v.code == "f" and 1 <= v.ndim <= 3 and v.shape[v.ndim > 1] > 0)
    if x is None:
        shape = gen.d.choice(((3,), (2, 3), (gen.d.integer(0, 3), 2, 2)))
        x = gen.leaf(shape, "f")
    return x


def _targets(gen, x, ignore_index):
    classes = x.shape[1] if x.ndim > 1 else x.shape[0]
    shape = (x.shape[0],) + x.shape[2:] if x.ndim > 1 else ()
    values = numpy.array([gen.d.integer(0, classes - 1) if gen.d.boolean(0.85) else ignore_index
                          for _ in range(int(numpy.prod(shape)))], dtype=numpy.int64)
    return gen.leaf(shape, "i", values=values.reshape(shape))


def _cross_entropy_draw(name):
    def draw(gen):
        x = _class_scores(gen)
        classes = x.shape[1] if x.ndim > 1 else x.shape[0]
        params = {"reduction": gen.d.choice(("mean", "sum", "none"))}
        if gen.d.boolean(0.3):
            params["ignore_index"] = gen.d.choice((0, -1, 1))
        ignore = params.get("ignore_index", -100)
        soft = name == "cross_entropy" and gen.d.boolean(0.25)
        if soft:
            target = gen.fitting(x.shape, lambda v: v.code == "f" and v.shape == x.shape,
                                 exact=True, low=0.0, high=1.0)
            params.pop("ignore_index", None)
        else:
            target = _targets(gen, x, ignore)
        if name == "cross_entropy" and gen.d.boolean(0.3):
            params["label_smoothing"] = gen.d.choice((0.1, 0.5))
        operands = (x, target)
        if gen.d.boolean(0.3):
            operands += (gen.leaf((classes,), "f", low=0.2, high=2.0, grad=False),)
        return operands, params
    return draw


def _log_softmax_rows(x):
    shifted = x - numpy.max(x, axis=1, keepdims=True)
    return shifted - numpy.log(numpy.sum(numpy.exp(shifted), axis=1, keepdims=True))


def _cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean",
                   label_smoothing=0.0, from_logits=True):
    """PyTorch's cross_entropy/nll_loss: class indices (mean divides by the picked weights)
    or class probabilities (mean divides by the number of rows)."""
    rows = x[None, :] if x.ndim == 1 else numpy.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    classes = rows.shape[1]
    weight = numpy.ones(classes) if weight is None else weight
    logp = _log_softmax_rows(rows) if from_logits and rows.size else rows
    if target.dtype.kind == "f":
        q = target[None, :] if x.ndim == 1 else numpy.moveaxis(target, 1, -1).reshape(-1, classes)
        q = q * (1 - label_smoothing) + label_smoothing / classes
        losses = -(logp * q * weight).sum(axis=1)
        denominator = len(losses)
    else:
        flat = target.reshape(-1)
        valid = flat != ignore_index
        safe = numpy.where(valid, flat, 0)
        picked = weight[safe] * valid
        nll = numpy.where(valid, -logp[numpy.arange(len(flat)), safe] * picked, 0)
        smooth = numpy.where(valid, -(logp * weight).sum(axis=1), 0)  # 0, even from a nan
        losses = (1 - label_smoothing) * nll + label_smoothing / classes * smooth
        denominator = picked.sum()  # the mean divides both terms by the picked weights
    target_shape = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    return _reduce_sum_or_mean(losses, denominator, reduction, target_shape)


def _reduce_sum_or_mean(losses, denominator, reduction, target_shape):
    if reduction == "none":
        return losses.reshape(target_shape)
    with quiet():
        return losses.sum() / (denominator if reduction == "mean" else 1)


def _pairwise_draw(gen, nan=True):
    x = gen.pick(lambda v: is_float(v) and (nan or no_nan(v)))
    if x is None:
        return None
    target = gen.fitting(x.shape, lambda v: is_float(v) and v.shape == x.shape, exact=True)
    if not (nan or no_nan(target)):
        return None
    return (x, target), {"reduction": gen.d.choice(("mean", "sum", "none"))}


def _reduce_loss(losses, reduction):
    if reduction == "none":
        return losses
    with quiet():
        return losses.sum() if reduction == "sum" else numpy.mean(losses)


def _bce_draw(gen):
    x = gen.pick(is_float)
    if x is None:
        return None
    target = gen.fitting(x.shape, lambda v: is_float(v) and v.shape == x.shape, exact=True,
                         low=0.0, high=1.0)
    params = {"reduction": gen.d.choice(("mean", "sum", "none"))}
    if gen.d.boolean(0.3) and x.ndim:
        params["pos_weight"] = gen.leaf(x.shape[-1:], "f", low=0.5, high=2.0, grad=False)
    if gen.d.boolean(0.3):
        params["weight"] = gen.fitting(x.shape, lambda v: False, low=0.5, high=2.0, grad=False)
    operands = (x, target, params.pop("weight", None), params.pop("pos_weight", None))
    return tuple(o for o in operands if o is not None), dict(params, weights=(
        operands[2] is not None, operands[3] is not None))


def _bce(x, target, *extra, reduction="mean", weights=(False, False)):
    extra = list(extra)
    weight = extra.pop(0) if weights[0] else 1.0
    pos_weight = extra.pop(0) if weights[1] else 1.0
    softplus = numpy.log1p(numpy.exp(-numpy.abs(x))) + numpy.maximum(-x, 0)
    losses = ((1 - target) * x + (1 + (pos_weight - 1) * target) * softplus) * weight
    return _reduce_loss(losses, reduction)


def _bce_call(L, x, target, *extra, reduction, weights):
    extra = list(extra)
    weight = extra.pop(0) if weights[0] else None
    pos_weight = extra.pop(0) if weights[1] else None
    return L.F.binary_cross_entropy_with_logits(x, target, weight=weight, reduction=reduction,
                                                pos_weight=pos_weight)


def _layer_norm_draw(gen):
    x = gen.pick(lambda v: is_float(v) and v.ndim >= 1)
    if x is None:
        return None
    count = gen.d.integer(1, min(2, x.ndim))
    shape = x.shape[x.ndim - count:]
    operands = (x,)
    if gen.d.boolean(0.6):
        operands += (gen.fitting(shape, lambda v: False, exact=True),
                     gen.fitting(shape, lambda v: False, exact=True))
    return operands, {"normalized_shape": shape}


def _layer_norm(x, *affine, normalized_shape):
    dims = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    with quiet():
        mean = numpy.mean(x, axis=dims, keepdims=True)
        var = numpy.mean((x - mean) ** 2, axis=dims, keepdims=True)
        out = (x - mean) / numpy.sqrt(var + 1e-5)
    return out * affine[0] + affine[1] if affine else out


LOSS = [
    Op("cross_entropy", "loss", _cross_entropy_draw("cross_entropy"),
       lambda x, target, *weight, **p: _cross_entropy(x, target, *weight, **p),
       lambda L, x, target, *weight, **p: L.F.cross_entropy(x, target, *weight, **p), same),
    Op("nll_loss", "loss", _cross_entropy_draw("nll_loss"),
       lambda x, target, *weight, **p: _cross_entropy(x, target, *weight, **p,
                                                       from_logits=False),
       lambda L, x, target, *weight, **p: L.F.nll_loss(x, target, *weight, **p), same),
    Op("mse_loss", "loss", _pairwise_draw,
       lambda x, t, reduction: _reduce_loss((x - t) ** 2, reduction),
       lambda L, x, t, reduction: L.F.mse_loss(x, t, reduction=reduction), same),
    Op("l1_loss", "loss", lambda gen: _pairwise_draw(gen, nan=False),
       lambda x, t, reduction: _reduce_loss(numpy.abs(x - t), reduction),
       lambda L, x, t, reduction: L.F.l1_loss(x, t, reduction=reduction), same,
       kink=lambda x, t, reduction: distance(x - t, (0.0,))),
    Op("binary_cross_entropy_with_logits", "loss", _bce_draw, _bce, _bce_call, same),
    Op("layer_norm", "loss", _layer_norm_draw, _layer_norm,
       lambda L, x, *affine, normalized_shape: L.F.layer_norm(x, normalized_shape, *affine),
       same),
]


# ---- in-place ops on non-leaves --------------------------------------------------------------
# The reference of an in-place op returns the target's new value; the generator writes it into
# the target's array, and so into every NumPy view of it. `saves` here: "in" keeps the other
# operands (no later write to them), "out" keeps the target.
def _inplace(name, draw_params, reference, call, *, saves="", kink=None, target=is_float):
    def draw(gen):
        x = gen.target(target)
        if x is None:
            return None
        drawn = draw_params(gen, x)
        return None if drawn is None else ((x,) + drawn[0], drawn[1])
    return Op(name, "inplace", draw, reference, call, lambda x, *rest, **p: x.code,
              saves=saves, kink=kink, inplace=True)


def _arith_(name, reference, symbol, *, divisor=False):
    def draw_params(gen, x):
        if gen.d.boolean(0.3):
            other = gen.d.choice((2, 0.5, -1.5))
        elif divisor:
            other = gen.fitting(x.shape, DIVISOR, fallback=("apart", 0.25))
        else:
            other = gen.fitting(x.shape, lambda v: v.code in ("f", "i", "f64"))
        params = {"style": gen.d.choice(("op", "method"))}
        if name in ("add_", "sub_") and params["style"] == "method" and gen.d.boolean(0.3):
            params["alpha"] = gen.d.choice((2, -0.5))
        return (other,), params

    def ref(x, other, style, alpha=1):
        with quiet():
            return reference(x, numpy.multiply(other, alpha))

    def call(L, x, other, style, **alpha):
        if style == "op":
            return symbol(x, other)
        return getattr(x, name)(other, **alpha)

    return _inplace(name, draw_params, ref, call, saves="" if name in ("add_", "sub_") else "in")


def _iadd(x, y):
    x += y
    return x


def _isub(x, y):
    x -= y
    return x


def _imul(x, y):
    x *= y
    return x


def _idiv(x, y):
    x /= y
    return x


def _setitem_draw(gen, x):
    basic = gen.d.boolean(0.5)
    spec = (_basic_index_draw if basic else _advanced_index_draw)(gen, x)
    if spec is None:
        return None
    index = numpy_index(spec["index"])
    positions = numpy.arange(x.size).reshape(x.shape)[index if basic else index]
    if numpy.unique(positions).size != positions.size:
        return None  # torch leaves the order of writes to one element undefined
    if gen.d.boolean(0.3):
        return (gen.d.choice((0.0, -2.5, 1)),), spec
    return (gen.fitting(positions.shape, is_float),), spec


def _setitem(x, value, index):
    out = x.copy()
    out[numpy_index(index)] = value
    return out


def _setitem_call(L, x, value, index):
    x[L.index(index)] = value


def _exp_target(var):
    return is_float(var) and (var.size == 0 or var.array.max() < 4)


def _copy_draw(gen, x):
    return (gen.fitting(x.shape, lambda v: v.code in ("f", "i", "b")),), {}


def _fill_draw(gen, x):
    if gen.d.boolean(0.3):
        return (gen.fitting((), is_float),), {}
    return (gen.d.choice((0.0, 1.5, -2)),), {}


def _index_add_inplace_draw(gen, x):
    if x.ndim == 0:
        return None
    dim = gen.dims(x.ndim, "one")
    values = _index_values(gen, x.shape[dim], (gen.d.integer(0, 4),), negative=False)
    if values is None:
        return None
    shape = x.shape[:dim % x.ndim] + values[1] + x.shape[dim % x.ndim + 1:]
    source = gen.fitting(shape, lambda v: is_float(v) and v.shape == shape, exact=True)
    return (source,), {"dim": dim, "index": values, "style": "method"}


def _scatter_add_inplace_draw(gen, x):
    if x.ndim == 0:
        return None
    dim = gen.dims(x.ndim, "one")
    shape = _gather_shape(gen, x, dim)
    values = _index_values(gen, x.shape[dim], shape, negative=False)
    if values is None:
        return None
    source = gen.fitting(shape, lambda v: is_float(v) and v.shape == shape, exact=True)
    return (source,), {"dim": dim, "index": values, "style": "method"}


INPLACE = [
    _arith_("add_", numpy.add, _iadd),
    _arith_("sub_", numpy.subtract, _isub),
    _arith_("mul_", numpy.multiply, _imul),
    _arith_("div_", numpy.true_divide, _idiv, divisor=True),
    _inplace("clamp_", lambda gen, x: ((), _clamp_params(gen)),
             lambda x, min=None, max=None: _clamp_reference(x, min, max),  # noqa: A002
             lambda L, x, **p: x.clamp_(**p), kink=_clamp_kink),
    _inplace("exp_", lambda gen, x: ((), {}), numpy.exp, lambda L, x: x.exp_(), saves="out",
             target=_exp_target),
    _inplace("pow_", lambda gen, x: ((), {"exponent": gen.d.choice((2, 3))}),
             lambda x, exponent: x ** exponent, lambda L, x, exponent: x.pow_(exponent)),
    _inplace("masked_fill_", lambda gen, x: (_masked_fill_draw(gen, x)[0][1:], {}),
             lambda x, mask, value: numpy.where(mask, value, x),
             lambda L, x, mask, value: x.masked_fill_(mask, value)),
    _inplace("zero_", lambda gen, x: ((), {}), numpy.zeros_like, lambda L, x: x.zero_()),
    _inplace("fill_", _fill_draw, lambda x, value: numpy.full_like(x, value),
             lambda L, x, value: x.fill_(value)),
    _inplace("copy_", _copy_draw, lambda x, source: numpy.broadcast_to(source, x.shape),
             lambda L, x, source: x.copy_(source)),
    _inplace("setitem", _setitem_draw, _setitem, _setitem_call),
    _inplace("index_add_", _index_add_inplace_draw, lambda x, source, **p: _index_add(
        x, source, **p), lambda L, x, source, dim, index, style: x.index_add_(
        dim, L.constant(index), source), saves="in"),
    _inplace("scatter_add_", _scatter_add_inplace_draw, lambda x, source, **p: _scatter_add(
        x, source, **p), lambda L, x, source, dim, index, style: x.scatter_add_(
        dim, L.constant(index), source)),
]



# ---- calls PyTorch refuses: the library must raise too, and change nothing -------------------
# Each draw returns the operands of a call that raises RuntimeError, IndexError, ValueError or
# TypeError in PyTorch; `reference` is never run. Left out on purpose: writing to a piece that
# split/chunk/unbind returned (or to its base, then reading the piece). PyTorch refuses it;
# seqlib gives the gradient (tests/test_inplace_semantics.py), a deliberate extension.
def _refused(name, draw, call):
    return Op(name, "refused", draw, None, call, lambda *operands, **params: (), saves="",
              raises=True)


def _refused_leaf_write(gen):
    x = gen.pick(lambda v: v.leaf and v.requires_grad)
    if x is None:
        return None
    return (x,), {"through_view": x.ndim > 0 and gen.d.boolean(0.5)}


def _write_leaf(L, x, through_view):
    (x[0] if through_view else x).mul_(2)


def _refused_overlap_write(gen):
    x = gen.pick(lambda v: v.code == "f" and v.size > 0 and not v.leaf)
    if x is None:
        source = gen.pick(lambda v: v.code == "f" and v.size > 0) or gen.leaf((2,), "f")
        x = gen.step("clone", (source,), {})
    return (x,), {}


def _refused_view(gen):
    x = gen.pick(lambda v: v.ndim >= 2 and v.shape[0] > 1 and v.shape[1] > 1 and v.size
                 and v.dense)
    x = x or gen.leaf((2, 3), "f")
    try:  # a transposed transpose, or an expanded tensor (strides 0), may still be viewed
        numpy.swapaxes(x.array, 0, 1).reshape(-1, copy=False)
    except ValueError:
        return (x,), {}
    return None


def _refused_broadcast(gen):
    x = gen.pick(lambda v: v.code in ("f", "i") and any(n > 1 for n in v.shape))
    if x is None:
        return None
    dim = next(d for d, n in enumerate(x.shape) if n > 1)
    shape = x.shape[:dim] + (x.shape[dim] + 1,) + x.shape[dim + 1:]
    return (x, gen.leaf(shape, "f")), {"style": gen.d.choice(("op", "fn", "method", "inplace"))}


def _add_mismatched(L, x, y, style):
    if style == "inplace":
        y.detach().add_(x.detach())  # grows no history; only the shapes matter
    elif style == "op":
        x + y
    else:
        method_or_function("add")(L, x, y, style=style)


def _refused_dim(gen):
    x = gen.pick(lambda v: v.code in ("f", "i"))
    if x is None:
        return None
    bound = max(x.ndim, 1)
    dim = gen.d.choice((bound, -bound - 1))
    return (x,), {"dim": dim, "op": gen.d.choice(("sum", "softmax", "unsqueeze", "cumsum"))}


def _dim_out_of_range(L, x, dim, op):
    if op == "unsqueeze":
        dim = dim + 1 if dim > 0 else dim - 1
    getattr(x, op)(dim)


def _refused_index(gen):
    x = gen.pick(lambda v: v.ndim > 0)
    if x is None:
        return None
    return (x,), {"index": gen.d.choice((x.shape[0], -x.shape[0] - 1))}


def _refused_cast(gen):
    x = gen.pick(lambda v: v.code == "i") or gen.leaf(gen.shape(), "i")
    return (x,), {"value": gen.d.choice((1.5, -0.5))}


def _refused_mean(gen):
    x = gen.pick(lambda v: v.code in ("i", "b")) or gen.leaf(gen.shape(), gen.d.choice("ib"))
    return (x,), {}


def _refused_cat(gen):
    x = gen.pick(lambda v: v.ndim >= 2)
    if x is None:
        return None
    shape = (x.shape[0], x.shape[1] + 1) + x.shape[2:]
    return (x, gen.leaf(shape, x.code if x.code in ("f", "i") else "f")), {}


REFUSED = [
    _refused("write_to_leaf", _refused_leaf_write, _write_leaf),
    _refused("write_to_expanded", _refused_overlap_write,
             lambda L, x: x.expand((2,) + tuple(x.shape)).add_(1)),
    _refused("view_of_transposed", _refused_view, lambda L, x: x.transpose(0, 1).view(-1)),
    _refused("add_mismatched", _refused_broadcast, _add_mismatched),
    _refused("dim_out_of_range", _refused_dim, _dim_out_of_range),
    _refused("index_out_of_range", _refused_index, lambda L, x, index: x[index]),
    _refused("float_into_int", _refused_cast, lambda L, x, value: x.add_(value)),
    _refused("mean_of_ints", _refused_mean, lambda L, x: x.mean()),
    _refused("cat_mismatched", _refused_cat, lambda L, x, y: L.lib.cat([x, y], dim=0)),
]

OPS = {op.name: op for op in UNARY + BINARY + REDUCE + SORTING + SHAPE + INDEX + MATMUL + LOSS
       + INPLACE + REFUSED}
# How often each family is drawn, relative to one another.
WEIGHTS = {"pointwise": 3, "binary": 4, "reduce": 3, "softmax": 1, "shape": 4, "index": 2,
           "matmul": 1, "loss": 1, "inplace": 4, "refused": 1}
