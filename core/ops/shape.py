"""Shape ops: views (reshape, permute, expand, ...), cat/stack, split/chunk/unbind, flip, repeat."""

from __future__ import annotations

from ..autograd.function import Function
from ..autograd.views import track
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import normalize_dim, normalize_dims, parse_size, unbroadcast


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Permute(Function):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(ctx.inverse), None


class Expand(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return get_array_module(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape), None


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *arrays, dim, stack):
        ctx.args = (dim, stack, [a.shape[dim] for a in arrays] if not stack else len(arrays))
        xp = get_array_module(*arrays)
        return xp.stack(arrays, axis=dim) if stack else xp.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        dim, stack, sizes = ctx.args
        xp = get_array_module(g)
        if stack:
            return tuple(xp.take(g, i, axis=dim) for i in range(sizes))
        bounds = list(_cumulative(sizes))[:-1]
        return tuple(xp.split(g, bounds, axis=dim))


def _cumulative(sizes):
    total = 0
    for n in sizes:
        total += n
        yield total


class Split(Function):
    @staticmethod
    def forward(ctx, x, sizes, dim):
        ctx.dim = dim
        bounds = list(_cumulative(sizes))[:-1]
        return tuple(get_array_module(x).split(x, bounds, axis=dim))

    @staticmethod
    def backward(ctx, *grads):
        return get_array_module(grads[0]).concatenate(grads, axis=ctx.dim), None, None


class Unbind(Function):
    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        lead = (slice(None),) * dim
        # views, as PyTorch (the Ellipsis makes NumPy return 0-d views, not copied scalars)
        return tuple(x[lead + (i, Ellipsis)] for i in range(x.shape[dim]))

    @staticmethod
    def backward(ctx, *grads):
        return get_array_module(grads[0]).stack(grads, axis=ctx.dim), None


class Flip(Function):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        # NOTE: a copy, as PyTorch's flip: NumPy's flip is a negative-stride view, which
        # view() could not reshape and whose writes would reach the input unversioned
        return get_array_module(x).flip(x, dims).copy()

    @staticmethod
    def backward(ctx, g):
        return get_array_module(g).flip(g, ctx.dims), None


class Roll(Function):
    @staticmethod
    def forward(ctx, x, shifts, dims):
        ctx.args = (shifts, dims)
        return get_array_module(x).roll(x, shifts, dims)

    @staticmethod
    def backward(ctx, g):
        shifts, dims = ctx.args
        back = tuple(-s for s in shifts) if isinstance(shifts, tuple) else -shifts
        return get_array_module(g).roll(g, back, dims), None, None


class Repeat(Function):
    @staticmethod
    def forward(ctx, x, repeats):
        ctx.shape = x.shape
        return get_array_module(x).tile(x, repeats)

    @staticmethod
    def backward(ctx, g):
        shape = (1,) * (g.ndim - len(ctx.shape)) + tuple(ctx.shape)
        # view each repeated axis as (repeats, size) and sum the copies
        split = []
        for n, total in zip(shape, g.shape):
            split += [total // n if n else 0, n]
        g = g.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return g.reshape(ctx.shape), None


# ---- views: outputs share memory and the version counter with the input ------------------


def _view_of(output: Tensor, base: Tensor, step: tuple) -> Tensor:
    """Mark ``output`` as a view of ``base`` made by ``step`` (see autograd/views.py) when it
    shares memory with it (reshape may copy); it then shares the version counter and follows
    in-place changes. Ops whose output is always a view call ``track`` directly."""
    xp = get_array_module(base._array)
    if output._array.size and xp.may_share_memory(output._array, base._array):
        track(output, base, step)
    return output


def _infer_shape(shape: tuple, numel: int, op: str) -> tuple:
    if shape.count(-1) > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred, got shape {list(shape)}")
    known = 1
    for n in shape:
        if n != -1:
            if n < 0:
                raise RuntimeError(f"{op}: invalid shape dimension {n} in {list(shape)}")
            known *= n
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if n == -1 else n for n in shape)
    elif known != numel:
        raise RuntimeError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def reshape(input: Tensor, *shape) -> Tensor:
    """The same elements in a new shape (one dim may be -1); a view when possible.

    Args:
        input: a tensor of any shape ``(*)``.
        shape: ints or one tuple; one entry may be -1.
    Returns:
        a tensor of ``shape`` (a view when possible).
    """
    shape = _infer_shape(parse_size(shape, "reshape"), input.numel(), "reshape")
    return _view_of(Reshape.apply(input, shape), input, ("reshape", shape))


