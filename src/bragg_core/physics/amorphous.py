"""Scattering from amorphous material (water, air, ice, oil...) in the beam.

For every sub-pixel and source the scattering vector gives
s = sin(theta)/lambda = |d - i| / (2 lambda) (d, i unit vectors towards the
pixel and along the incident beam), the structure factor F(s) of one molecule
is interpolated from a table, and the pixel collects

    I = r_e^2 * fluence * n_molecules / steps * sum_(sub-pixels, sources) sign(F) F^2 P Omega

with P the Kahn polarization factor of that source and sub-pixel, Omega =
p^2 / R^2 * (close distance / R) the solid angle of the whole pixel seen from
the sub-pixel (1/R^2 for point pixels) and steps = sources x oversample^2.
n_molecules = thickness x width x height x density x N_A / MW, where width and
height are clipped to the beam size.  F comes from the four table rows around
s by Lagrange (cubic) interpolation; beyond the table, the nodes outside are
dropped (the reference places them at +-1e98, which has the same effect to
float64 rounding), so the end segments extrapolate from the last given rows.

A sensor of finite thickness captures 1 - exp(-mu t / cos) of each ray (no
parallax).  Geometry (positions, directions, s, F) is evaluated in float64
where the backend has it; the image is returned in the working dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geometry.vectors import dot, rotate_axis
from ..io.stol import StolTable
from ..units import AVOGADRO, R_E_SQR_M2
from .polarization import kahn_factor

__all__ = ["molecule_count", "structure_factor", "amorphous_tile"]


def molecule_count(xp, thickness_m, width_m, height_m, density_g_m3, molecular_weight, beam_size_m):
    """Molecules in the illuminated volume: the width and height are clipped to the beam size."""
    if beam_size_m is not None:
        width_m = xp.minimum(width_m, beam_size_m)
        height_m = xp.minimum(height_m, beam_size_m)
    return thickness_m * width_m * height_m * density_g_m3 * AVOGADRO / molecular_weight


def _searchsorted_right(xp, table, x):
    """Number of table entries <= x (table sorted ascending); bisection where the namespace lacks searchsorted."""
    fn = getattr(xp, "searchsorted", None)
    if fn is not None:
        return fn(table, x, side="right")
    n = table.shape[0]
    lo = xp.zeros(x.shape, dtype=xp.int64, device=_device(x))
    hi = lo + n
    for _ in range(max(1, math.ceil(math.log2(n + 1)))):  # bisection steps, not pixels
        mid = (lo + hi) // 2
        go_right = xp.take(table, xp.clip(mid, 0, n - 1), axis=0) <= x
        lo = xp.where(go_right & (mid < hi), mid + 1, lo)
        hi = xp.where(go_right, hi, mid)
    return lo


def _device(x):
    from .._backend import _compat

    return _compat().device(x)


def structure_factor(xp, table: StolTable, stol_per_m, g):
    """F(s) by four-point Lagrange interpolation on the table (arrays of the geometry context ``g``)."""
    n = int(table.stol_per_m.shape[0])
    pad_x = np.concatenate([[0.0, 0.0], table.stol_per_m, [0.0, 0.0]])
    pad_y = np.concatenate([[table.F_low] * 2, table.F, [table.F_high] * 2])
    pad_ok = np.concatenate([[0.0, 0.0], np.ones(n), [0.0, 0.0]])
    X, Y, OK = (g.asarray(a) for a in (pad_x, pad_y, pad_ok))
    shape = stol_per_m.shape
    s = xp.reshape(stol_per_m, (-1,))
    nearest = _searchsorted_right(xp, g.asarray(table.stol_per_m), s) + 1  # padded index of the row <= s
    nearest = xp.clip(xp.astype(nearest, xp.int64), 1, n + 1)
    idx = [nearest + (k - 1) for k in range(4)]
    xs = [xp.take(X, i, axis=0) for i in idx]
    ys = [xp.take(Y, i, axis=0) for i in idx]
    ok = [xp.take(OK, i, axis=0) > 0.5 for i in idx]
    F = xp.zeros_like(s)
    for j in range(4):
        w = xp.ones_like(s)
        for m in range(4):
            if m == j:
                continue
            both = ok[j] & ok[m]
            den = xp.where(both, xs[j] - xs[m], xp.ones_like(s))
            w = w * xp.where(both, (s - xs[m]) / den, xp.ones_like(s))
        F = F + xp.where(ok[j], w * ys[j], xp.zeros_like(s))
    return xp.reshape(F, shape)


def amorphous_tile(g, dg, sources, table: StolTable, rows, cols, *, oversample: int, kahn: Any,
                   polarization: bool, point_pixel: bool, curved: bool, capture: Any = None):
    """sum over sub-pixels and sources of sign(F) F^2 P Omega for the pixels ``rows`` x ``cols``.

    ``rows``/``cols`` are integer index arrays (slow, fast) of the geometry
    context ``g``; ``dg`` a :class:`~bragg_core.geometry.detector.DetectorGeometry`,
    ``sources`` the :class:`~bragg_core.geometry.sources.Sources`.  ``capture``
    is None or ``(thickness_m, mu_per_m)`` for the sensor's capture fraction.
    Returns an array (len(rows), len(cols)) in float64 (where available), not yet
    divided by the number of steps.
    """
    xp = g.xp
    os_ = int(oversample)
    px = dg.pixel_size_m
    sub = px / os_
    j = g.asarray(np.arange(os_, dtype=np.float64))
    r = xp.astype(rows, g.dtype)
    c = xp.astype(cols, g.dtype)
    Fd = sub * (c[:, None] * os_ + j[None, :]) + sub / 2.0   # (C, o)
    Sd = sub * (r[:, None] * os_ + j[None, :]) + sub / 2.0   # (R, o)
    # positions (R, o_s, C, o_f, 3)
    pos = (dg.pix0_m + Sd[:, :, None, None, None] * dg.sdet + Fd[None, None, :, :, None] * dg.fdet)
    if curved:
        start = dg.distance_m * dg.beam
        tilted = rotate_axis(xp, start, dg.sdet, pos[..., 1] / dg.distance_m)
        pos = rotate_axis(xp, tilted, dg.fdet, pos[..., 2] / dg.distance_m)
    R = xp.sqrt(dot(xp, pos, pos))                          # (R, o, C, o)
    d = pos / R[..., None]
    if point_pixel:
        omega = 1.0 / (R * R)
    else:
        omega = px * px / (R * R) * dg.close_distance_m / R
    if capture is not None:
        thick_m, mu = capture
        cos_o = xp.abs(dot(xp, d, dg.odet))
        omega = omega * (1.0 - xp.exp(-thick_m * mu / cos_o))
    inc = sources.incident                                   # (K, 3)
    lam = sources.wavelength_m                               # (K,)
    K = int(inc.shape[0])
    d_k = d[..., None, :]                                    # (R, o, C, o, 1, 3)
    q = (d_k - inc) / lam[:, None]
    stol = 0.5 * xp.sqrt(dot(xp, q, q))                      # (R, o, C, o, K)
    F = structure_factor(xp, table, stol, g)
    term = xp.where(F < 0, -(F * F), F * F)
    if polarization:
        term = term * kahn_factor(xp, inc, d_k, dg.polar, kahn)
    total = xp.sum(term, axis=-1) * omega if K > 1 else term[..., 0] * omega
    total = xp.sum(xp.sum(total, axis=3), axis=1)            # over sub-fast, sub-slow
    return total


def scale_factor(fluence, molecules, steps: int):
    """r_e^2 * fluence * molecules / steps (photons per unit of sum F^2 P Omega)."""
    return R_E_SQR_M2 * fluence * molecules / steps
