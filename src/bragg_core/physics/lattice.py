"""Lattice shape transforms F_latt of a finite crystal (dimensionless amplitudes).

h, k, l are fractional Miller indices; h0, k0, l0 the nearest integers
(rounded as ceil(x - 0.5)); Na, Nb, Nc the cell counts.
"""

from __future__ import annotations

import math

ROUND_VOLUME_FACTOR = 0.723601254558268  # sqrt of the cube-to-sphere volume ratio


def nearest_index(xp, h):
    """Nearest integer, halves rounded up: ceil(h - 1/2)."""
    return xp.ceil(h - 0.5)


def _is_integral(n) -> bool:
    try:
        return float(n) == math.floor(float(n))
    except TypeError:
        return False


def sincg(xp, h, h0, n):
    """Grating function sin(N pi h) / sin(pi h), with its limit N at integer h.

    Evaluated on the offset d = h - h0 from the nearest integer, so that single
    precision stays accurate at strong reflections: for integer N,
    sin(N pi h)/sin(pi h) = (-1)^((N-1) h0) sin(N pi d)/sin(pi d).
    For a non-integer (e.g. refined) N the general form is used.
    """
    d = h - h0
    x = math.pi * d
    small = d == 0
    den = xp.where(small, xp.ones_like(x), xp.sin(x))
    if _is_integral(n):
        N = float(n)
        ratio = xp.sin(N * x) / den
        parity = xp.remainder(h0 * (N - 1.0), 2.0)
        sign = 1.0 - 2.0 * parity
        return sign * xp.where(small, xp.full_like(x, N), ratio)
    # general N (possibly an array that carries gradients)
    sign_h0 = 1.0 - 2.0 * xp.remainder(h0, 2.0)
    num = xp.sin(n * math.pi * h)
    lim = n * xp.cos(n * math.pi * h0) * sign_h0
    return xp.where(small, lim, num * sign_h0 / den)


def square(xp, hkl, hkl0, N):
    """Parallelepiped crystal: product of the grating functions of the axes with N > 1."""
    out = None
    for i in range(3):
        n = N[i]
        if _is_integral(n) and float(n) <= 1:
            continue
        f = sincg(xp, hkl[..., i], hkl0[..., i], n)
        out = f if out is None else out * f
    if out is None:
        return xp.ones_like(hkl[..., 0])
    return out


def sinc3(xp, x):
    """Transform of a sphere: 3 (sin x - x cos x) / x^3, 1 at x = 0."""
    small = x == 0
    xs = xp.where(small, xp.ones_like(x), x)
    return xp.where(small, xp.ones_like(x), 3.0 * (xp.sin(xs) / xs - xp.cos(xs)) / (xs * xs))


def round_(xp, hkl, hkl0, N, fudge):
    """Ellipsoidal crystal: N_a N_b N_c * 0.7236 * sinc3(pi * sqrt(fudge * sum((dh N)^2)))."""
    d = hkl - hkl0
    r2 = (d[..., 0] * N[0]) ** 2 + (d[..., 1] * N[1]) ** 2 + (d[..., 2] * N[2]) ** 2
    r2f = r2 * fudge
    safe = xp.where(r2f == 0, xp.ones_like(r2f), r2f)
    x = xp.where(r2f == 0, xp.zeros_like(r2f), math.pi * xp.sqrt(safe))
    return (N[0] * N[1] * N[2] * ROUND_VOLUME_FACTOR) * sinc3(xp, x)


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
