"""Feature maps for linear attention: phi(x) such that phi(q) . phi(k) replaces exp(q . k)."""

from __future__ import annotations

import math
import warnings

import numpy

import seqlib.core.functional as F
from seqlib.core.autograd.function import Function
from seqlib.core.backend import get_array_module
from seqlib.core.creation import tensor, zeros
from seqlib.core.ops.shape import cat
from seqlib.core.random import rng
from seqlib.core.tensor import Tensor
from seqlib.nn.module import Module


class FeatureMap(Module):
    """Base class: maps queries and keys ``(..., query_dims)`` to features.

    Args:
        query_dims: the size of queries and keys.
    """

    def __init__(self, query_dims: int):
        super().__init__()
        self.query_dims = query_dims

    def new_feature_map(self, device) -> None:
        """Draw new random parameters (random feature maps); deterministic maps do nothing."""
        raise NotImplementedError

    def forward_queries(self, x: Tensor) -> Tensor:
        """Features of queries (the same map as keys unless a subclass differs)."""
        return self(x)

    def forward_keys(self, x: Tensor) -> Tensor:
        """Features of keys."""
        return self(x)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def array_function(self, reads):
        """The map on raw arrays for a fused inference step, ``fn(x, out)`` (``out`` may be
        ``x``), reading what it needs through ``reads`` (a ``seqlib.recurrent.fused.Reads``);
        None where there is none (random maps draw new parameters, which a step cannot)."""
        return None

    @classmethod
    def factory(cls, *args, **kwargs):
        """A function ``query_dims -> feature map`` that attentions call with their dimension."""

        def build(query_dims: int):
            return cls(query_dims, *args, **kwargs)

        return build


class ActivationFunctionFeatureMap(FeatureMap):
    """``phi(x) = activation_function(x)`` elementwise.

    Args:
        query_dims: the size of queries and keys.
        activation_function: a function of a tensor.
    """

    def __init__(self, query_dims: int, activation_function):
        super().__init__(query_dims)
        self.activation_function = activation_function

    def new_feature_map(self, device) -> None:
        return

    def forward(self, x: Tensor) -> Tensor:
        return self.activation_function(x)

    def array_function(self, reads):
        return ARRAY_FORMS.get(reads.get(self, "activation_function"))

    def array_pair(self):
        """``(phi, slope)`` on raw arrays for the fused training path of causal linear
        attention, or None: ``phi(x, out)`` as ``array_function`` and ``slope(features, g,
        out)``, ``out[:] = g * phi'(x)`` from the features ``phi(x)``."""
        phi = ARRAY_FORMS.get(self.activation_function)
        slope = ARRAY_SLOPES.get(self.activation_function)
        return None if phi is None or slope is None else (phi, slope)


def elu_plus_one_into(x, out):
    """``out[:] = elu(x) + 1 = max(x, 0) + exp(min(x, 0))`` on NumPy/CuPy arrays; ``out`` may
    be ``x`` itself. Returns ``out``."""
    xp = get_array_module(x)
    low = xp.minimum(x, 0)
    xp.exp(low, out=low)
    xp.maximum(x, 0, out=out)
    out += low
    return out


def elu_plus_one_slope_into(features, g, out):
    """``out[:] = g * d(elu(x) + 1)/dx`` from ``features = elu(x) + 1``: the derivative is 1
    where x > 0 and ``exp(x) = features`` elsewhere, so ``min(features, 1)``. Returns ``out``
    (which may be ``g``)."""
    xp = get_array_module(features)
    if out is g:
        out *= xp.minimum(features, 1)
        return out
    xp.minimum(features, 1, out=out)
    out *= g
    return out


class _EluPlusOne(Function):
    """``elu(x) + 1`` as one Function, whose derivative is ``min(out, 1)`` (1 where x > 0,
    ``exp(x) = out`` elsewhere). Four passes over the array forward and two backward, against
    eleven for ``F.elu`` followed by ``+ 1``; linear attention applies it to every query and
    key."""

    @staticmethod
    def forward(ctx, x):
        out = elu_plus_one_into(x, get_array_module(x).empty_like(x))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return elu_plus_one_slope_into(out, g, get_array_module(g).empty_like(out))


def _elu_plus_one(x: Tensor) -> Tensor:
    if not x.dtype.kind == "f":
        return F.elu(x) + 1  # F.elu's own dtype check and error
    return _EluPlusOne.apply(x)


