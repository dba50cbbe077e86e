"""Lattice shape transforms F_latt of a finite crystal (dimensionless amplitudes).

h, k, l are fractional Miller indices; h0, k0, l0 the nearest integers
(rounded as ceil(x - 0.5)); Na, Nb, Nc the cell counts.
"""

from __future__ import annotations

import math

from .._backend import is_scalar
from ..numerics import CosPi, chebyshev_u, chebyshev_u_even, chebyshev_u_sqr, cos_pi_plain

ROUND_VOLUME_FACTOR = 0.723601254558268  # sqrt of the cube-to-sphere volume ratio


def nearest_index(xp, h):
    """Nearest integer, halves rounded up: ceil(h - 1/2)."""
    return xp.ceil(h - 0.5)


def is_integral(n) -> bool:
    """A plain number (not an array) with an integer value."""
    return _is_integral(n)


def _is_integral(n) -> bool:
    """True for a plain number with an integer value.

    An array (a tensor that may carry gradients, a tracer) is never read: it
    takes the general form, which is differentiable in N.
    """
    return is_scalar(n) and float(n) == math.floor(float(n))


def is_unit_count(n) -> bool:
    """A plain count of at most one cell: that axis contributes a factor of 1 (no grating)."""
    return _is_integral(n) and float(n) <= 1


# Up to this N the grating function is evaluated as a Chebyshev polynomial
# (one cosine and 2(N-2) multiply-adds); above it as a ratio of sines.
CHEBYSHEV_MAX_N = 12


def grating_odd(xp, h, n: int, direct: bool = False, cos_pi: CosPi = cos_pi_plain):
    """sin(n pi h) / sin(pi h) for odd integer n <= ``CHEBYSHEV_MAX_N``, with the limit n at integer h.

    For odd n this is U_(n-1)(cos pi h), an even polynomial of cos pi h: the
    sign (-1)^m that any integer shift h -> h - m puts on the cosine drops
    out, so no nearest-index convention is needed.  The cosine is taken of
    the offset from the nearest integer by ``cos_pi`` (one rounding, which
    keeps single precision accurate at strong reflections), or of h itself
    when ``direct`` (a backend with a vectorised float64 cosine: one
    operation fewer).
    """
    if direct:
        c = xp.cos(math.pi * h)
    else:
        c = cos_pi(xp, h - xp.round(h))
    return chebyshev_u_even(xp, c * c, n - 1)


def _sign_even(xp, h0, N: int):
    """(-1)^((N-1) h0): always +1 for odd N, (-1)^h0 for even N."""
    if N % 2:
        return 1.0
    return 1.0 - 2.0 * (h0 - 2.0 * xp.floor(0.5 * h0))


# Below |u| = 1/4, sin(u)/u is evaluated by its Taylor series to u^10 (truncation
# below 1e-17 relative), so that its value and its derivative are exact at and
# near 0; above, the closed form loses at most ~3 eps / u^2 in its derivative.
_SINC_SERIES_U2 = 0.0625


def sinc(xp, u):
    """sin(u) / u, 1 at u = 0, with a series near 0 (double-where safe: finite, exact gradients)."""
    u2 = u * u
    small = u2 < _SINC_SERIES_U2
    us = xp.where(small, xp.ones_like(u), u)
    series = 1.0 + u2 * (-1.0 / 6.0 + u2 * (1.0 / 120.0 + u2 * (-1.0 / 5040.0 + u2 * (
        1.0 / 362880.0 + u2 * (-1.0 / 39916800.0)))))
    return xp.where(small, series, xp.sin(us) / us)


