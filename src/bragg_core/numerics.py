"""Numerical devices shared by the physics: fast cosines and Chebyshev forms.

Nothing here is physics.  The physics modules take a ``cos_pi`` function as
an argument; :func:`cos_pi_function` chooses it from a backend capability
(``Capabilities.slow_float64_trig``), so the choice is made once, by the
engine, and never by looking at an array's library inside a physics formula.
"""

from __future__ import annotations

import math
from typing import Callable

from ._types import Array, Namespace

# cos(pi d) for |d| <= 1/2 as a polynomial of degree 8 in t = d^2: the
# interpolant of cos(pi sqrt(t)) at the 9 Chebyshev nodes of [0, 1/4], solved
# in 50-digit arithmetic and rounded to float64.  Its error with these rounded
# coefficients is below 1e-16 on the whole interval (a Taylor series needs 11
# terms for the same), so in float64 it agrees with a correctly rounded cosine
# to a few ulp (tests/test_kernel_pieces.py checks it on a dense grid).
_COS_PI_COEFFS = (
    1.0, -4.934802200544676, 4.058712126416497, -1.335262768843447, 0.23533063012953284,
    -0.025806888737002202, 0.0019295562724817132, -0.00010456655338748738, 4.149564353942586e-06,
)


def cos_pi_reduced(xp: Namespace, d: Array, in_place: bool = False) -> Array:
    """cos(pi d) for |d| <= 1/2 by a polynomial in d^2 (Horner).

    Only multiplications and additions: where a backend evaluates float64
    cosines one element at a time (NumPy, ~8 ns each on the machines
    measured), this polynomial costs ~2 ns.  ``in_place``: the running sum
    is updated in place (for arrays that allow it and carry no gradients).
    """
    return _horner(d * d, _COS_PI_COEFFS, in_place)


def cos_pi_plain(xp: Namespace, d: Array, in_place: bool = False) -> Array:
    """cos(pi d) by the namespace's own cosine."""
    return xp.cos(math.pi * d)


CosPi = Callable[[Namespace, Array], Array]


def cos_pi_function(slow_float64_trig: bool, dtype_name: str) -> CosPi:
    """The cos(pi d), |d| <= 1/2, to use: the polynomial where float64 trig is slow, else the cosine."""
    if slow_float64_trig and dtype_name == "float64":
        return cos_pi_reduced
    return cos_pi_plain


def chebyshev_u(xp: Namespace, c: Array, n: int, in_place: bool = False) -> Array:
    """U_n(c) by the three-term recurrence U_k = 2c U_(k-1) - U_(k-2) (stable for |c| <= 1).

    U_(N-1)(cos x) = sin(N x) / sin(x), including its limit +-N at x = m pi.
    ``in_place``: each new term is finished in its own fresh array (one
    temporary per step instead of two).
    """
    if n == 0:
        return xp.ones_like(c)
    two_c = 2.0 * c
    u_prev, u = 1.0, two_c
    for _ in range(n - 1):  # over the polynomial degree, not over data
        if in_place:
            nxt = two_c * u
            nxt -= u_prev
            u_prev, u = u, nxt
        else:
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


def chebyshev_u_even(xp: Namespace, c2: Array, n: int) -> Array:
    """U_n(c) for even n from c^2 (U_n is even in c for even n)."""
    if n == 0:
        return xp.ones_like(c2)
    if n > _U_HORNER_MAX_N:
        c = xp.sqrt(c2)  # the sign of c does not matter for even n
        return chebyshev_u(xp, c, n)
    return _horner(c2, _u_even_coefficients(n))


def _u_odd_coefficients(n: int) -> tuple:
    """U_n(c) / c for odd n as a polynomial in c^2: coefficients, constant term first (exact integers)."""
    m = (n - 1) // 2
    return tuple((-1) ** (m - j) * math.comb(m + j + 1, m - j) * 2 * 4 ** j for j in range(m + 1))


# The largest n for which U_n(c)^2 is evaluated by Horner in c^2, per working
# dtype.  The rounding error of the Horner sum grows with the sum of the
# absolute coefficients (about 2.4^n): at n = 11 it is ~2e-12 absolute on
# values up to 12 in float64.  In float32 the rounding of c itself dominates
# up to n = 8 (Horner within 1.1x of the recurrence's error, measured on a
# dense grid against extended precision); at n = 9 Horner is 3x worse.
U_SQR_HORNER_MAX_N = {"float64": 11, "float32": 8}


def _horner(c2: Array, coefficients: tuple, in_place: bool = False) -> Array:
    """sum_j coefficients[j] c2^j (constant first); the running sum updated in place when ``in_place``."""
    if in_place:
        acc = c2 * coefficients[-1]   # a fresh array: the caller's c2 is never written
        acc += coefficients[-2]
        for coef in coefficients[-3::-1]:  # over the polynomial's terms, not over data
            acc *= c2
            acc += coef
        return acc
    acc = c2 * coefficients[-1] + coefficients[-2]
    for coef in coefficients[-3::-1]:  # over the polynomial's terms, not over data
        acc = acc * c2 + coef
    return acc


def chebyshev_u_sqr(xp: Namespace, c: Array, n: int, horner_max_n: int = 6, in_place: bool = False) -> Array:
    """U_n(c)^2, which depends on c^2 alone (U_n has the parity of n).

    Up to ``horner_max_n``: for even n, U_n(c) = P(c^2) and the result is
    P(c^2)^2; for odd n, U_n(c) = c Q(c^2) and it is c^2 Q(c^2)^2, each by
    Horner in c^2 (n/2 multiply-adds instead of the recurrence's n).  Above
    it, the square of the three-term recurrence.
    """
    if n == 0:
        return xp.ones_like(c)
    if n > horner_max_n:
        u = chebyshev_u(xp, c, n, in_place)
        if in_place:   # u is a fresh array of its own
            u *= u
            return u
        return u * u
    c2 = c * c
    if n == 1:
        return 4.0 * c2
    if n % 2 == 0:
        p = _horner(c2, _u_even_coefficients(n), in_place)
        return p * p
    q = _horner(c2, _u_odd_coefficients(n), in_place)
    if in_place:
        q *= q
        q *= c2
        return q
    return c2 * (q * q)


__all__ = ["cos_pi_reduced", "cos_pi_plain", "cos_pi_function", "CosPi", "chebyshev_u", "chebyshev_u_even",
           "chebyshev_u_sqr", "U_SQR_HORNER_MAX_N"]
