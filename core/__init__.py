"""seqlib's core: tensors, autograd, ops, functional ops, masks, losses and gradcheck.

Everything here is re-exported by ``seqlib``; users write ``import seqlib as sl``.
"""

import numpy as _numpy

from . import cuda, dtypes, functional, losses, masking  # noqa: F401
from .autograd import (
    Function,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .backend import Device
from .creation import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from .dtypes import (
    bool,  # noqa: A004
    double,
    float,  # noqa: A004
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int,  # noqa: A004
    int8,
    int16,
    int32,
    int64,
    long,
    set_default_dtype,
    short,
    uint8,
)
from .functional.activation import log_softmax, softmax
from .gradcheck import GradcheckError, gradcheck
from .ops.arithmetic import add, div, maximum, minimum, mul, neg, pow, sub  # noqa: A004
from .ops.compare import (
    allclose,
    eq,
    equal,
    ge,
    gt,
    isclose,
    isfinite,
    isinf,
    isnan,
    le,
    logical_and,
    logical_not,
    logical_or,
    lt,
    ne,
)
from .ops.indexing import index_select, masked_fill, nonzero, repeat_interleave
from .ops.linalg import bmm, einsum, matmul
from .ops.pointwise import (
    abs,  # noqa: A004
    ceil,
    clamp,
    cos,
    erf,
    exp,
    floor,
    log,
    log1p,
    round,  # noqa: A004
    rsqrt,
    sigmoid,
    sign,
    sin,
    sqrt,
    tanh,
    tril,
    triu,
    trunc,
    where,
)
from .ops.reduce import (
    all,  # noqa: A004
    amax,
    amin,
    any,  # noqa: A004
    argmax,
    argmin,
    cumprod,
    cumsum,
    logsumexp,
    max,  # noqa: A004
    mean,
    min,  # noqa: A004
    norm,
    prod,
    std,
    sum,  # noqa: A004
    var,
)
from .ops.sampling import multinomial
from .ops.scatter import gather, index_add, scatter, scatter_add
from .ops.shape import (
    cat,
    chunk,
    expand,
    flatten,
    flip,
    movedim,
    permute,
    repeat,
    reshape,
    roll,
    split,
    squeeze,
    stack,
    t,
    transpose,
    unbind,
    unflatten,
    unsqueeze,
    view,
)
from .ops.sorting import argsort, sort, topk
from .random import (
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    seed,
    set_rng_state,
)
from .tensor import Tensor

dtype = _numpy.dtype
device = Device
clip = clamp
concat = concatenate = cat


def is_tensor(obj) -> bool:  # noqa: A001 - shadows the builtin bool above, as PyTorch
    """True if ``obj`` is a Tensor.

    Args:
        obj: anything.
    Returns:
        a bool.
    """
    return isinstance(obj, Tensor)


def is_floating_point(input: Tensor) -> bool:
    """True if the tensor has a floating dtype.

    Args:
        input: a tensor.
    Returns:
        True for float16/32/64.
    """
    return input.is_floating_point()


def numel(input: Tensor) -> int:
    """The number of elements of a tensor.

    Args:
        input: a tensor.
    Returns:
        the number of elements.
    """
    return input.numel()

try:  # registers the einops backend when einops is installed
    from . import einops_backend  # noqa: F401
except ImportError:  # pragma: no cover - einops is optional
    pass