# Activation functions of tensors -> the same maps on raw arrays, ``fn(x, out)`` (``out`` may be
# ``x``), for the fused step of ActivationFunctionFeatureMap. Register yours here.
ARRAY_FORMS = {_elu_plus_one: elu_plus_one_into}
# ... and their derivatives, ``slope(features, g, out)`` (see ``array_pair``), for the fused
# training path of causal linear attention.
ARRAY_SLOPES = {_elu_plus_one: elu_plus_one_slope_into}


def elu_feature_map(query_dims: int) -> ActivationFunctionFeatureMap:
    """``phi(x) = elu(x) + 1``, the default of linear attention (Katharopoulos et al., 2020).

    Args:
        query_dims: the size of queries and keys.
    Returns:
        the feature map.
    """
    return ActivationFunctionFeatureMap(query_dims, _elu_plus_one)


def orthogonal_random_matrix(rows: int, columns: int, generator=None) -> numpy.ndarray:
    """``(rows, columns)`` whose columns are orthogonal in blocks of ``rows`` and have the norms
    of ``rows``-dimensional Gaussian vectors (orthogonal random features lower the variance)."""
    draw = rng(generator)
    matrix = numpy.empty((rows, columns))
    for start in range(0, columns, rows):
        end = min(start + rows, columns)
        block = draw.standard_normal((rows, rows))
        norms = numpy.sqrt((block * block).sum(1))
        q, _ = numpy.linalg.qr(block)
        matrix[:, start:end] = q[:, : end - start] * norms[None, : end - start]
    return matrix