def sincg(xp, h, h0, n, cos_pi: CosPi = cos_pi_plain):
    """Grating function sin(N pi h) / sin(pi h), with its limit N at integer h.

    Evaluated on the offset d = h - h0 from the nearest integer, so that single
    precision stays accurate at strong reflections: for integer N,
    sin(N pi h)/sin(pi h) = (-1)^((N-1) h0) sin(N pi d)/sin(pi d)
    = (-1)^((N-1) h0) U_(N-1)(cos(pi d)), the Chebyshev form used up to
    ``CHEBYSHEV_MAX_N`` (no division, no special case at d = 0).  Above it,
    sin(N x)/sin(x) = N sinc(N x) / sinc(x) with x = pi d: no division by a
    small number, so value and derivative stay exact at and near d = 0.
    For a non-integer or array N (a refined, differentiable N) the same idea
    with N = M + f, M = round(N) held constant:
    sin(N pi h)/sin(pi h) = (-1)^((M-1) h0) sin(pi (f h0 + N d))/sin(pi d)
    = (-1)^((M-1) h0) [cos(pi f h0) N sinc(N x)/sinc(x) + sin(pi f h0) cos(N x)/sin(x)].
    The first part is the integer form (exact in its derivatives, also in N);
    the second is zero for integer N and otherwise has the true pole at
    d = 0, where the reference's limit N cos(pi f h0) (-1)^((M-1) h0) is
    taken (through a double where: finite gradients at the peak centre).
    """
    d = h - h0
    if _is_integral(n) and float(n) <= CHEBYSHEV_MAX_N:
        c = cos_pi(xp, d)
        return _sign_even(xp, h0, int(n)) * chebyshev_u(xp, c, int(n) - 1)
    x = math.pi * d
    if _is_integral(n):
        N = float(n)
        return _sign_even(xp, h0, int(N)) * (N * sinc(xp, N * x) / sinc(xp, x))
    # general N (possibly an array that carries gradients)
    M = xp.round(n) if not is_scalar(n) else float(round(float(n)))
    f = n - M
    sign = 1.0 - 2.0 * xp.remainder(h0 * (M - 1.0), 2.0)
    phase = math.pi * f * h0
    regular = xp.cos(phase) * (n * sinc(xp, n * x) / sinc(xp, x))
    small = d == 0
    den = xp.where(small, xp.ones_like(x), xp.sin(x))
    pole = xp.where(small, xp.zeros_like(x), xp.sin(phase) * xp.cos(n * x) / den)
    return sign * (regular + pole)


def grating_factors(xp, hkl, hkl0, N, cos_pi: CosPi = cos_pi_plain) -> list:
    """The grating function of each crystal axis; None for an axis with at most one cell (a factor of 1).

    ``hkl`` and ``hkl0`` are sequences of three arrays (h, k, l and their
    nearest integers).
    """
    return [None if is_unit_count(N[i]) else sincg(xp, hkl[i], hkl0[i], N[i], cos_pi) for i in range(3)]


def square(xp, hkl, hkl0, N, cos_pi: CosPi = cos_pi_plain):
    """Parallelepiped crystal: the product of the grating functions of the axes with N > 1."""
    out = None
    for f in grating_factors(xp, hkl, hkl0, N, cos_pi):  # over the three crystal axes
        if f is not None:
            out = f if out is None else out * f
    return xp.ones_like(hkl[0]) if out is None else out


def grating_odd_product(xp, hkl, N, direct: bool = False, cos_pi: CosPi = cos_pi_plain):
    """The square transform for odd integer counts (see :func:`grating_odd`), no nearest index needed."""
    out = None
    for x, n in zip(hkl, N):  # over the three crystal axes
        if is_unit_count(n):
            continue
        f = grating_odd(xp, x, int(n), direct=direct, cos_pi=cos_pi)
        out = f if out is None else out * f
    return xp.ones_like(hkl[0]) if out is None else out


def grating_sqr_product(xp, hkl, N, hkl0=None, direct: bool = False, cos_pi: CosPi = cos_pi_plain,
                        horner_max_n: int = 6, in_place: bool = False):
    """|F_latt|^2 of the square transform for integer counts <= ``CHEBYSHEV_MAX_N``, any parity.

    sin^2(N pi h) / sin^2(pi h) = U_(N-1)(cos pi h)^2 depends on cos^2(pi h)
    alone, so the sign (-1)^h0 that the amplitude needs drops out for even N
    as it does for odd N: the cosine is taken of the offset from any nearest
    integer (``hkl0`` where the caller has it, else a rounding), or of h
    itself when ``direct``.  For the intensity only; the signed amplitude is
    :func:`square`'s.  ``in_place``: temporaries are updated in place (arrays
    that allow it, no gradients).
    """
    out = None
    for i, n in enumerate(N):  # over the three crystal axes
        if is_unit_count(n):
            continue
        x = hkl[i]
        if direct:
            c = xp.cos(math.pi * x)
        else:
            if in_place and hkl0 is None:
                d = xp.round(x)
                d -= x            # the offset's sign does not matter: the cosine is even
            else:
                d = x - (xp.round(x) if hkl0 is None else hkl0[i])
            c = cos_pi(xp, d, in_place)
        f = chebyshev_u_sqr(xp, c, int(n) - 1, horner_max_n, in_place)
        if out is None:
            out = f
        elif in_place:
            out *= f
        else:
            out = out * f
    return xp.ones_like(hkl[0]) if out is None else out


