"""A refinement-grade smooth model of |F_cell F_latt|^2 (``Crystal.smooth``; off by default).

The reference's model is exact to the reference but not smooth in h: the
Gaussian, round and top-hat shapes are measured from the *nearest* lattice
point, which jumps at half-integer h; the top-hat has a hard edge; the
structure factor of the nearest reflection jumps there too.  Finite steps of
0.01 A or 0.01 mm then straddle those jumps and disagree with the derivative.
The smooth model, a documented deviation from the reference, removes them:

* shape: F_latt^2 is summed over the 27 lattice points nearest to h (the
  nearest one and its neighbours), each with its own shape function, so no
  point drops out where it matters (a neighbour 1.5 indices away contributes
  below double precision for the Gaussian; well below the signal for round
  shapes with N >= 5);
* top-hat: the edge at r*^2 fudge = 0.3969 becomes a tanh step of width
  ``TOPHAT_EDGE`` in r*^2 fudge;
* structure factors: |F|^2 is blended over the 8 reflections around h with
  weights cos^2(pi t / 2) and sin^2(pi t / 2) per axis (t the fractional part
  of h): a partition of unity with zero slope at every reflection, so |F|^2
  is continuous with a continuous derivative and equals |F(hkl)|^2 at integer
  h;
* the square shape is smooth already and is left as it is.
"""

from __future__ import annotations

import math

import numpy as np

from .lattice import gauss, reciprocal_distance_sqr, round_
from .structure_factors import nearest

TOPHAT_EDGE = 0.1
_NEIGHBOURS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=np.float64)
_CORNERS = np.array([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)


def soft_tophat(xp, rad_star_sqr, N, fudge):
    """N_a N_b N_c (1 - tanh((r*^2 fudge - 0.3969) / TOPHAT_EDGE)) / 2: the top-hat with a smooth edge."""
    step = 0.5 * (1.0 - xp.tanh((rad_star_sqr * fudge - 0.3969) / TOPHAT_EDGE))
    return (N[0] * N[1] * N[2]) * step


def shape_sqr_sum(xp, shape: str, hkl, hkl0, N, fudge, reciprocal_per_A, asarray):
    """Sum over the 27 lattice points nearest h of F_latt(h - n)^2 (shapes round, gauss, tophat).

    ``hkl``/``hkl0`` are (..., 3); ``asarray`` makes arrays of the working context.
    """
    n = hkl0[..., None, :] + asarray(_NEIGHBOURS)          # (..., 27, 3)
    h = hkl[..., None, :]
    if shape == "round":
        f = round_(xp, h, n, N, fudge)
    else:
        r2 = reciprocal_distance_sqr(xp, h, n, reciprocal_per_A, N)
        f = gauss(xp, r2, N, fudge) if shape == "gauss" else soft_tophat(xp, r2, N, fudge)
    return xp.sum(f * f, axis=-1)


def amplitude_sqr_blend(xp, grid, hkl, default_F, asarray):
    """|F|^2 blended over the 8 reflections around h with cos^2 / sin^2 weights per axis (C1, exact at h integer)."""
    base = xp.floor(hkl)
    t = hkl - base
    c = xp.cos(0.5 * math.pi * t)
    w0, w1 = c * c, 1.0 - c * c                                 # (..., 3) weights of floor and ceil
    corners = asarray(_CORNERS)                                 # (8, 3)
    idx = base[..., None, :] + corners                          # (..., 8, 3)
    F = nearest(xp, grid, idx, default_F)                       # (..., 8)
    w = w0[..., None, :] * (1.0 - corners) + w1[..., None, :] * corners
    weight = w[..., 0] * w[..., 1] * w[..., 2]
    return xp.sum(weight * (F * F), axis=-1)


__all__ = ["TOPHAT_EDGE", "soft_tophat", "shape_sqr_sum", "amplitude_sqr_blend"]