def view(input: Tensor, *shape) -> Tensor:
    """Like ``reshape`` but never copies: errors if the memory layout does not allow a view.

    Args:
        input: a tensor of any shape ``(*)``.
        shape: ints or one tuple; one entry may be -1.
    Returns:
        a view of ``shape``.
    """
    shape = _infer_shape(parse_size(shape, "view"), input.numel(), "view")
    out = Reshape.apply(input, shape)
    xp = get_array_module(input._array)
    if out._array.size and not xp.may_share_memory(out._array, input._array):
        raise RuntimeError(
            f"view size is not compatible with input tensor's size and stride (shape "
            f"{tuple(input.shape)} -> {shape}); use .reshape(...) instead."
        )
    return track(out, input, ("reshape", shape))


def permute(input: Tensor, *dims) -> Tensor:
    """Reorder dims: ``permute(x, 2, 0, 1)``.

    Args:
        input: a tensor of any shape ``(*)``.
        dims: a permutation of ``range(input.ndim)``.
    Returns:
        a view with dims reordered.
    """
    dims = parse_size(dims, "permute")
    normalized = tuple(normalize_dim(d, input.ndim, "permute") for d in dims)
    if sorted(normalized) != list(range(input.ndim)):
        raise RuntimeError(
            f"permute: dims {list(dims)} are not a permutation of the {input.ndim} dims of the "
            f"input (shape {tuple(input.shape)})"
        )
    return track(Permute.apply(input, normalized), input, ("permute", normalized))


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dims.

    Args:
        input: a tensor of any shape ``(*)``.
        dim0, dim1: the dims to swap.
    Returns:
        a view.
    """
    dims = list(range(input.ndim))
    a = normalize_dim(dim0, input.ndim, "transpose")
    b = normalize_dim(dim1, input.ndim, "transpose")
    dims[a], dims[b] = dims[b], dims[a]
    dims = tuple(dims)
    return track(Permute.apply(input, dims), input, ("permute", dims))


def t(input: Tensor) -> Tensor:
    """Transpose a tensor of at most 2 dims.

    Args:
        input: ``(R, C)``, ``(N,)`` or 0-d.
    Returns:
        ``(C, R)`` (vectors unchanged).
    """
    ndim = input._array.ndim
    if ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {ndim}D")
    return track(Permute.apply(input, (1, 0)), input, ("permute", (1, 0))) if ndim == 2 \
        else input


def movedim(input: Tensor, source, destination) -> Tensor:
    """Move dims from ``source`` positions to ``destination`` positions.

    Args:
        input: a tensor of any shape ``(*)``.
        source: int or sequence of dims to move.
        destination: their new positions.
    Returns:
        a view.
    """
    source = source if isinstance(source, (tuple, list)) else (source,)
    destination = destination if isinstance(destination, (tuple, list)) else (destination,)
    src = [normalize_dim(d, input.ndim, "movedim") for d in source]
    dst = [normalize_dim(d, input.ndim, "movedim") for d in destination]
    order = [d for d in range(input.ndim) if d not in src]
    for s, d in sorted(zip(dst, src)):
        order.insert(s, d)
    return permute(input, *order)


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a size-1 dim at ``dim`` (in ``[-ndim-1, ndim]``).

    Args:
        input: a tensor of any shape ``(*)``.
        dim: position of the new dim.
    Returns:
        ``input`` with one more dim of size 1.
    """
    d = normalize_dim(dim, input.ndim + 1, "unsqueeze")
    shape = input.shape[:d] + (1,) + input.shape[d:]
    return track(Reshape.apply(input, shape), input, ("reshape", shape))  # never copies


