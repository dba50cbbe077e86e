"""Lattice shape transforms F_latt of a finite crystal (dimensionless amplitudes).

h, k, l are fractional Miller indices; h0, k0, l0 the nearest integers
(rounded as ceil(x - 0.5)); Na, Nb, Nc the cell counts.
"""

from __future__ import annotations

import math

from .._backend import is_scalar

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


# cos(pi d) for |d| <= 1/2 as a polynomial of degree 8 in t = d^2: the
# interpolant of cos(pi sqrt(t)) at the 9 Chebyshev nodes of [0, 1/4], solved
# in 50-digit arithmetic and rounded to float64.  Its error with these rounded
# coefficients is below 1e-16 on the whole interval (a Taylor series needs 11
# terms for the same), so in float64 it agrees with a correctly rounded cosine
# to a few ulp (tests/test_lattice_fast.py checks it on a dense grid).
_COS_PI_COEFFS = (
    1.0, -4.934802200544676, 4.058712126416497, -1.335262768843447, 0.23533063012953284,
    -0.025806888737002202, 0.0019295562724817132, -0.00010456655338748738, 4.149564353942586e-06,
)


def cos_pi_reduced(xp, d):
    """cos(pi d) for |d| <= 1/2 by a polynomial in d^2 (Horner).

    Only multiplications and additions: NumPy evaluates float64 cosines one
    element at a time (~8 ns each here), this polynomial in ~2 ns.
    """
    t = d * d
    acc = t * _COS_PI_COEFFS[-1] + _COS_PI_COEFFS[-2]
    for c in _COS_PI_COEFFS[-3::-1]:  # over the polynomial's terms, not over data
        acc = acc * t + c
    return acc


def chebyshev_u(xp, c, n: int):
    """U_n(c) by the three-term recurrence U_k = 2c U_(k-1) - U_(k-2) (stable for |c| <= 1).

    U_(N-1)(cos x) = sin(N x) / sin(x), including its limit +-N at x = m pi.
    """
    if n == 0:
        return xp.ones_like(c)
    two_c = 2.0 * c
    u_prev, u = 1.0, two_c
    for _ in range(n - 1):  # over the polynomial degree, not over data
        u_prev, u = u, two_c * u - u_prev
    return u


def _u_even_coefficients(n: int) -> tuple:
    """U_n(c) for even n as a polynomial in c^2: coefficients, constant term first.

    U_n(c) = sum_k (-1)^k C(n-k, k) (2c)^(n-2k); exact integers.
    """
    m = n // 2
    return tuple((-1) ** (m - j) * math.comb(m + j, m - j) * 4 ** j for j in range(m + 1))


# Up to this n, U_n is evaluated by Horner in c^2 (coefficients at most 80, so
# at most ~1e-14 absolute error in float64 on values of order n); above it by
# the three-term recurrence.
_U_HORNER_MAX_N = 6


def chebyshev_u_even(xp, c2, n: int):
    """U_n(c) for even n from c^2 (U_n is even in c for even n)."""
    if n == 0:
        return xp.ones_like(c2)
    if n > _U_HORNER_MAX_N:
        c = xp.sqrt(c2)  # the sign of c does not matter for even n
        return chebyshev_u(xp, c, n)
    a = _u_even_coefficients(n)
    acc = c2 * a[-1] + a[-2]
    for coef in a[-3::-1]:  # over the polynomial's terms, not over data
        acc = acc * c2 + coef
    return acc


def grating_odd(xp, h, n: int, direct: bool = False):
    """sin(n pi h) / sin(pi h) for odd integer n <= ``CHEBYSHEV_MAX_N``, with the limit n at integer h.

    For odd n this is U_(n-1)(cos pi h), an even polynomial of cos pi h: the
    sign (-1)^m that any integer shift h -> h - m puts on the cosine drops
    out, so no nearest-index convention is needed.  The cosine is taken of
    the offset from the nearest integer (one rounding, which keeps single
    precision accurate at strong reflections and lets NumPy's float64 path use
    the polynomial ``cos_pi_reduced``), or of h itself when ``direct`` (a
    backend with a vectorised float64 cosine: one operation fewer).
    """
    if direct:
        c = xp.cos(math.pi * h)
    else:
        d = h - xp.round(h)
        c = cos_pi_reduced(xp, d) if _slow_float64_trig(xp, d) else xp.cos(math.pi * d)
    return chebyshev_u_even(xp, c * c, n - 1)


def _slow_float64_trig(xp, x) -> bool:
    """NumPy's float64 cosine is not vectorised; a polynomial is much faster there."""
    import numpy as np

    return isinstance(x, np.ndarray) and x.dtype == np.float64


def _sign_even(xp, h0, N: int):
    """(-1)^((N-1) h0): always +1 for odd N, (-1)^h0 for even N."""
    if N % 2:
        return 1.0
    return 1.0 - 2.0 * (h0 - 2.0 * xp.floor(0.5 * h0))


def sincg(xp, h, h0, n):
    """Grating function sin(N pi h) / sin(pi h), with its limit N at integer h.

    Evaluated on the offset d = h - h0 from the nearest integer, so that single
    precision stays accurate at strong reflections: for integer N,
    sin(N pi h)/sin(pi h) = (-1)^((N-1) h0) sin(N pi d)/sin(pi d)
    = (-1)^((N-1) h0) U_(N-1)(cos(pi d)), the Chebyshev form used up to
    ``CHEBYSHEV_MAX_N`` (no division, no special case at d = 0).
    For a non-integer or array N (a refined, differentiable N) the same idea
    with N = M + f, M = round(N) held constant:
    sin(N pi h)/sin(pi h) = (-1)^((M-1) h0) sin(pi (f h0 + N d))/sin(pi d),
    equal to the integer form when f = 0 and exact in its derivative in N.
    At d = 0 the limit N cos(pi f h0) (-1)^((M-1) h0) is taken, through a
    double where (finite gradients at the Bragg peak centre).
    """
    d = h - h0
    if _is_integral(n) and float(n) <= CHEBYSHEV_MAX_N:
        c = cos_pi_reduced(xp, d) if _slow_float64_trig(xp, d) else xp.cos(math.pi * d)
        return _sign_even(xp, h0, int(n)) * chebyshev_u(xp, c, int(n) - 1)
    x = math.pi * d
    small = d == 0
    den = xp.where(small, xp.ones_like(x), xp.sin(x))
    if _is_integral(n):
        N = float(n)
        ratio = xp.sin(N * x) / den
        return _sign_even(xp, h0, int(N)) * xp.where(small, xp.full_like(x, N), ratio)
    # general N (possibly an array that carries gradients)
    M = xp.round(n) if not is_scalar(n) else float(round(float(n)))
    f = n - M
    sign = 1.0 - 2.0 * xp.remainder(h0 * (M - 1.0), 2.0)
    ratio = xp.sin(math.pi * (f * h0 + n * d)) / den
    lim = n * xp.cos(math.pi * f * h0)
    return sign * xp.where(small, lim, ratio)


def square(xp, hkl, hkl0, N):
    """Parallelepiped crystal: product of the grating functions of the axes with N > 1."""
    out = None
    for i in range(3):
        n = N[i]
        if is_unit_count(n):
            continue
        f = sincg(xp, hkl[..., i], hkl0[..., i], n)
        out = f if out is None else out * f
    if out is None:
        return xp.ones_like(hkl[..., 0])
    return out


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
