"""Attention masks as small objects with cached views, with fast-transformers' semantics.

A mask is a boolean matrix where True means "may attend". Attention code asks for the view
it needs: ``bool_matrix``, ``float_matrix`` (1/0), ``additive_matrix`` (0/-inf, added to
scores before softmax), ``lengths`` (for masks that are prefixes of ones), and the flags
``all_ones`` and ``lower_triangular`` that let it skip work.
"""

from __future__ import annotations

from functools import cached_property

from . import dtypes
from .autograd.grad_mode import no_grad
from .backend import Device
from .tensor import Tensor


class BaseMask:
    """The views every mask offers, computed once from ``bool_matrix`` and cached."""

    @property
    def bool_matrix(self) -> Tensor:
        raise NotImplementedError

    @property
    def shape(self) -> tuple:
        return self.bool_matrix.shape

    @property
    def device(self) -> Device:
        return self.bool_matrix.device

    @cached_property
    def float_matrix(self) -> Tensor:
        """1.0 where attention is allowed, 0.0 elsewhere (default float dtype)."""
        return self.bool_matrix.to(dtypes.get_default_dtype())

    @cached_property
    def additive_matrix(self) -> Tensor:
        """0 where allowed and -inf elsewhere, to add to attention scores."""
        with no_grad():
            zeros = self.float_matrix * 0
            return zeros.masked_fill(~self.bool_matrix, float("-inf"))

    @cached_property
    def additive_matrix_finite(self) -> Tensor:
        """Like ``additive_matrix`` with -1e24 instead of -inf (no NaN for fully masked rows)."""
        return (~self.bool_matrix).to(dtypes.get_default_dtype()) * -1e24

    @cached_property
    def lengths(self) -> Tensor:
        """For a mask whose rows are ones then zeros, the number of ones per row (int64).

        Raises:
            ValueError: if some row is not a prefix of ones.
        """
        matrix = self.bool_matrix._array
        counts = matrix.sum(axis=-1)
        xp_positions = _arange_like(matrix)
        prefix = xp_positions < counts[..., None]
        if not bool((prefix == matrix).all()):
            raise ValueError(
                "The mask is not a length mask: some row is not ones followed by zeros"
            )
        return Tensor._make(counts.astype(dtypes.int64))

    @cached_property
    def all_ones(self) -> bool:
        """True if nothing is masked."""
        return bool(self.bool_matrix._array.all())

    @cached_property
    def lower_triangular(self) -> bool:
        """True for a square causal mask (row i allows columns 0..i)."""
        if len(self.shape) != 2 or self.shape[0] != self.shape[1]:
            return False
        try:
            lengths = self.lengths._array
        except ValueError:
            return False
        return bool((lengths == _arange_like(lengths) + 1).all())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)})"


def _arange_like(array):
    from .backend import get_array_module

    return get_array_module(array).arange(array.shape[-1])


class FullMask(BaseMask):
    """Any boolean mask, or an all-True ``N x M`` one.

    ``FullMask(mask)`` wraps a bool tensor (copied); ``FullMask(N)`` is ``N x N`` of ones,
    ``FullMask(N, M)`` or ``FullMask(N=..., M=...)`` is ``N x M``.

    Args:
        mask: a bool Tensor, or the number of rows N.
        N, M: rows and columns of an all-True mask (M defaults to N).
        device: where to create an all-True mask.
    """

    def __init__(self, mask=None, N: int | None = None, M: int | None = None, device="cpu"):
        if isinstance(mask, Tensor):
            if mask.dtype != dtypes.bool:
                raise ValueError(f"FullMask expects the mask to be bool, got {mask.dtype}")
            self._mask = mask.detach().clone()
            return
        if mask is not None and not isinstance(mask, int):
            raise TypeError(f"FullMask: mask must be a bool Tensor or an int, got {type(mask)}")
        if mask is not None and M is None:  # FullMask(N, M) passed positionally
            N, M = mask, N
        elif mask is not None:
            raise ValueError("FullMask: give the size as (N, M) or N=..., M=..., not both")
        if N is None:
            raise ValueError("FullMask: either mask or N should be provided")
        M = N if M is None else M
        if N < 0 or M < 0:
            raise ValueError(f"FullMask: sizes must be non-negative, got N={N}, M={M}")
        from .creation import ones

        self._mask = ones(N, M, dtype=dtypes.bool, device=device)
        self.__dict__["all_ones"] = True

    @property
    def bool_matrix(self) -> Tensor:
        return self._mask