def squeeze(input: Tensor, dim=None) -> Tensor:
    """Remove size-1 dims (all, or those in ``dim``; others are left alone, as PyTorch).

    Args:
        input: a tensor of any shape ``(*)``.
        dim: None (all size-1 dims), an int or a tuple.
    Returns:
        a view without those size-1 dims.
    """
    dims = normalize_dims(dim, input.ndim, "squeeze") if input.ndim else ()
    shape = tuple(n for i, n in enumerate(input.shape) if not (i in dims and n == 1))
    return track(Reshape.apply(input, shape), input, ("reshape", shape))  # never copies


def expand(input: Tensor, *sizes) -> Tensor:
    """Broadcast to ``sizes`` without copying; -1 keeps a dim; new dims go in front.

    Args:
        input: a tensor of any shape ``(*)``.
        sizes: the target shape; -1 keeps a dim.
    Returns:
        a broadcast view of ``sizes``.
    """
    sizes = parse_size(sizes, "expand")
    if len(sizes) < input.ndim:
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({input.ndim})"
        )
    lead = len(sizes) - input.ndim
    shape = []
    for i, n in enumerate(sizes):
        old = input.shape[i - lead] if i >= lead else None
        if n == -1:
            if old is None:
                raise RuntimeError(f"expand: -1 is not allowed in a leading, new dimension ({i})")
            n = old
        if old is not None and old != 1 and old != n:
            raise RuntimeError(
                f"expand: the expanded size of the tensor ({n}) must match the existing size "
                f"({old}) at non-singleton dimension {i}. Target sizes: {list(sizes)}. "
                f"Tensor sizes: {list(input.shape)}"
            )
        shape.append(n)
    shape = tuple(shape)
    return track(Expand.apply(input, shape), input, ("expand", shape))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` into one.

    Args:
        input: a tensor of any shape ``(*)``.
        start_dim, end_dim: the inclusive range of dims to merge.
    Returns:
        ``input`` with those dims merged into one.
    """
    if input.ndim == 0:
        return reshape(input, 1)
    start = normalize_dim(start_dim, input.ndim, "flatten")
    end = normalize_dim(end_dim, input.ndim, "flatten")
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    merged = 1
    for n in input.shape[start : end + 1]:
        merged *= n
    return reshape(input, input.shape[:start] + (merged,) + input.shape[end + 1 :])


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    """Split one dim into ``sizes`` (one may be -1).

    Args:
        input: a tensor of any shape ``(*)``.
        dim: the dim to split.
        sizes: its new sizes (one may be -1).
    Returns:
        ``input`` with ``dim`` replaced by ``sizes``.
    """
    d = normalize_dim(dim, input.ndim, "unflatten")
    sizes = _infer_shape(tuple(sizes), input.shape[d], "unflatten")
    return reshape(input, input.shape[:d] + sizes + input.shape[d + 1 :])


def _same_kind(tensors, op):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{op}: expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}: expected a sequence of Tensors, item {i} is {type(x).__name__}")
    return tensors


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dim.

    Args:
        tensors: a non-empty sequence of tensors, equal except along ``dim``.
        dim: the dim to join along.
    Returns:
        the joined tensor.
    """
    tensors = _same_kind(tensors, "cat")
    d = normalize_dim(dim, tensors[0].ndim, "cat")
    for i, x in enumerate(tensors):
        if x.ndim != tensors[0].ndim or any(
            a != b for j, (a, b) in enumerate(zip(x.shape, tensors[0].shape)) if j != d
        ):
            raise RuntimeError(
                f"cat: sizes of tensors must match except in dimension {d}; tensor 0 has shape "
                f"{tuple(tensors[0].shape)} but tensor {i} has shape {tuple(x.shape)}"
            )
    return Concatenate.apply(*tensors, dim=d, stack=False)


def stack(tensors, dim: int = 0) -> Tensor:
    """Join equally shaped tensors along a new dim.

    Args:
        tensors: a non-empty sequence of equally shaped tensors ``(*)``.
        dim: where the new dim goes.
    Returns:
        ``(*)`` with a new dim of size ``len(tensors)`` at ``dim``.
    """
    tensors = _same_kind(tensors, "stack")
    for i, x in enumerate(tensors):
        if x.shape != tensors[0].shape:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(tensors[0].shape)} "
                f"at entry 0 and {list(x.shape)} at entry {i}"
            )
    d = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return Concatenate.apply(*tensors, dim=d, stack=True)


def split(input: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Pieces of size ``split_size`` (the last may be smaller), or of the given ``sections``.

    Args:
        input: a tensor of any shape ``(*)``.
        split_size_or_sections: an int piece size, or a list of sizes summing to the dim.
        dim: the dim to split.
    Returns:
        a tuple of views.
    """
    d = normalize_dim(dim, input.ndim, "split")
    total = input.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise RuntimeError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (total // size) + ([total % size] if total % size else [])
        sizes = sizes or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != total:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {total} "
                f"(input tensor's size at dimension {d}), but got split_sizes={sizes}"
            )
    pieces = _as_tuple(Split.apply(input, sizes, d))
    lead = (slice(None),) * d
    start = 0
    for piece, size in zip(pieces, sizes):
        track(piece, input, ("index", lead + (slice(start, start + size),)))
        start += size
    return pieces


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    """Split into ``chunks`` pieces of size ``ceil(n / chunks)`` (possibly fewer pieces).

    Args:
        input: a tensor of any shape ``(*)``.
        chunks: the number of pieces wanted.
        dim: the dim to split.
    Returns:
        a tuple of at most ``chunks`` views.
    """
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    d = normalize_dim(dim, input.ndim, "chunk")
    if input.shape[d] == 0:  # PyTorch: `chunks` empty pieces (split gives one)
        return split(input, [0] * chunks, d)
    return split(input, -(-input.shape[d] // chunks), d)


def unbind(input: Tensor, dim: int = 0) -> tuple:
    """All slices along ``dim``, each without that dim.

    Args:
        input: a tensor of any shape ``(*)``.
        dim: the dim to remove.
    Returns:
        a tuple of ``input.shape[dim]`` tensors.
    """
    d = normalize_dim(dim, input.ndim, "unbind")
    if input.shape[d] == 0:
        return ()
    lead = (slice(None),) * d
    return tuple(track(piece, input, ("index", lead + (i,)))
                 for i, piece in enumerate(_as_tuple(Unbind.apply(input, d))))


def flip(input: Tensor, *dims) -> Tensor:
    """Reverse the order of elements along ``dims``.

    Args:
        input: a tensor of any shape ``(*)``.
        dims: the dims to reverse (ints or one sequence).
    Returns:
        a new contiguous tensor of the same shape (not a view).
    """
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    dims = normalize_dims(list(dims), input.ndim, "flip")
    return Flip.apply(input, dims if input.ndim else ())  # 0-d: dim 0 or -1, nothing to flip


def roll(input: Tensor, shifts, dims=None) -> Tensor:
    """Rotate elements along ``dims`` (flattened if None) by ``shifts``.

    Args:
        input: a tensor of any shape ``(*)``.
        shifts: int or tuple of shifts.
        dims: int or tuple of dims; None rolls the flattened tensor.
    Returns:
        same shape.
    """
    if dims is None:
        return Roll.apply(input.flatten(), shifts, 0).view(input.shape)
    if isinstance(dims, (tuple, list)):
        dims = tuple(normalize_dim(d, input.ndim, "roll") for d in dims)
        shifts = tuple(shifts)
    else:
        dims = normalize_dim(dims, input.ndim, "roll")
    return Roll.apply(input, shifts, dims)


def repeat(input: Tensor, *sizes) -> Tensor:
    """Tile the tensor ``sizes[i]`` times along each dim (new dims go in front).

    Args:
        input: a tensor of any shape ``(*)``.
        sizes: repetitions per dim (at least ``input.ndim`` entries).
    Returns:
        the tiled tensor.
    """
    sizes = parse_size(sizes, "repeat")
    if len(sizes) < input.ndim:
        raise RuntimeError(
            "repeat: number of dimensions of repeat dims can not be smaller than number of "
            f"dimensions of tensor ({len(sizes)} < {input.ndim})"
        )
    return Repeat.apply(input, sizes)
