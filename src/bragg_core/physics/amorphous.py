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
The search is arithmetic where the table allows: a host guide over cells of
half the smallest row spacing gives the row count at the cell's start, and
two comparisons with the neighbouring rows correct it (a cell holds at most
one row, and a rounding of the cell index is off by at most one cell), so
the row found is exactly the one a binary search finds.

Per pixel the geometry is formed from 1/R only: on a flat detector every
projection u . pos of the sub-pixel position (pos = pix0 + S sdet + F fdet)
is an outer sum of a term in S and one in F, and so is R^2 (sdet and fdet
are orthogonal); cos 2theta = (i . pos)/R, s = |d - i| / (2 lambda) =
sqrt(1 + |i|^2 - 2 cos 2theta) / (2 lambda), the Kahn factor
(1 + cos^2 2theta - K ((e . pos)^2 - (b . pos)^2) / R^2) / 2 (the azimuth's
sin^2 2theta cancels against its denominator) and the solid angle
p^2 close / R^3.

A sensor of finite thickness captures 1 - exp(-mu t / cos) of each ray (no
parallax).  Geometry (positions, directions, s, F) is evaluated in float64
where the backend has it; the image is returned in the working dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._backend import take_rows
from ..geometry.vectors import rotate_axis
from ..io.stol import StolTable
from ..units import AVOGADRO, R_E_SQR_M2
from .polarization import is_unpolarised, polarization_frame

__all__ = ["molecule_count", "structure_factor", "interpolation_coefficients", "amorphous_tile", "scale_factor",
           "Lookup", "row_lookup"]


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
        go_right = take_rows(xp, table, xp.clip(mid, 0, n - 1)) <= x
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


#: the largest guide (cells) the arithmetic row search builds on the host; beyond, a binary search
MAX_GUIDE = 1 << 22


class Lookup:
    """Host tables of a structure-factor table: coefficients and, where the rows allow, the search guide."""

    def __init__(self, table: StolTable):
        x = np.asarray(table.stol_per_m, dtype=np.float64)
        self.x = x
        self.coef = interpolation_coefficients(table)
        self.origin = np.concatenate([x[:1], x])           # s_i of the row serving each count
        self.guide = None
        d = np.diff(x)
        if x.size >= 2 and np.all(d > 0):
            h = float(d.min()) / 2.0
            cells = int(math.ceil((x[-1] - x[0]) / h)) + 1
            if cells <= MAX_GUIDE:
                starts = x[0] + h * np.arange(cells)
                guide = np.searchsorted(x, starts, side="right")  # rows <= the cell's start (>= 1)
                above = np.concatenate([x, [np.inf]])
                self.x0, self.inv_h, self.cells = float(x[0]), 1.0 / h, cells
                self.guide = guide.astype(np.int64)
                self.next_row = above[guide]                # the first row above the start
                self.this_row = x[guide - 1]                # the last row at or below it
        self._arrays: dict = {}

    def arrays(self, g):
        key = (id(g.xp), str(g.device), str(g.dtype))
        got = self._arrays.get(key)
        if got is None:
            A = g.asarray
            got = dict(x=A(self.x), origin=A(self.origin), c=[A(self.coef[:, k]) for k in range(4)])
            if self.guide is not None:
                got.update(guide=A(self.guide, dtype=g.xp.int64), next_row=A(self.next_row),
                           this_row=A(self.this_row))
            if len(self._arrays) < 8:
                self._arrays[key] = got
        return got


def row_lookup(xp, lk: Lookup, arrs, s):
    """Number of table rows <= s (as a binary search finds it), int64, same shape as ``s`` (1-D)."""
    if lk.guide is None:
        return xp.astype(_searchsorted_right(xp, arrs["x"], s), xp.int64)
    pos = xp.floor((s - lk.x0) * lk.inv_h)
    pos = xp.where(pos == pos, pos, xp.zeros_like(pos))   # a NaN argument reads row 0 (and stays NaN), never
    cell = xp.astype(xp.clip(pos, 0.0, float(lk.cells - 1)), xp.int64)   # an index out of the guide
    g = take_rows(xp, arrs["guide"], cell)
    up = xp.astype(s >= take_rows(xp, arrs["next_row"], cell), xp.int64)
    down = xp.astype(s < take_rows(xp, arrs["this_row"], cell), xp.int64)
    return xp.clip(g + up - down, 0, int(lk.x.size))   # s = +inf: all rows (the last cell's sentinel is inf)


def structure_factor(xp, table: StolTable, stol_per_m, g, lookup: Lookup | None = None):
    """F(s) of the four-row Lagrange interpolation on the table (arrays of the geometry context ``g``);
    ``lookup``: the table's :class:`Lookup`, when the caller keeps one."""
    lk = lookup if lookup is not None else Lookup(table)
    arrs = lk.arrays(g)
    shape = stol_per_m.shape
    s = xp.reshape(stol_per_m, (-1,))
    row = row_lookup(xp, lk, arrs, s)                      # i + 1 for s_i <= s < s_(i+1)
    t = s - take_rows(xp, arrs["origin"], row)
    C = arrs["c"]
    F = take_rows(xp, C[3], row)
    for k in (2, 1, 0):
        F = F * t + take_rows(xp, C[k], row)
    return xp.reshape(F, shape)


def _dot3(u, v):
    return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]


