"""Differential fuzzing: random op programs (tests/fuzz_ops.py, tests/fuzz_programs.py) run on
seqlib in float64 and float32 against a float64 NumPy reference, with float64 gradients
checked by finite differences (``sl.gradcheck``) and float32 gradients against them.

A failure prints the program as a listing; to replay it, from tests/::

    from fuzz_programs import Program
    from test_fuzz import check
    check(Program.parse(listing))

tests/compare_torch.py runs the same programs on torch.
"""

from __future__ import annotations

import numpy
import pytest
from fuzz_ops import OPS, dtype_name
from fuzz_programs import (
    FLOATS,
    HypothesisDrawer,
    Lib,
    Program,
    Reference,
    execute,
    generate,
    gradients,
    loss_weights,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seqlib as sl
import seqlib.nn.functional as F

# NumPy's RuntimeWarnings (divide by zero, mean of an empty slice) must not leak out of seqlib:
# PyTorch prints nothing there.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

CI_PROGRAMS = 500  # about 5 s on one core, with the programs that start with each op
PER_OP_PROGRAMS = 5  # programs starting with each op of the table
SLOW_PROGRAMS = 4000
MARGIN = 1e-3  # closer than this to a kink or jump: no finite differences, no float32 values
F64 = Lib(sl, F, "float64")
F32 = Lib(sl, F, "float32")


@st.composite
def programs(draw, max_steps: int = 6, require: str | None = None) -> Program:
    return generate(HypothesisDrawer(draw), max_steps, require)


def check(program: Program) -> None:
    """seqlib agrees with the reference on ``program``, in values, dtypes, shapes and
    gradients."""
    reference = Reference().run(program)
    expected = reference.outputs()
    smooth = reference.finite and reference.smooth >= MARGIN and not reference.cut
    steady = reference.finite and reference.steady >= MARGIN
    env64 = execute(program, F64)
    _compare(env64, expected, "float64", tight=True, scale=reference.scale, steady=True)
    weights = loss_weights(expected)
    grads64 = gradients(program, F64, weights, env64)
    if smooth:
        _gradcheck(program)
    env32 = execute(program, F32)
    _compare(env32, expected, "float32", tight=False, scale=reference.scale, steady=steady)
    grads32 = gradients(program, F32, weights, env32)
    for name, grad in grads32.items():
        assert env32[name].grad is None or env32[name].grad.dtype == env32[name].dtype, name
        if smooth and steady:
            bound = 1e-3 * (1 + numpy.abs(grads64[name]).max(initial=0))
            numpy.testing.assert_allclose(grad, grads64[name], rtol=1e-2, atol=bound,
                                          err_msg=f"float32 gradient of {name}")


def _compare(env, expected, float_dtype, tight, scale, steady) -> None:
    for name, (array, code) in expected.items():
        tensor = env[name]
        want = dtype_name(code, float_dtype)
        assert str(tensor.dtype) == want, f"{name}: dtype {tensor.dtype}, expected {want}"
        assert tensor.shape == array.shape, f"{name}: shape {tensor.shape} vs {array.shape}"
        exact = tight and code != "f32"
        if not (exact or steady):
            continue  # near a discontinuity: float32 rounding may decide it either way
        got = tensor.detach().numpy()
        if code in FLOATS:
            rtol, atol = (1e-7, 1e-9 * scale) if exact else (2e-3, 2e-4 * scale)
            numpy.testing.assert_allclose(got, array, rtol=rtol, atol=atol,
                                          err_msg=f"{name} in {float_dtype}")
        else:
            numpy.testing.assert_array_equal(got, array, err_msg=f"{name} in {float_dtype}")


def _gradcheck(program: Program) -> None:
    leaves = [line for line in program.leaves if line.grad and line.code in FLOATS]
    if not leaves:
        return
    inputs = [sl.tensor(line.array(), dtype=sl.float64, requires_grad=True) for line in leaves]
    names = [line.name for line in leaves]
    outputs = sorted(Reference().run(program).outputs())

    def run(*tensors):
        env = execute(program, F64, dict(zip(names, tensors)))
        return tuple(env[name] for name in outputs if env[name].dtype == sl.float64)

    count = sum(int(numpy.prod(line.shape)) for line in leaves)
    sl.gradcheck(run, inputs, eps=1e-6, atol=1e-5, rtol=1e-3,
                 directions=None if count <= 40 else 12)


# A failing program prints as `Program.parse("""<listing>""")`, ready to pass to check().
@settings(max_examples=CI_PROGRAMS, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_agree_with_the_reference(program):
    check(program)


@pytest.mark.parametrize("op", sorted(OPS))
@settings(max_examples=PER_OP_PROGRAMS, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_programs_starting_with_each_op_agree_with_the_reference(op, data):
    check(data.draw(programs(max_steps=4, require=op), label="program"))


@pytest.mark.slow
@settings(max_examples=SLOW_PROGRAMS, suppress_health_check=[HealthCheck.too_slow])
@given(programs(max_steps=10))
def test_many_random_programs_agree_with_the_reference(program):
    check(program)


def test_a_listing_reads_back_to_the_same_program():
    from fuzz_programs import RandomDrawer

    for seed in range(20):
        program = generate(RandomDrawer(seed))
        assert str(Program.parse(str(program))) == str(program)


def test_the_comparison_script_describes_itself_without_torch(capsys):
    import compare_torch

    with pytest.raises(SystemExit) as exit_:
        compare_torch.main(["--help"])
    assert exit_.value.code == 0
    assert "--programs" in capsys.readouterr().out