def integral_counts(N) -> bool:
    """Whether every count is an integer <= ``CHEBYSHEV_MAX_N`` (:func:`grating_sqr_product` applies)."""
    return all(is_unit_count(n) or (is_integral(n) and n <= CHEBYSHEV_MAX_N) for n in N)


def odd_counts(N) -> bool:
    """Whether every count is 1 or an odd integer <= ``CHEBYSHEV_MAX_N`` (:func:`grating_odd_product` applies)."""
    return all(is_unit_count(n) or (is_integral(n) and int(n) % 2 == 1 and n <= CHEBYSHEV_MAX_N) for n in N)


# Below |x| = 0.1 the closed form of sinc3 cancels (relative error eps / x^2, and
# worse in its derivative); the Taylor series to x^8 is exact there to < 6e-19.
_SINC3_SERIES_X2 = 0.01


def _sinc3(xp, x, x2, small):
    """sinc3 from x (used where not ``small``) and x^2 (used where ``small``), double-where safe."""
    xs = xp.where(small, xp.ones_like(x), x)
    closed = 3.0 * (xp.sin(xs) / xs - xp.cos(xs)) / (xs * xs)
    series = 1.0 + x2 * (-1.0 / 10.0 + x2 * (1.0 / 280.0 + x2 * (-1.0 / 15120.0 + x2 / 1330560.0)))
    return xp.where(small, series, closed)


def sinc3(xp, x):
    """Transform of a sphere: 3 (sin x - x cos x) / x^3, 1 at x = 0 (series near 0)."""
    x2 = x * x
    return _sinc3(xp, x, x2, x2 < _SINC3_SERIES_X2)


def round_(xp, hkl, hkl0, N, fudge):
    """Ellipsoidal crystal: N_a N_b N_c * 0.7236 * sinc3(pi * sqrt(fudge * sum((dh N)^2)))."""
    d = hkl - hkl0
    r2 = (d[..., 0] * N[0]) ** 2 + (d[..., 1] * N[1]) ** 2 + (d[..., 2] * N[2]) ** 2
    r2f = r2 * fudge
    x2 = (math.pi * math.pi) * r2f
    small = x2 < _SINC3_SERIES_X2
    # the square root never sees r2f near 0 (its derivative is infinite at 0)
    x = math.pi * xp.sqrt(xp.where(small, xp.ones_like(r2f), r2f))
    return (N[0] * N[1] * N[2] * ROUND_VOLUME_FACTOR) * _sinc3(xp, x, x2, small)


def reciprocal_distance_sqr(xp, hkl, hkl0, reciprocal_per_A, N):
    """|dh a* + dk b* + dl c*|^2 (1/A^2) times (Na Nb Nc)^2, as the reference scales it."""
    d = hkl - hkl0
    v = xp.matmul(d, reciprocal_per_A)  # rows of reciprocal_per_A are a*, b*, c*
    return xp.sum(v * v, axis=-1) * (N[0] * N[1] * N[2]) ** 2


def gauss(xp, rad_star_sqr, N, fudge):
    """Gaussian spots of the same height and volume: N_a N_b N_c exp(-r*^2 fudge / 0.63)."""
    return (N[0] * N[1] * N[2]) * xp.exp(-(rad_star_sqr / 0.63 * fudge))


def tophat(xp, rad_star_sqr, N, fudge):
    """Flat-top spots: N_a N_b N_c inside r*^2 fudge < 0.3969, zero outside."""
    inside = rad_star_sqr * fudge < 0.3969
    full = xp.full_like(rad_star_sqr, 1.0) * (N[0] * N[1] * N[2])
    return xp.where(inside, full, xp.zeros_like(rad_star_sqr))