class RandomFourierFeatures(FeatureMap):
    """Random Fourier features of the Gaussian kernel ``exp(-t |x - y|^2 / 2)`` (Rahimi & Recht).

    Args:
        query_dimensions: the size of queries and keys.
        n_dims: the number of features (even; default ``query_dimensions``).
        softmax_temp: the kernel temperature t (default ``1/sqrt(query_dimensions)``).
        orthogonal: draw orthogonal random features.
        redraw: draw a new random matrix every ``redraw`` calls of ``new_feature_map``.
        deterministic_eval: keep the matrix fixed in eval mode.
        generator: a seeded Generator (default: the global one).
    """

    def __init__(self, query_dimensions: int, n_dims: int | None = None,
                 softmax_temp: float | None = None, orthogonal: bool = False, redraw: int = 1,
                 deterministic_eval: bool = False, generator=None):
        super().__init__(query_dimensions)
        self.n_dims = n_dims or query_dimensions
        self.orthogonal = orthogonal
        self.softmax_temp = 1 / math.sqrt(query_dimensions) if softmax_temp is None else \
            softmax_temp
        self.redraw, self.deterministic_eval = redraw, deterministic_eval
        self.generator = generator
        self.register_buffer("omega", zeros(query_dimensions, self.n_dims // 2))
        self._calls = -1

    def new_feature_map(self, device) -> None:
        if self.deterministic_eval and not self.training:
            return
        self._calls += 1
        if self._calls % self.redraw:
            return
        shape = (self.query_dims, self.n_dims // 2)
        if self.orthogonal:
            omega = orthogonal_random_matrix(*shape, generator=self.generator)
        else:
            omega = rng(self.generator).standard_normal(shape)
        self.omega = tensor(omega, dtype=self.omega.dtype, device=device)

    def _project(self, x: Tensor) -> Tensor:
        return (x * math.sqrt(self.softmax_temp)) @ self.omega.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        u = self._project(x)
        return cat([u.cos(), u.sin()], dim=-1) * math.sqrt(2 / self.n_dims)


class SmoothedRandomFourierFeatures(RandomFourierFeatures):
    """Random Fourier features plus a constant feature ``smoothing``, to keep the normaliser
    away from zero: the kernel becomes ``exp(...) + smoothing**2``. (fast-transformers documents
    ``+ smoothing`` but computes this; seqlib computes the same so ported models agree.)

    Args: as ``RandomFourierFeatures``, and ``smoothing``, the value of the constant feature.
    """

    def __init__(self, query_dimensions: int, n_dims: int | None = None,
                 softmax_temp: float | None = None, orthogonal: bool = False,
                 smoothing: float = 1.0, redraw: int = 1, deterministic_eval: bool = False,
                 generator=None):
        super().__init__(query_dimensions, (n_dims or query_dimensions) - 1, softmax_temp,
                         orthogonal, redraw, deterministic_eval, generator)
        self.smoothing = smoothing

    def forward(self, x: Tensor) -> Tensor:
        features = super().forward(x)
        constant = features.new_full(features.shape[:-1] + (1,), self.smoothing)
        return cat([features, constant], dim=-1)


class Favor(RandomFourierFeatures):
    """Positive random features of the softmax kernel ``exp(t x . y)`` (Performer, Lemma 1):
    ``phi(x) = exp(omega^T x - |x|^2 / 2) / sqrt(m)`` with both signs of omega.

    Args: as ``RandomFourierFeatures`` (orthogonal by default), and ``stabilize``: subtract the
    largest squared norm along the sequence (dim 1) before exponentiating, to avoid overflow.
    """

    def __init__(self, query_dimensions: int, n_dims: int | None = None,
                 softmax_temp: float | None = None, orthogonal: bool = True,
                 stabilize: bool = False, redraw: int = 1, deterministic_eval: bool = False,
                 generator=None):
        super().__init__(query_dimensions, n_dims, softmax_temp, orthogonal, redraw,
                         deterministic_eval, generator)
        self.stabilize = stabilize

    def forward(self, x: Tensor) -> Tensor:
        scaled = x * math.sqrt(self.softmax_temp)
        squared = (scaled * scaled).sum(-1, keepdim=True)
        u = scaled @ self.omega.to(x.dtype)
        offset = squared * 0.5 + 0.5 * math.log(self.n_dims)
        if self.stabilize:
            if x.ndim != 4 or x.shape[1] < x.shape[2]:
                warnings.warn("Favor.stabilize expects inputs shaped (N, L, H, D) with L >= H",
                              stacklevel=2)
            offset = offset + squared.amax(1, keepdim=True)
        return cat([(u - offset).exp(), (-u - offset).exp()], dim=-1)


class GeneralizedRandomFeatures(RandomFourierFeatures):
    """``phi(x) = kernel_fn(omega^T x)`` with random omega (Performer's generalised features).

    Args: as ``RandomFourierFeatures`` (orthogonal by default, ``softmax_temp`` 1), and
    ``kernel_fn`` (default ReLU); ``n_dims`` is the number of features.
    """

    def __init__(self, query_dimensions: int, n_dims: int | None = None,
                 softmax_temp: float = 1.0, orthogonal: bool = True, kernel_fn=F.relu,
                 redraw: int = 1, deterministic_eval: bool = False, generator=None):
        super().__init__(query_dimensions, 2 * (n_dims or query_dimensions), softmax_temp,
                         orthogonal, redraw, deterministic_eval, generator)
        self.kernel_fn = kernel_fn

    def forward(self, x: Tensor) -> Tensor:
        if self.softmax_temp != 1.0:
            x = x * math.sqrt(self.softmax_temp)
        return self.kernel_fn(x @ self.omega.to(x.dtype))


def fused_feature_map(feature_map: FeatureMap):
    """``feature_map``'s ``array_pair()`` (see ActivationFunctionFeatureMap), or None where it
    has none or a subclass overrides a method that the pair stands for."""
    from seqlib.recurrent.fused import defines_array_function

    if not defines_array_function(feature_map, ("forward", "forward_queries", "forward_keys"),
                                  name="array_pair"):
        return None
    return feature_map.array_pair()


class FeatureMapAttention(Module):
    """Base of the linear attentions: a feature map built for ``query_dimensions``, ``eps`` for
    the normaliser, and an event dispatcher.

    Args:
        query_dimensions: the size E of queries and keys per head.
        feature_map: a factory ``query_dims -> FeatureMap`` (default elu(x) + 1).
        eps: added to the normaliser.
        event_dispatcher: an EventDispatcher or its key.
    """

    def __init__(self, query_dimensions: int, feature_map=None, eps: float = 1e-6,
                 event_dispatcher=""):
        from seqlib.events import EventDispatcher

        super().__init__()
        self.feature_map = (feature_map or elu_feature_map)(query_dimensions)
        self.eps = eps
        self.event_dispatcher = EventDispatcher.get(event_dispatcher)

    def masked_keys(self, keys: Tensor, key_lengths) -> Tensor:
        """phi(keys) ``(N, S, H, D)`` with the features of padded keys set to zero."""
        features = self.feature_map.forward_keys(keys)
        if key_lengths is not None and not key_lengths.all_ones:
            features = features * key_lengths.float_matrix.to(features.dtype)[:, :, None, None]
        return features
