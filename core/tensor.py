"""Tensor: one NumPy or CuPy array plus what autograd needs to differentiate through it."""

from __future__ import annotations

import numpy

from . import dtypes
from .backend import CPU, Device, device_of

_new = object.__new__


class Tensor:
    """An n-dimensional array on the CPU (NumPy) or a CUDA device (CuPy) with autograd."""

    __slots__ = (
        "_array",  # the numpy.ndarray or cupy.ndarray holding the values
        "_requires_grad",  # whether gradients flow to (leaf) or through (non-leaf) this tensor
        "_grad",  # accumulated gradient Tensor (leaves, or non-leaves that retain_grad)
        "grad_fn",  # the Function node that produced this tensor, None for leaves
        "_output_nr",  # which output of grad_fn this tensor is
        "_version",  # [count] shared with views, bumped by every in-place op
        "_base",  # the root tensor this one is a view of, or None (see autograd/views.py)
        "_view_steps",  # set on views only: the steps from the root, (("permute", dims), ...)
        "_views",  # weak references to this root's views, or None
        "_hooks",  # gradient hooks of a leaf tensor
        "_retains_grad",  # non-leaf asked to keep its .grad
        "__weakref__",
    )

    __array_ufunc__ = None  # NumPy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, data=None, *, dtype=None, device=None, requires_grad: bool = False):
        from .creation import tensor as _tensor

        source = _tensor([] if data is None else data, dtype=dtype, device=device)
        Tensor._init(self, source._array)
        self.requires_grad = requires_grad

    @staticmethod
    def _init(self, array, grad_fn=None, output_nr=0) -> None:
        self._array = array
        self._requires_grad = grad_fn is not None
        self._grad = None
        self.grad_fn = grad_fn
        self._output_nr = output_nr
        self._version = [0]
        self._base = None
        self._views = None
        self._hooks = None
        self._retains_grad = False

    @staticmethod
    def _make(array, grad_fn=None, output_nr: int = 0) -> Tensor:
        """Wrap an array without copying or validating it (the fast path for ops)."""
        self = _new(Tensor)
        self._array = array
        self._requires_grad = grad_fn is not None
        self._grad = None
        self.grad_fn = grad_fn
        self._output_nr = output_nr
        self._version = [0]
        self._base = None
        self._views = None
        self._hooks = None
        self._retains_grad = False
        return self

    # ---- what it is ----------------------------------------------------------------------
    @property
    def array(self):
        """The underlying numpy.ndarray or cupy.ndarray (shares memory)."""
        return self._array

    @property
    def data(self) -> Tensor:
        """A detached tensor sharing memory, whose changes autograd does not track."""
        return Tensor._make(self._array)

    @data.setter
    def data(self, value: Tensor) -> None:
        self._array = value._array if isinstance(value, Tensor) else value

    @property
    def shape(self) -> tuple:
        return self._array.shape

    @property
    def dtype(self) -> numpy.dtype:
        return self._array.dtype

    @property
    def device(self) -> Device:
        return CPU if type(self._array) is numpy.ndarray else device_of(self._array)

    @property
    def is_cuda(self) -> bool:
        return type(self._array) is not numpy.ndarray

    @property
    def ndim(self) -> int:
        return self._array.ndim

    def dim(self) -> int:
        return self._array.ndim

    def size(self, dim: int | None = None):
        """The shape, or the size of one dim."""
        if dim is None:
            return self._array.shape
        from .ops._util import normalize_dim

        return self._array.shape[normalize_dim(dim, self.ndim, "size")]

    def numel(self) -> int:
        return int(self._array.size)

    def element_size(self) -> int:
        return self._array.itemsize

    @property
    def itemsize(self) -> int:
        return self._array.itemsize

    @property
    def nbytes(self) -> int:
        return int(self._array.nbytes)

    def is_floating_point(self) -> bool:
        return self._array.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        return bool(self._array.flags.c_contiguous)

    def __len__(self) -> int:
        if self._array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._array.shape[0]

    def __iter__(self):
        if self._array.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._array.shape[0]))

    def __hash__(self) -> int:
        return id(self)

    def __dir__(self):
        # without the PyTorch names that only raise an AttributeError (install_missing below)
        return sorted(set(object.__dir__(self)) - _PYTORCH_ONLY)

    def __reduce__(self):
        """Pickle the values only (for DataLoader workers); graphs are not pickled."""
        array = self._array if type(self._array) is numpy.ndarray else self._array.get()
        return (_rebuild, (array, self._requires_grad and self.grad_fn is None))

    # ---- autograd state ------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None:
            if not value:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach()."
                )
            return
        if value and self._array.dtype.kind != "f":
            raise RuntimeError(
                "only Tensors of floating point dtype can require gradients "
                f"(got dtype {self._array.dtype})"
            )
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self) -> Tensor | None:
        if self.grad_fn is not None and not self._retains_grad and self._grad is None:
            import warnings

            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
                "Its .grad attribute won't be populated during autograd.backward(). If you "
                "indeed want the gradient for a non-leaf Tensor, use .retain_grad() on it.",
                UserWarning,
                stacklevel=2,
            )
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"grad: expected a Tensor or None, got {type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(
                    f"grad: assigned grad has shape {tuple(value.shape)}, "
                    f"but the tensor has shape {tuple(self.shape)}"
                )
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        if self.grad_fn is None:
            if not self._requires_grad:
                raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
            return
        if self._retains_grad:
            return
        import weakref

        ref = weakref.ref(self)

        def keep(grad: Tensor) -> None:
            tensor = ref()
            if tensor is not None:
                if tensor._grad is None:
                    tensor._grad = Tensor._make(grad._array.copy())
                else:
                    tensor._grad = Tensor._make(tensor._grad._array + grad._array)

        self.grad_fn.register_hook(self._output_nr, keep)
        self._retains_grad = True

    def register_hook(self, hook) -> _HookHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a new one."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if self.grad_fn._hooks is None:
                self.grad_fn._hooks = {}
            hooks = self.grad_fn._hooks.setdefault(self._output_nr, [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see ``autograd.backward``)."""
        from .autograd import backward

        backward(self, gradient, retain_graph, create_graph, inputs)

    def detach(self) -> Tensor:
        """The same values, cut from the graph (shares memory and the version counter)."""
        out = Tensor._make(self._array)
        out._version = self._version
        return out

    def detach_(self) -> Tensor:
        if self._base is not None and self._base.requires_grad:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        self.grad_fn = None
        self._requires_grad = False
        return self

    # ---- conversion ----------------------------------------------------------------------
    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self._array.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._array.size} elements cannot be converted to Scalar"
            )
        return self._array.reshape(()).item()

    def tolist(self):
        """Nested Python lists (a number for 0-d tensors)."""
        array = self._array if type(self._array) is numpy.ndarray else self._array.get()
        return array.tolist()

    def numpy(self, *, force: bool = False) -> numpy.ndarray:
        """The NumPy array behind a CPU tensor (shares memory)."""
        if self._requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. "
                "Use tensor.detach().numpy() instead."
            )
        if type(self._array) is not numpy.ndarray:
            if force:
                return self._array.get()
            raise TypeError(
                f"can't convert {self.device} device type tensor to numpy. "
                "Use Tensor.cpu() to copy the tensor to host memory first."
            )
        return self._array

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def to(self, *args, **kwargs) -> Tensor:
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or ``to(other)``; differentiable."""
        return _convert.to(self, *args, **kwargs)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device=None) -> Tensor:
        if device is None:
            return self.to("cuda")
        return self.to(f"cuda:{device}" if isinstance(device, int) else device)

    def float(self) -> Tensor:
        return self.to(dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtypes.float64)

    def half(self) -> Tensor:
        return self.to(dtypes.float16)

    def long(self) -> Tensor:
        return self.to(dtypes.int64)

    def int(self) -> Tensor:
        return self.to(dtypes.int32)

    def bool(self) -> Tensor:
        return self.to(dtypes.bool)

    def type(self, dtype=None, non_blocking=False):
        return _convert.tensor_type(self, dtype, non_blocking)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def clone(self) -> Tensor:
        """A copy with its own memory; gradients flow back to the original."""
        return _convert.clone(self)

    def contiguous(self) -> Tensor:
        return self if self._array.flags.c_contiguous else _convert.clone(self)

    def __bool__(self) -> bool:
        if self._array.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with {self._array.size} values is ambiguous"
            )
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._array.dtype.kind not in "iub" or self._array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def new_tensor(self, data, dtype=None, requires_grad=False) -> Tensor:
        from .creation import tensor

        return tensor(data, dtype=dtype or self.dtype, device=self.device,
                      requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None) -> Tensor:
        from .creation import zeros

        return zeros(*size, dtype=dtype or self.dtype, device=self.device)

    def new_ones(self, *size, dtype=None) -> Tensor:
        from .creation import ones

        return ones(*size, dtype=dtype or self.dtype, device=self.device)

    def new_full(self, size, fill_value, dtype=None) -> Tensor:
        from .creation import full

        return full(size, fill_value, dtype=dtype or self.dtype, device=self.device)

    def new_empty(self, *size, dtype=None) -> Tensor:
        from .creation import empty

        return empty(*size, dtype=dtype or self.dtype, device=self.device)

    # ---- printing ------------------------------------------------------------------------
    def __repr__(self) -> str:
        array = self._array if type(self._array) is numpy.ndarray else self._array.get()
        body = numpy.array2string(array, separator=", ", prefix="tensor(", threshold=1000,
                                  edgeitems=3, precision=4)
        extras = []
        if self.is_cuda:
            extras.append(f"device='{self.device}'")
        default_kinds = {"f": dtypes.get_default_dtype(), "i": dtypes.int64, "b": dtypes.bool}
        if array.size == 0 or default_kinds.get(array.dtype.kind) != array.dtype:
            extras.append(f"dtype={array.dtype.name}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        if array.size == 0:
            body = "[]" if array.ndim == 1 else f"[], size={tuple(array.shape)}"
        return "tensor(" + ", ".join([body, *extras]) + ")"

    # ---- arithmetic ----------------------------------------------------------------------
    def __add__(self, other):
        return _arith._binary(_arith.Add, self, other)

    def __radd__(self, other):
        return _arith._binary(_arith.Add, other, self)

    def __sub__(self, other):
        return _arith._binary(_arith.Sub, self, other)

    def __rsub__(self, other):
        return _arith._binary(_arith.Sub, other, self)

    def __mul__(self, other):
        return _arith._binary(_arith.Mul, self, other)

    def __rmul__(self, other):
        return _arith._binary(_arith.Mul, other, self)

    def __truediv__(self, other):
        return _arith.div(self, other)

    def __rtruediv__(self, other):
        return _arith.div(other, self)

    def __floordiv__(self, other):
        return _arith.div(self, other, rounding_mode="floor")

    def __rfloordiv__(self, other):
        return _arith.div(other, self, rounding_mode="floor")

    def __mod__(self, other):
        return self - _arith.div(self, other, rounding_mode="floor") * other

    def __pow__(self, exponent):
        return _arith.pow(self, exponent)

    def __rpow__(self, base):
        return _arith.pow(base, self)

    def __neg__(self):
        return _arith.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _pointwise.abs(self)

    def __matmul__(self, other):
        return _linalg.matmul(self, other)

    def __rmatmul__(self, other):
        return _linalg.matmul(other, self)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def add(self, other, *, alpha=1):
        return _arith.add(self, other, alpha=alpha)

    def sub(self, other, *, alpha=1):
        return _arith.sub(self, other, alpha=alpha)

    def mul(self, other):
        return _arith.mul(self, other)

    def div(self, other, *, rounding_mode=None):
        return _arith.div(self, other, rounding_mode=rounding_mode)

    def pow(self, exponent):
        return _arith.pow(self, exponent)

    def neg(self):
        return _arith.neg(self)

    def maximum(self, other):
        return _arith.maximum(self, other)

    def minimum(self, other):
        return _arith.minimum(self, other)

    def matmul(self, other):
        return _linalg.matmul(self, other)

    def bmm(self, mat2):
        return _linalg.bmm(self, mat2)

    # ---- comparisons and logic (no gradient) ---------------------------------------------
    def __eq__(self, other):
        return _compare.eq(self, other)

    def __ne__(self, other):
        return _compare.ne(self, other)

    def __lt__(self, other):
        return _compare.lt(self, other)

    def __le__(self, other):
        return _compare.le(self, other)

    def __gt__(self, other):
        return _compare.gt(self, other)

    def __ge__(self, other):
        return _compare.ge(self, other)

    def __and__(self, other):
        return _compare.logical_op(self, other, "bitwise_and")

    def __rand__(self, other):
        return _compare.logical_op(other, self, "bitwise_and")

    def __or__(self, other):
        return _compare.logical_op(self, other, "bitwise_or")

    def __ror__(self, other):
        return _compare.logical_op(other, self, "bitwise_or")

    def __xor__(self, other):
        return _compare.logical_op(self, other, "bitwise_xor")

    def __invert__(self):
        return _compare.invert(self)

    def eq(self, other):
        return _compare.eq(self, other)

    def ne(self, other):
        return _compare.ne(self, other)

    def lt(self, other):
        return _compare.lt(self, other)

    def le(self, other):
        return _compare.le(self, other)

    def gt(self, other):
        return _compare.gt(self, other)

    def ge(self, other):
        return _compare.ge(self, other)

    def logical_not(self):
        return _compare.logical_not(self)

    def isnan(self):
        return _compare.isnan(self)

    def isinf(self):
        return _compare.isinf(self)

    def isfinite(self):
        return _compare.isfinite(self)

    def equal(self, other) -> bool:
        return _compare.equal(self, other)

    def allclose(self, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
        return _compare.allclose(self, other, rtol, atol, equal_nan)

    # ---- elementwise math ----------------------------------------------------------------
    def exp(self):
        return _pointwise.exp(self)

    def log(self):
        return _pointwise.log(self)

    def log1p(self):
        return _pointwise.log1p(self)

    def sqrt(self):
        return _pointwise.sqrt(self)

    def rsqrt(self):
        return _pointwise.rsqrt(self)

    def sin(self):
        return _pointwise.sin(self)

    def cos(self):
        return _pointwise.cos(self)

    def tanh(self):
        return _pointwise.tanh(self)

    def sigmoid(self):
        return _pointwise.sigmoid(self)

    def erf(self):
        return _pointwise.erf(self)

    def relu(self):
        return _activation.relu(self)

    def abs(self):
        return _pointwise.abs(self)

    def clamp(self, min=None, max=None):  # noqa: A002 - PyTorch's names
        return _pointwise.clamp(self, min, max)

    clip = clamp

    def floor(self):
        return _pointwise.floor(self)

    def ceil(self):
        return _pointwise.ceil(self)

    def round(self, decimals: int = 0):
        return _pointwise.round(self, decimals)

    def trunc(self):
        return _pointwise.trunc(self)

    def sign(self):
        return _pointwise.sign(self)

    def where(self, condition, other):
        return _pointwise.where(condition, self, other)

    def tril(self, diagonal: int = 0):
        return _pointwise.tril(self, diagonal)

    def triu(self, diagonal: int = 0):
        return _pointwise.triu(self, diagonal)

    def softmax(self, dim: int):
        return _activation.softmax(self, dim)

    def log_softmax(self, dim: int):
        return _activation.log_softmax(self, dim)

    # ---- reductions ----------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False, *, dtype=None, axis=None):
        return _reduce.sum(self, _dim_or_axis(dim, axis), keepdim, dtype=dtype)

    def mean(self, dim=None, keepdim=False, *, dtype=None, axis=None):
        return _reduce.mean(self, _dim_or_axis(dim, axis), keepdim, dtype=dtype)

    def prod(self, dim=None, keepdim=False, *, axis=None):
        return _reduce.prod(self, _dim_or_axis(dim, axis), keepdim)

    def max(self, dim=None, keepdim=False):
        return _reduce.max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return _reduce.min(self, dim, keepdim)

    def amax(self, dim=(), keepdim=False):
        return _reduce.amax(self, dim, keepdim)

    def amin(self, dim=(), keepdim=False):
        return _reduce.amin(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return _reduce.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return _reduce.argmin(self, dim, keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _reduce.var(self, dim, unbiased, keepdim, correction=correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _reduce.std(self, dim, unbiased, keepdim, correction=correction)

    def logsumexp(self, dim, keepdim=False):
        return _reduce.logsumexp(self, dim, keepdim)

    def cumsum(self, dim, *, dtype=None):
        return _reduce.cumsum(self, dim, dtype=dtype)

    def cumprod(self, dim, *, dtype=None):
        return _reduce.cumprod(self, dim, dtype=dtype)

    def norm(self, p=2, dim=None, keepdim=False):
        return _reduce.norm(self, p, dim, keepdim)

    def all(self, dim=None, keepdim=False):
        return _reduce.all(self, dim, keepdim)

    def any(self, dim=None, keepdim=False):
        return _reduce.any(self, dim, keepdim)

    # ---- sorting -------------------------------------------------------------------------
    def sort(self, dim=-1, descending=False, *, stable=False):
        return _sorting.sort(self, dim, descending, stable=stable)

    def argsort(self, dim=-1, descending=False, *, stable=False):
        return _sorting.argsort(self, dim, descending, stable=stable)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        return _sorting.topk(self, k, dim, largest, sorted)

    def multinomial(self, num_samples, replacement=False, *, generator=None):
        return _sampling.multinomial(self, num_samples, replacement, generator=generator)

    # ---- shape ---------------------------------------------------------------------------
    def view(self, *shape):
        return _shape.view(self, *shape)

    def view_as(self, other):
        return _shape.view(self, other.shape)

    def reshape(self, *shape):
        return _shape.reshape(self, *shape)

    def reshape_as(self, other):
        return _shape.reshape(self, other.shape)

    def permute(self, *dims):
        return _shape.permute(self, *dims)

    def transpose(self, dim0, dim1):
        return _shape.transpose(self, dim0, dim1)

    def t(self):
        return _shape.t(self)

    @property
    def T(self):
        return _shape.permute(self, *reversed(range(self.ndim)))

    @property
    def mT(self):
        return _shape.transpose(self, -2, -1)

    def movedim(self, source, destination):
        return _shape.movedim(self, source, destination)

    def unsqueeze(self, dim):
        return _shape.unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return _shape.squeeze(self, dim)

    def expand(self, *sizes):
        return _shape.expand(self, *sizes)

    def expand_as(self, other):
        return _shape.expand(self, other.shape)

    def broadcast_to(self, shape):
        return _shape.expand(self, shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return _shape.flatten(self, start_dim, end_dim)

    def unflatten(self, dim, sizes):
        return _shape.unflatten(self, dim, sizes)

    def split(self, split_size, dim=0):  # torch names it split_size here, unlike torch.split
        return _shape.split(self, split_size, dim)

    def chunk(self, chunks, dim=0):
        return _shape.chunk(self, chunks, dim)

    def unbind(self, dim=0):
        return _shape.unbind(self, dim)

    def flip(self, *dims):
        return _shape.flip(self, *dims)

    def roll(self, shifts, dims=None):
        return _shape.roll(self, shifts, dims)

    def repeat(self, *sizes):
        return _shape.repeat(self, *sizes)

    # ---- indexing ------------------------------------------------------------------------
    def __getitem__(self, index):
        return _indexing.getitem(self, index)

    def __setitem__(self, index, value):
        _inplace.setitem_(self, index, value)

    def gather(self, dim, index, *, sparse_grad=False):
        return _scatter.gather(self, dim, index, sparse_grad=sparse_grad)

    def scatter(self, dim, index, src=None, *, value=None, reduce=None):
        return _scatter.scatter(self, dim, index, src, value=value, reduce=reduce)

    def scatter_add(self, dim, index, src):
        return _scatter.scatter_add(self, dim, index, src)

    def index_add(self, dim, index, source, *, alpha=1):
        return _scatter.index_add(self, dim, index, source, alpha=alpha)

    def index_select(self, dim, index):
        return _indexing.index_select(self, dim, index)

    def masked_fill(self, mask, value):
        return _indexing.masked_fill(self, mask, value)

    def nonzero(self, *, as_tuple=False):
        return _indexing.nonzero(self, as_tuple=as_tuple)

    def repeat_interleave(self, repeats=None, dim=None, *, output_size=None):
        return _indexing.repeat_interleave(self, repeats, dim, output_size=output_size)

    # ---- in place (bump the version counter; rebase history under autograd) -------------
    def add_(self, other, *, alpha=1):
        return _inplace.binary_(self, "add", other, alpha)

    def sub_(self, other, *, alpha=1):
        return _inplace.binary_(self, "sub", other, alpha)

    def mul_(self, other):
        return _inplace.binary_(self, "mul", other)

    def div_(self, other):
        return _inplace.binary_(self, "div", other)

    def pow_(self, exponent):
        return _inplace.binary_(self, "pow", exponent)

    def clamp_(self, min=None, max=None):  # noqa: A002 - PyTorch's names
        return _inplace.unary_(self, _pointwise.clamp, min, max)

    def masked_fill_(self, mask, value):
        return _inplace.unary_(self, _indexing.masked_fill, mask, value)

    def exp_(self):
        return _inplace.unary_(self, _pointwise.exp)

    def zero_(self):
        return _inplace.fill_(self, 0)

    def fill_(self, value):
        return _inplace.fill_(self, value)

    def copy_(self, source):
        return _inplace.copy_(self, source)

    def uniform_(self, from_=0.0, to=1.0, *, generator=None):
        return _sampling.uniform_(self, from_, to, generator=generator)

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        return _sampling.normal_(self, mean, std, generator=generator)

    def scatter_(self, dim, index, src=None, *, value=None, reduce=None):
        return _inplace.unary_(self, _scatter.scatter, dim, index, src, value=value,
                               reduce=reduce)

    def scatter_add_(self, dim, index, src):
        return _inplace.unary_(self, _scatter.scatter_add, dim, index, src)

    def index_add_(self, dim, index, source, *, alpha=1):
        return _inplace.unary_(self, _scatter.index_add, dim, index, source, alpha=alpha)


def _rebuild(array, requires_grad: bool) -> Tensor:
    out = Tensor._make(array)
    out._requires_grad = requires_grad
    return out


def _dim_or_axis(dim, axis):
    """einops and NumPy say ``axis``; PyTorch says ``dim``."""
    return axis if dim is None else dim


class _HookHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


# The op families need Tensor, so they are imported after it exists.
from .functional import activation as _activation  # noqa: E402
from .missing import install_missing  # noqa: E402
from .ops import arithmetic as _arith  # noqa: E402
from .ops import compare as _compare  # noqa: E402
from .ops import convert as _convert  # noqa: E402
from .ops import indexing as _indexing  # noqa: E402
from .ops import inplace as _inplace  # noqa: E402
from .ops import linalg as _linalg  # noqa: E402
from .ops import pointwise as _pointwise  # noqa: E402
from .ops import reduce as _reduce  # noqa: E402
from .ops import sampling as _sampling  # noqa: E402
from .ops import scatter as _scatter  # noqa: E402
from .ops import shape as _shape  # noqa: E402
from .ops import sorting as _sorting  # noqa: E402

# PyTorch Tensor attributes that seqlib lacks raise an AttributeError that says so and names
# the equivalent: one descriptor per name (see core/missing.py for why not __getattr__).
_PYTORCH_ONLY = install_missing(Tensor, "torch.Tensor")
