"""The per-pixel sum, broadcast over (pixels, layers, sub-pixels, sources, orientations).

One pixel's intensity is

    I = I_bg + sum over layers t, sub-pixels s, sources k, orientations q of
              |F_cell(h)|^2 |F_latt(h)|^2,      h = A_q . (d_ts - i_k) / lambda_k

and the pixel value is r_e^2 * fluence * I / steps times the cached capture
fraction, polarization and solid angle (``specs/physics.md``).  The only Python
loops are over tiles of pixels and, when one pixel's sampling is deeper than
the memory budget, over blocks of orientations; everything inside a tile is
array code of the chosen backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..geometry.vectors import dot, norm, rotate_axis
from ..physics import lattice
from ..physics.detector_response import capture_fraction, solid_angle
from ..physics.polarization import kahn_factor
from ..physics.structure_factors import interpolation_inside, nearest, tricubic
from ..units import R_E_SQR_M2
from .setup import Setup

DEFAULT_MEMORY_BUDGET = 64 * 2**20  # bytes of temporaries per tile


@dataclass
class TilePlan:
    pixels_per_tile: int
    orientations_per_block: int


def plan_tiles(setup: Setup, n_pixels: int, budget: int) -> TilePlan:
    """Choose tile and orientation-block sizes so temporaries stay within ``budget`` bytes."""
    item = 4 if setup.ctx.dtype_name == "float32" else 8
    T, S, K = setup.thick.count, setup.oversample ** 2, setup.n_sources
    Q = int(setup.orientations_m.shape[0])
    per_elem = (96 if setup.interpolate else 14) * item  # live temporaries per (path, orientation)
    per_path = 40 * 8                                   # per (pixel, layer, sub-pixel, source), float64
    flagged = setup.oversample_omega or setup.oversample_polar or setup.oversample_thick
    q_block = Q
    if not flagged:
        q_block = max(1, min(Q, budget // max(1, T * S * K * per_elem)))
    per_pixel = T * S * K * (q_block * per_elem + per_path)
    p = max(1, min(n_pixels, budget // max(1, per_pixel)))
    return TilePlan(pixels_per_tile=int(p), orientations_per_block=int(q_block))


def _sub_pixel_geometry(setup: Setup, f_idx, s_idx):
    """Positions and per-sub-pixel factors for a tile; all in the geometry dtype.

    Returns the diffracted unit vectors (P, T, S, 3), solid angles (P, T, S) and
    capture fractions (P, T, S).
    """
    g = setup.gctx
    xp = g.xp
    dg = setup.detector
    os_ = setup.oversample
    sub = dg.pixel_size_m / os_
    j = g.arange(os_)
    Fd = sub * (f_idx[:, None] * os_ + j[None, :]) + sub / 2.0            # (P, os): fast sub-pixels
    Sd = sub * (s_idx[:, None] * os_ + j[None, :]) + sub / 2.0            # (P, os): slow sub-pixels
    P = f_idx.shape[0]
    Fd = xp.reshape(xp.broadcast_to(Fd[:, None, :], (P, os_, os_)), (P, os_ * os_))
    Sd = xp.reshape(xp.broadcast_to(Sd[:, :, None], (P, os_, os_)), (P, os_ * os_))
    T = setup.thick.count
    Od = g.arange(T) * setup.thick_step_m                                 # (T,)
    pos = (dg.pix0_m + Fd[:, None, :, None] * dg.fdet + Sd[:, None, :, None] * dg.sdet
           + Od[None, :, None, None] * dg.odet)                           # (P, T, S, 3)
    if setup.curved:
        # every pixel at the same distance: the flat y and z coordinates, divided
        # by the distance, are the angles about the slow and fast axes
        start = dg.distance_m * dg.beam
        tilted = rotate_axis(xp, start, dg.sdet, pos[..., 1] / dg.distance_m)
        pos = rotate_axis(xp, tilted, dg.fdet, pos[..., 2] / dg.distance_m)
    R = norm(xp, pos)
    d = pos / R[..., None]
    omega = solid_angle(xp, R, dg.pixel_size_m, dg.close_distance_m, setup.point_pixel)
    if setup.thick.range > 0 or setup.oversample_thick:
        t = g.arange(T)[None, :, None]
        cap = capture_fraction(xp, t, setup.thick_step_m, setup.mu_per_m, dot(xp, d, dg.odet))
    else:
        cap = xp.ones_like(omega)
    return d, omega, cap


def _lattice(setup: Setup, xp, hkl, hkl0, N):
    shape = setup.shape
    if shape == "square":
        return lattice.square(xp, hkl, hkl0, N)
    if shape == "round":
        return lattice.round_(xp, hkl, hkl0, N, setup.fudge)
    rec = setup.ctx.asarray(setup.cell.reciprocal_per_A)
    r2 = lattice.reciprocal_distance_sqr(xp, hkl, hkl0, rec, N)
    if shape == "gauss":
        return lattice.gauss(xp, r2, N, setup.fudge)
    return lattice.tophat(xp, r2, N, setup.fudge)


def _amplitudes(setup: Setup, xp, hkl, hkl0):
    F_default = setup.default_F
    if setup.interpolate:
        inside = interpolation_inside(xp, setup.grid_w, hkl)
        Fi = tricubic(xp, setup.grid_w, hkl)
        Fn = nearest(xp, setup.grid_w, hkl0, F_default)
        return xp.where(inside, Fi, Fn)
    return nearest(xp, setup.grid_w, hkl0, F_default)


def _terms(setup: Setup, scatter_w, orient_w):
    """|F_cell F_latt|^2 for every path and orientation: (n_paths, n_orient)."""
    xp = setup.ctx.xp
    n, q = scatter_w.shape[0], orient_w.shape[0]
    hkl = xp.matmul(scatter_w, xp.permute_dims(xp.reshape(orient_w, (q * 3, 3)), (1, 0)))
    hkl = xp.reshape(hkl, (n, q, 3))
    hkl0 = lattice.nearest_index(xp, hkl)
    N = tuple(setup.ctx.asarray(v) if hasattr(v, "shape") else v for v in setup.N)
    Fl = _lattice(setup, xp, hkl, hkl0, N)
    Fc = _amplitudes(setup, xp, hkl, hkl0)
    amp = Fc * Fl
    return amp * amp, Fl


def render_tile(setup: Setup, f_idx, s_idx, q_block: int):
    """Pixel values (P,) in the working dtype for pixels at (f_idx, s_idx)."""
    ctx, g = setup.ctx, setup.gctx
    xp = ctx.xp
    P = f_idx.shape[0]
    T, S, K = setup.thick.count, setup.oversample ** 2, setup.n_sources
    d, omega, cap = _sub_pixel_geometry(setup, f_idx, s_idx)
    inc = setup.sources.incident
    lam = setup.sources.wavelength_m
    scat = (d[:, :, :, None, :] - inc) / lam[:, None]                     # (P, T, S, K, 3) in 1/m
    stol = 0.5 * norm(xp, scat)
    if setup.dmin_m > 0:
        valid = ~((stol > 0) & (setup.dmin_m > 0.5 / xp.where(stol > 0, stol, xp.ones_like(stol))))
    else:
        valid = xp.ones(stol.shape, dtype=xp.bool, device=g.device)
    polar_on = setup.polarization_correction or setup.oversample_polar
    if polar_on:
        polar = kahn_factor(xp, inc, d[:, :, :, None, :], setup.detector.polar, g.asarray(setup.kahn))
    else:
        polar = xp.ones(stol.shape, dtype=g.dtype, device=g.device)

    scat_w = ctx.asarray(xp.reshape(scat, (P * T * S * K, 3)))
    Q = int(setup.orientations_w.shape[0])
    flagged = setup.oversample_omega or setup.oversample_polar or setup.oversample_thick
    r2f = R_E_SQR_M2 * setup.fluence_w
    if not flagged:
        total = None
        for q0 in range(0, Q, q_block):  # blocks of orientations (only when memory demands)
            terms, _ = _terms(setup, scat_w, setup.orientations_w[q0:q0 + q_block, ...])
            part = xp.sum(terms, axis=1)
            total = part if total is None else total + part
        total = xp.reshape(total, (P, T, S, K))
        total = xp.where(ctx.asarray(valid, dtype=xp.bool), total, xp.zeros_like(total))
        I = setup.I_bg_w + xp.sum(xp.reshape(total, (P, T * S * K)), axis=1)
        # cached factors: solid angle of the first sub-pixel, polarization of the
        # first path that was not cut by dmin, capture fraction of the last layer
        omega_c = omega[:, 0, 0]
        cap_c = cap[:, T - 1, 0]
        if setup.polarization_correction:
            v = xp.reshape(valid, (P, T * S * K))
            first = v & (xp.cumulative_sum(xp.astype(v, xp.int32), axis=1) == 1)
            polar_c = xp.sum(xp.where(first, xp.reshape(polar, (P, T * S * K)), xp.zeros_like(xp.reshape(polar, (P, T * S * K)))), axis=1)
        else:
            polar_c = xp.ones_like(omega_c)
        factor = ctx.asarray(cap_c * polar_c * omega_c)
        return r2f * I / setup.steps * factor
    return _render_running(setup, scat_w, valid, omega, cap, polar, P, T, S, K, r2f)


def _render_running(setup, scat_w, valid, omega, cap, polar, P, T, S, K, r2f):
    """The reference's running-sum semantics under -oversample_omega/_polar/_thick.

    After every term the running sum is multiplied by the current factors, so
    a term is scaled by the product of the factors of itself and of every later
    term.  Within a (layer, sub-pixel, source) group the factor g is constant,
    giving g^c for c counted terms; across groups the products are formed from
    log-sums with an explicit count of zero factors.
    """
    ctx = setup.ctx
    xp = ctx.xp
    gfac = xp.ones(valid.shape, dtype=setup.gctx.dtype, device=setup.gctx.device)
    if setup.oversample_thick:
        gfac = gfac * cap[..., None]
    if setup.oversample_polar:
        gfac = gfac * polar
    if setup.oversample_omega:
        gfac = gfac * omega[..., None]
    G = P * T * S * K
    gw = ctx.asarray(xp.reshape(gfac, (G,)))
    vw = xp.reshape(ctx.asarray(valid, dtype=xp.bool), (G,))
    terms, Fl = _terms(setup, scat_w, setup.orientations_w)               # (G, Q)
    water = setup.water_on  # host decision (I_bg may be a traced array)
    counted = (Fl != 0) | water if not water else xp.ones(Fl.shape, dtype=xp.bool, device=ctx.device)
    counted = counted & vw[:, None]
    cnt = xp.astype(counted, ctx.dtype)
    # c_j: counted terms from j to the end of its group (inclusive)
    incl = xp.cumulative_sum(cnt, axis=1)
    c_from = incl[:, -1:] - incl + cnt
    contrib = xp.sum(xp.where(counted, terms * gw[:, None] ** c_from, xp.zeros_like(terms)), axis=1)
    Ggrp = gw ** incl[:, -1]                                              # whole-group multiplier
    contrib = xp.reshape(contrib, (P, T * S * K))
    Ggrp = xp.reshape(Ggrp, (P, T * S * K))
    zero = Ggrp == 0
    logG = xp.log(xp.where(zero, xp.ones_like(Ggrp), Ggrp))
    zc = xp.astype(zero, ctx.dtype)
    # product over strictly later groups
    later_log = xp.sum(logG, axis=1, keepdims=True) - xp.cumulative_sum(logG, axis=1)
    later_zero = xp.sum(zc, axis=1, keepdims=True) - xp.cumulative_sum(zc, axis=1)
    later = xp.where(later_zero > 0, xp.zeros_like(later_log), xp.exp(later_log))
    all_log = xp.sum(logG, axis=1)
    all_prod = xp.where(xp.sum(zc, axis=1) > 0, xp.zeros_like(all_log), xp.exp(all_log))
    I = setup.I_bg_w * all_prod + xp.sum(contrib * later, axis=1)
    factor = ctx.asarray(xp.ones((P,), dtype=setup.gctx.dtype, device=setup.gctx.device))
    if not setup.oversample_thick:
        factor = factor * ctx.asarray(cap[:, T - 1, 0])
    if not setup.oversample_polar:
        pol = polar if setup.polarization_correction else xp.ones_like(polar)
        v = xp.reshape(valid, (P, T * S * K))
        first = v & (xp.cumulative_sum(xp.astype(v, xp.int32), axis=1) == 1)
        pc = xp.sum(xp.where(first, xp.reshape(pol, (P, -1)), xp.zeros_like(xp.reshape(pol, (P, -1)))), axis=1)
        factor = factor * ctx.asarray(pc)
    if not setup.oversample_omega:
        factor = factor * ctx.asarray(omega[:, 0, 0])
    return r2f * I / setup.steps * factor
