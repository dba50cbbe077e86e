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
The cubic of each table interval is expanded once, on the host, into
coefficients in s - s_i; a pixel then costs one search and one Horner step.

A sensor of finite thickness captures 1 - exp(-mu t / cos) of each ray (no
parallax).  Geometry (positions, directions, s, F) is evaluated in float64
where the backend has it; the image is returned in the working dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geometry.vectors import rotate_axis
from ..io.stol import StolTable
from ..units import AVOGADRO, R_E_SQR_M2
from .polarization import kahn_from_projections, polarization_frame

__all__ = ["molecule_count", "structure_factor", "interpolation_coefficients", "amorphous_tile", "scale_factor"]


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
    from .._backend import device_of

    return device_of(x)


def interpolation_coefficients(table: StolTable) -> np.ndarray:
    """Per table row i, the cubic through rows i-1..i+2 as coefficients in t = s - s_i (host, (n, 4)).

    Row i serves the s with s_i <= s < s_(i+1) (i = -1: below the first row).
    Rows beyond the table's ends are left out of the interpolation (see the
    module docstring), so the end intervals use two or three nodes.
    """
    x = table.stol_per_m
    y = table.F
    n = x.size
    i = np.arange(-1, n)                                   # interval of each output row
    idx = i[:, None] + np.arange(-1, 3)[None, :]           # its four nodes (n+1, 4)
    ok = (idx >= 0) & (idx < n)
    safe = np.clip(idx, 0, n - 1)
    tau = x[safe] - x[np.clip(i, 0, n - 1)][:, None]       # node positions in t = s - s_i
    coef = np.zeros((n + 1, 4))
    for j in range(4):  # Lagrange basis of node j, built factor by factor (vectorised over intervals)
        basis = np.zeros((n + 1, 4))
        basis[:, 0] = 1.0
        for m in range(4):
            if m == j:
                continue
            use = (ok[:, j] & ok[:, m])[:, None]
            den = np.where(use[:, 0], tau[:, j] - tau[:, m], 1.0)[:, None]
            shifted = np.concatenate([np.zeros((n + 1, 1)), basis[:, :3]], axis=1)
            basis = np.where(use, (shifted - tau[:, m][:, None] * basis) / den, basis)
        coef += np.where(ok[:, j][:, None], y[safe[:, j]][:, None] * basis, 0.0)
    return coef


def structure_factor(xp, table: StolTable, stol_per_m, g, coef=None):
    """F(s) of the four-row Lagrange interpolation on the table (arrays of the geometry context ``g``)."""
    if coef is None:
        coef = interpolation_coefficients(table)
    shape = stol_per_m.shape
    s = xp.reshape(stol_per_m, (-1,))
    row = _searchsorted_right(xp, g.asarray(table.stol_per_m), s)   # i + 1 for s_i <= s < s_(i+1)
    row = xp.astype(row, xp.int64)
    origin = g.asarray(np.concatenate([table.stol_per_m[:1], table.stol_per_m]))
    t = s - xp.take(origin, row, axis=0)
    C = g.asarray(coef)
    F = xp.take(C[:, 3], row, axis=0)
    for k in (2, 1, 0):
        F = F * t + xp.take(C[:, k], row, axis=0)
    return xp.reshape(F, shape)


def amorphous_tile(g, dg, sources, table: StolTable, rows, cols, *, oversample: int, kahn: Any,
                   polarization: bool, point_pixel: bool, curved: bool, capture: Any = None, coef=None):
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
    Fd = (sub * (c[:, None] * os_ + j[None, :]) + sub / 2.0)[None, None, :, :]   # (1, 1, C, o)
    Sd = (sub * (r[:, None] * os_ + j[None, :]) + sub / 2.0)[:, :, None, None]   # (R, o, 1, 1)
    # positions as x, y, z arrays (R, o_slow, C, o_fast)
    pos = [dg.pix0_m[i] + Sd * dg.sdet[i] + Fd * dg.fdet[i] for i in range(3)]
    if curved:
        start = dg.distance_m * dg.beam
        tilted = rotate_axis(xp, start, dg.sdet, pos[1] / dg.distance_m)
        bent = rotate_axis(xp, tilted, dg.fdet, pos[2] / dg.distance_m)
        pos = [bent[..., i] for i in range(3)]
    R2 = pos[0] * pos[0] + pos[1] * pos[1] + pos[2] * pos[2]
    R = xp.sqrt(R2)
    d = [p / R for p in pos]
    if point_pixel:
        omega = 1.0 / R2
    else:
        omega = (px * px) * dg.close_distance_m / (R2 * R)
    if capture is not None:
        thick_m, mu = capture
        cos_o = xp.abs(d[0] * dg.odet[0] + d[1] * dg.odet[1] + d[2] * dg.odet[2])
        omega = omega * (1.0 - xp.exp(-thick_m * mu / cos_o))
    inc = sources.incident                                   # (K, 3)
    lam = sources.wavelength_m                               # (K,)
    K = int(inc.shape[0])
    if coef is None:
        coef = interpolation_coefficients(table)
    if polarization:
        b_in, e_in = polarization_frame(xp, inc, dg.polar)
    total = None
    for k in range(K):  # sources (a handful); pixels and sub-pixels stay vectorised
        q = [(d[i] - inc[k, i]) / lam[k] for i in range(3)]
        stol = 0.5 * xp.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
        F = structure_factor(xp, table, stol, g, coef)
        term = xp.where(F < 0, -(F * F), F * F)
        if polarization:
            c2t = d[0] * inc[k, 0] + d[1] * inc[k, 1] + d[2] * inc[k, 2]
            e_out = d[0] * e_in[k, 0] + d[1] * e_in[k, 1] + d[2] * e_in[k, 2]
            b_out = d[0] * b_in[k, 0] + d[1] * b_in[k, 1] + d[2] * b_in[k, 2]
            term = term * kahn_from_projections(xp, c2t, e_out, b_out, kahn)
        total = term if total is None else total + term
    total = total * omega
    return xp.sum(xp.sum(total, axis=3), axis=1)            # over sub-fast, sub-slow


def scale_factor(fluence, molecules, steps: int):
    """r_e^2 * fluence * molecules / steps (photons per unit of sum F^2 P Omega)."""
    return R_E_SQR_M2 * fluence * molecules / steps