class LengthMask(BaseMask):
    """Per-sequence lengths as a mask: row ``n`` is ``lengths[n]`` ones then zeros.

    Args:
        lengths: int tensor ``(N,)``.
        max_len: number of columns (default ``lengths.max()``); a length above it is an error.
        device: where to keep the mask (default: the lengths' device).
    """

    def __init__(self, lengths: Tensor, max_len: int | None = None, device=None):
        from .creation import as_tensor

        lengths = as_tensor(lengths)
        if lengths.dtype.kind not in "iu" or lengths.ndim != 1:
            raise ValueError(
                f"LengthMask: lengths must be a 1-D integer tensor, got shape "
                f"{tuple(lengths.shape)} and dtype {lengths.dtype}"
            )
        self._lengths = lengths.to(device=device or lengths.device, dtype=dtypes.int64,
                                   copy=True)
        longest = int(self._lengths._array.max()) if lengths.numel() else 0
        self._max_len = longest if max_len is None else int(max_len)
        if lengths.numel() and int(self._lengths._array.min()) < 0:
            raise ValueError("LengthMask: lengths must be non-negative")
        if longest > self._max_len:
            raise ValueError(f"LengthMask: a length ({longest}) exceeds max_len ({self._max_len})")
        self.__dict__["lengths"] = self._lengths
        self.__dict__["all_ones"] = bool((self._lengths._array == self._max_len).all())

    @property
    def max_len(self) -> int:
        return self._max_len

    @property
    def shape(self) -> tuple:
        """``(N, max_len)``, known without building the matrix (a causal mask's is L x L)."""
        return (self._lengths.shape[0], self._max_len)

    @property
    def device(self) -> Device:
        return self._lengths.device

    @cached_property
    def bool_matrix(self) -> Tensor:
        from .backend import get_array_module

        lengths = self._lengths._array
        positions = get_array_module(lengths).arange(self._max_len)
        return Tensor._make(positions[None, :] < lengths[:, None])

    def check_length(self, length: int, name: str = "sequence") -> None:
        """Raise unless this mask covers exactly ``length`` positions.

        fast-transformers silently treats a LengthMask with a smaller ``max_len`` than the
        sequence as all ones; here that is an error.
        """
        if length != self._max_len:
            raise ValueError(
                f"LengthMask with max_len={self._max_len} applied to a {name} of length "
                f"{length}; create it with max_len={length}"
            )


class TriangularCausalMask(LengthMask):
    """The ``N x N`` causal mask: position i attends to positions 0..i.

    Lazy: it holds N lengths; the ``N x N`` matrix is built only when an attention that needs
    it (full, local, ...) asks for ``bool_matrix``, so causal linear attention stays linear in
    memory.
    """

    def __init__(self, N: int, device="cpu"):
        from .creation import arange

        super().__init__(arange(1, N + 1, device=device), N, device)
        self.__dict__["lower_triangular"] = True


def check_mask(name: str, mask) -> None:
    """Raise a TypeError naming ``name`` unless ``mask`` is None or a mask object."""
    if mask is None or isinstance(mask, BaseMask):
        return
    hint = ("wrap a bool tensor as FullMask(tensor)" if "length" not in name
            else "build one with LengthMask(lengths, max_len=L)")
    raise TypeError(f"{name} must be a mask from seqlib.masking or None, got "
                    f"{type(mask).__name__}; {hint}")
