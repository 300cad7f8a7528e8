"""Special functions NumPy lacks: erf (fdlibm's rational approximations, < 1 ulp-ish)."""

from __future__ import annotations

import numpy

from .backend import get_array_module

# Coefficients from fdlibm s_erf.c (Sun Microsystems, 1993), as used by FreeBSD and musl.
_ERX = 8.45062911510467529297e-01
_EFX = 1.28379167095512586316e-01
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


def _poly(coefficients, z):
    """The polynomial with ``coefficients`` (lowest first) at ``z``, as a new array."""
    return _horner_into(numpy.empty_like(z), coefficients, z)


def _horner_into(out, coefficients, z):
    """``out[:] = poly(z)`` by Horner's rule, lowest coefficient first in ``coefficients``."""
    numpy.multiply(z, coefficients[-1], out=out)
    out += coefficients[-2]
    for c in reversed(coefficients[:-2]):
        out *= z
        out += c
    return out


# Single precision: an odd/even rational approximation on [-4, 4] (as Eigen's float erf),
# within 4.2e-7 of erf, eight times cheaper than the double-precision path.
_ALPHA = tuple(numpy.float32(c) for c in (
    -1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04,
    -5.69250639462346e-05, -2.10102402082508e-06, 2.77068142495902e-08,
    -2.72614225801306e-10))
_BETA = tuple(numpy.float32(c) for c in (
    -1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03,
    -2.13374055278905e-04, -1.45660718464996e-05))
# Elements per block: the ~20 passes of the rational function run over a block while its
# four float32 buffers (1 MB) stay in L2, 2.5x faster than whole-array passes at 1M elements.
_BLOCK = 1 << 16
_FOUR = numpy.float32(4.0)


def _erf_single(x, out=None):
    flat = numpy.ascontiguousarray(x, dtype=numpy.float32).reshape(-1)
    direct = (out is not None and out.dtype == numpy.float32 and out.flags.c_contiguous
              and out.shape == x.shape)
    result = out.reshape(-1) if direct else numpy.empty_like(flat)
    n = min(_BLOCK, flat.size)
    clipped, square, denominator = (numpy.empty(n, numpy.float32) for _ in range(3))
    for start in range(0, flat.size, _BLOCK):
        stop = min(start + _BLOCK, flat.size)
        m = stop - start
        c, z, d, o = clipped[:m], square[:m], denominator[:m], result[start:stop]
        numpy.minimum(flat[start:stop], _FOUR, out=c)  # NaN stays NaN; x is read only here,
        numpy.maximum(c, -_FOUR, out=c)  # so out may be x itself
        numpy.multiply(c, c, out=z)
        _horner_into(o, _ALPHA, z)
        o *= c
        o /= _horner_into(d, _BETA, z)
    if direct:
        return out
    return _deliver(result.reshape(x.shape), x.dtype, out)


def _deliver(result, dtype, out):
    """``result`` in ``dtype``, or written into ``out`` (returned) when one is given."""
    if out is None:
        return result.astype(dtype, copy=False)
    out[...] = result
    return out


def erf(x, out=None):
    """The error function of a NumPy or CuPy float array, in the array's dtype (float64 to
    about 1 ulp, float32/float16 to 4.2e-7).

    Args:
        x: a float array of any shape.
        out: an array of ``x``'s shape to write into (it may be ``x`` itself), or None.
    Returns:
        ``erf(x)``: ``out`` when given, else a new array.
    """
    xp = get_array_module(x)
    if xp is not numpy:
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x, out=out)
    if x.dtype.itemsize <= 4:
        return _erf_single(x, out)
    dtype = x.dtype
    with numpy.errstate(divide="ignore", over="ignore", invalid="ignore"):
        a = numpy.abs(x.astype(numpy.float64))
        z = a * a
        small = a + a * (_poly(_PP, z) / _poly(_QQ, z))
        s = a - 1.0
        middle = _ERX + _poly(_PA, s) / _poly(_QA, s)
        inv = 1.0 / z
        tail_a = _poly(_RA, inv) / _poly(_SA, inv)
        tail_b = _poly(_RB, inv) / _poly(_SB, inv)
        tail = numpy.where(a < 1 / 0.35, tail_a, tail_b)
        erfc = numpy.exp(-z - 0.5625 + tail) / a
    large = 1.0 - erfc
    result = numpy.where(a < 0.84375, small, numpy.where(a < 1.25, middle, large))
    result = numpy.where(a >= 6.0, 1.0, result)
    result = numpy.where(numpy.isnan(a), a, result)
    return _deliver(numpy.copysign(result, x), dtype, out)