def amorphous_tile(g, dg, sources, table: StolTable, rows, cols, *, oversample: int, kahn: Any,
                   polarization: bool, point_pixel: bool, curved: bool, capture: Any = None,
                   lookup: Lookup | None = None, sub_rows: tuple[int, int] | None = None):
    """sum over sub-pixels and sources of sign(F) F^2 P Omega for the pixels ``rows`` x ``cols``.

    ``sub_rows`` = (j0, j1): only the sub-pixel rows j0..j1-1 of each pixel
    (slow sub-sample index; all of them by default), so that a caller can
    bound the temporaries of a huge oversampling by summing parts.

    ``rows``/``cols`` are integer index arrays (slow, fast) of the geometry
    context ``g``; ``dg`` a :class:`~bragg_core.geometry.detector.DetectorGeometry`,
    ``sources`` the :class:`~bragg_core.geometry.sources.Sources`.  ``capture``
    is None or ``(thickness_m, mu_per_m)`` for the sensor's capture fraction.
    Returns an array (len(rows), len(cols)) in float64 (where available), not yet
    divided by the number of steps.
    """
    from .._backend import host_scalar

    xp = g.xp
    os_ = int(oversample)
    px = dg.pixel_size_m
    sub = px / os_
    j = g.asarray(np.arange(os_, dtype=np.float64))
    js = j if sub_rows is None else g.asarray(np.arange(*sub_rows, dtype=np.float64))
    r = xp.astype(rows, g.dtype)
    c = xp.astype(cols, g.dtype)
    Fd = sub * (c[:, None] * os_ + j[None, :]) + sub / 2.0    # (C, o)
    Sd = sub * (r[:, None] * os_ + js[None, :]) + sub / 2.0   # (R, o or j1 - j0)
    p0, sv, fv = dg.pix0_m, dg.sdet, dg.fdet
    # axes: (row, sub-row, column, sub-column) for the geometry, and a last axis of sources where a
    # projection is taken on a vector per source ((K,) components)
    if curved:
        Fd4, Sd4 = Fd[None, None, :, :], Sd[:, :, None, None]
        pos = [p0[i] + Sd4 * sv[i] + Fd4 * fv[i] for i in range(3)]   # (R, o_slow, C, o_fast)
        start = dg.distance_m * dg.beam
        tilted = rotate_axis(xp, start, sv, pos[1] / dg.distance_m)
        bent = rotate_axis(xp, tilted, fv, pos[2] / dg.distance_m)
        pos = [bent[..., i] for i in range(3)]

        def proj(u):  # u: three scalars, or three (K,) arrays (one vector per source)
            if hasattr(u[0], "shape") and len(u[0].shape):
                return _dot3([q[..., None] for q in pos], u)
            return _dot3(pos, u)

        R2 = _dot3(pos, pos)
    else:
        def proj(u):  # u . pos: a term of the slow and one of the fast position, added as an outer sum
            per_source = hasattr(u[0], "shape") and len(u[0].shape)
            S_, F_ = (Sd[..., None], Fd[..., None]) if per_source else (Sd, Fd)
            a = _dot3(u, p0) + S_ * _dot3(u, sv)
            return a[:, :, None, None, ...] + (F_ * _dot3(u, fv))[None, None, ...]

        a = _dot3(p0, p0) + Sd * (2.0 * _dot3(p0, sv) + Sd * _dot3(sv, sv))
        b = Fd * (2.0 * _dot3(p0, fv) + Fd * _dot3(fv, fv))
        R2 = a[:, :, None, None] + b[None, None, :, :]
        sf = _dot3(sv, fv)
        sf_h = host_scalar(sf)
        if sf_h is None or abs(sf_h) > 1e-12:  # axes not orthogonal (never for a built detector)
            R2 = R2 + (2.0 * sf) * (Sd[:, :, None, None] * Fd[None, None, :, :])
    inv_R2 = 1.0 / R2
    inv_R = xp.sqrt(inv_R2)
    if point_pixel:
        omega = inv_R2
    else:
        omega = ((px * px) * dg.close_distance_m) * (inv_R2 * inv_R)
    if capture is not None:
        thick_m, mu = capture
        cos_o = xp.abs(proj(dg.odet) * inv_R)
        omega = omega * (1.0 - xp.exp(-thick_m * mu / cos_o))
    inc = sources.incident                                   # (K, 3)
    lam = sources.wavelength_m                               # (K,)
    lk = lookup if lookup is not None else Lookup(table)
    plain = is_unpolarised(kahn) or not polarization
    inv_R_k = inv_R[..., None]
    ik = [inc[:, i] for i in range(3)]
    c2t = proj(ik) * inv_R_k                                  # (R, o, C, o, K)
    half_q2 = xp.clip((1.0 + _dot3(ik, ik)) - 2.0 * c2t, min=0.0)   # |d - i|^2
    stol = (0.5 / lam) * xp.sqrt(half_q2)
    F = structure_factor(xp, table, stol, g, lookup=lk)
    term = F * xp.abs(F)                                     # sign(F) F^2
    if polarization:
        if plain:
            pol = 0.5 + 0.5 * (c2t * c2t)
        else:
            b_in, e_in = polarization_frame(xp, inc, dg.polar)
            pe = proj([e_in[:, i] for i in range(3)])
            pb = proj([b_in[:, i] for i in range(3)])
            pol = 0.5 * ((1.0 + c2t * c2t) - kahn * ((pe * pe - pb * pb) * inv_R2[..., None]))
        term = term * pol
    total = (term[..., 0] if term.shape[-1] == 1 else xp.sum(term, axis=-1)) * omega   # over sources
    if total.shape[1] == 1 and total.shape[3] == 1:
        return xp.reshape(total, (total.shape[0], total.shape[2]))
    return xp.sum(xp.sum(total, axis=3), axis=1)            # over sub-fast, sub-slow


def scale_factor(fluence, molecules, steps: int):
    """r_e^2 * fluence * molecules / steps (photons per unit of sum F^2 P Omega)."""
    return R_E_SQR_M2 * fluence * molecules / steps
