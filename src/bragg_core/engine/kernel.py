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
from typing import Any

from .._backend import is_scalar
from ..geometry.vectors import rotate_axis
from ..physics import lattice
from ..physics.detector_response import capture_fraction, solid_angle
from ..physics.polarization import kahn_from_projections, polarization_frame
from ..physics.structure_factors import interpolation_inside, nearest, tricubic
from ..units import R_E_SQR_M2
from .setup import Setup

DEFAULT_MEMORY_BUDGET = 16 * 2**20  # bytes of temporaries per tile (per thread)


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


@dataclass
class TileFrame:
    """What the per-tile geometry reads, cast once to the tile-geometry dtype.

    float64 runs keep float64; float32 runs evaluate the per-tile geometry in
    float32 as well (positions stay exact to ~1e-8 m, far below a sub-pixel,
    and the scattering vector to ~1e-7 relative), which keeps every step of a
    float32 image in single precision.
    """

    ctx: Any
    pix0: Any
    fdet: Any
    sdet: Any
    odet: Any
    beam: Any
    pixel_m: Any
    close_m: Any
    distance_m: Any
    layer_step_m: Any
    mu_per_m: Any
    incident_xyz: tuple
    wavelength_m: Any
    polar_frame_xyz: tuple
    kahn: Any


def tile_frame(setup: Setup) -> TileFrame:
    """The :class:`TileFrame` of a setup (working dtype if float32, else the geometry dtype)."""
    t = setup.ctx if setup.ctx.dtype_name == "float32" else setup.gctx
    dg = setup.detector
    A = t.asarray
    keep = lambda v: v if is_scalar(v) else A(v)  # noqa: E731
    inc = A(setup.sources.incident)
    b_in, e_in = polarization_frame(t.xp, inc, A(dg.polar))
    xyz = lambda v: (v[:, 0], v[:, 1], v[:, 2])  # noqa: E731
    return TileFrame(
        ctx=t, pix0=A(dg.pix0_m), fdet=A(dg.fdet), sdet=A(dg.sdet), odet=A(dg.odet), beam=A(dg.beam),
        pixel_m=A(dg.pixel_size_m), close_m=A(dg.close_distance_m), distance_m=A(dg.distance_m),
        layer_step_m=keep(setup.thick.step), mu_per_m=keep(setup.mu_per_m),
        incident_xyz=xyz(inc), wavelength_m=A(setup.sources.wavelength_m),
        polar_frame_xyz=(xyz(b_in), xyz(e_in)), kahn=keep(setup.kahn),
    )


def _components(v):
    """x, y, z of a (3,) or (..., 3) array, as arrays."""
    return v[..., 0], v[..., 1], v[..., 2]


def sub_pixel_positions(setup: Setup, f_idx, s_idx):
    """Sub-pixel positions (m) of the tile ``s_idx`` (R,) x ``f_idx`` (C,) as x, y, z arrays (P, T, S).

    P = R * C pixels in row order, T sensor layers, S = oversample^2 sub-pixels
    (row-major over sub-slow, sub-fast).  Built by broadcasting a per-row and a
    per-column part; the curved detector then bends the flat positions.
    """
    fr = setup.frame
    g = fr.ctx
    xp = g.xp
    os_ = setup.oversample
    sub = fr.pixel_m / os_
    j = g.arange(os_)
    R_, C_ = s_idx.shape[0], f_idx.shape[0]
    P = R_ * C_
    T, S = setup.thick.count, os_ * os_
    Fd = sub * (f_idx[:, None] * os_ + j[None, :]) + sub / 2.0            # (C, os): fast sub-pixels
    Sd = sub * (s_idx[:, None] * os_ + j[None, :]) + sub / 2.0            # (R, os): slow sub-pixels
    Fd = xp.reshape(xp.broadcast_to(Fd[:, None, :], (C_, os_, os_)), (1, C_, 1, S))
    Sd = xp.reshape(xp.broadcast_to(Sd[:, :, None], (R_, os_, os_)), (R_, 1, 1, S))
    Od = xp.reshape(g.arange(T) * fr.layer_step_m, (1, 1, T, 1))
    p0, f, s, o = (_components(v) for v in (fr.pix0, fr.fdet, fr.sdet, fr.odet))
    if T == 1:  # one layer: its offset is zero
        pos = [xp.reshape((p0[i] + Sd * s[i]) + Fd * f[i], (P, T, S)) for i in range(3)]
    else:
        pos = [xp.reshape((p0[i] + Sd * s[i]) + Fd * f[i] + Od * o[i], (P, T, S)) for i in range(3)]
    if setup.curved:
        # every pixel at the same distance: the flat y and z coordinates, divided
        # by the distance, are the angles about the slow and fast axes
        start = fr.distance_m * fr.beam
        flat = xp.stack(pos, axis=-1)
        tilted = rotate_axis(xp, start, fr.sdet, flat[..., 1] / fr.distance_m)
        pos = list(_components(rotate_axis(xp, tilted, fr.fdet, flat[..., 2] / fr.distance_m)))
    return pos


def _sub_pixel_geometry(setup: Setup, f_idx, s_idx, all_factors: bool):
    """Diffracted directions and per-sub-pixel factors of a tile, in the geometry dtype.

    Vectors are separate x, y, z arrays of shape (P, T, S) (structure of
    arrays).  Solid angle and capture fraction are returned for every path
    when ``all_factors``, otherwise only for the path the final scale uses
    (first sub-pixel; last layer), as (P,).  Returns ``(dx, dy, dz), omega,
    capture`` (capture None without a sensor thickness).
    """
    fr = setup.frame
    g = fr.ctx
    xp = g.xp
    T = setup.thick.count
    o = _components(fr.odet)
    pos = sub_pixel_positions(setup, f_idx, s_idx)
    R = xp.sqrt(pos[0] * pos[0] + pos[1] * pos[1] + pos[2] * pos[2])
    d = tuple(c / R for c in pos)
    R_sel = R if all_factors else R[:, 0, 0]
    omega = solid_angle(xp, R_sel, fr.pixel_m, fr.close_m, setup.point_pixel)
    cap = None
    if setup.thick.range > 0 or setup.oversample_thick:
        if all_factors:
            t = xp.reshape(g.arange(T), (1, T, 1))
            parallax = d[0] * o[0] + d[1] * o[1] + d[2] * o[2]
        else:
            t = float(T - 1)
            parallax = d[0][:, T - 1, 0] * o[0] + d[1][:, T - 1, 0] * o[1] + d[2][:, T - 1, 0] * o[2]
        cap = capture_fraction(xp, t, fr.layer_step_m, fr.mu_per_m, parallax)
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


def _miller(setup: Setup, scat, orient):
    """h, k, l for every orientation and path: three arrays (Q, ...).

    ``scat`` are the scattering-vector components (...) in the working dtype;
    ``orient`` is (Q, 3, 3): rows a, b, c of each orientation, in metres.
    Orientations are the outermost axis so that every elementwise operation
    runs over long contiguous inner loops.
    """
    xp = setup.ctx.xp
    shape = (int(orient.shape[0]),) + (1,) * scat[0].ndim
    coeff = lambda i, j: xp.reshape(orient[:, i, j], shape)  # noqa: E731
    return tuple(scat[0] * coeff(i, 0) + scat[1] * coeff(i, 1) + scat[2] * coeff(i, 2) for i in range(3))


def orientation_last(xp, x):
    """Move the leading orientation axis of a kernel array to the end."""
    return xp.permute_dims(x, tuple(range(1, x.ndim)) + (0,))


def _direct_grating(setup: Setup) -> bool:
    """Whether the square transform may skip the nearest-index offset.

    For odd N the grating function U_(N-1)(cos pi h) is even in cos, so the
    sign (-1)^h0 drops out and no h0 is needed; with no structure-factor grid
    nothing else needs h0 either.  Only in float64, where cos(pi h) loses
    nothing worth keeping; float32 always subtracts the nearest index first.
    """
    if setup.shape != "square" or setup.grid_w is not None or setup.ctx.dtype_name != "float64":
        return False
    if setup.ctx.name == "numpy":  # NumPy's float64 cosine is slow: the offset form uses a polynomial
        return False
    return all(lattice.is_unit_count(n) or (lattice.is_integral(n) and int(n) % 2 == 1
                                             and n <= lattice.CHEBYSHEV_MAX_N) for n in setup.N_w)


def _terms(setup: Setup, scat, orient):
    """|F_cell F_latt|^2 for every orientation and path (Q, ...), and F_latt."""
    xp = setup.ctx.xp
    h, k, l = _miller(setup, scat, orient)
    N = setup.N_w
    if _direct_grating(setup):
        Fl = None
        for x, n in ((h, N[0]), (k, N[1]), (l, N[2])):
            if not lattice.is_unit_count(n):
                f = lattice.chebyshev_u(xp, xp.cos(math.pi * x), int(n) - 1)
                Fl = f if Fl is None else Fl * f
        Fl = xp.ones_like(h) if Fl is None else Fl
        F = setup.default_F_w
        return (Fl * Fl) * (F * F), Fl
    h0, k0, l0 = (lattice.nearest_index(xp, x) for x in (h, k, l))
    if setup.shape == "square":
        Fl = None
        for x, x0, n in ((h, h0, N[0]), (k, k0, N[1]), (l, l0, N[2])):
            if lattice.is_unit_count(n):
                continue
            f = lattice.sincg(xp, x, x0, n)
            Fl = f if Fl is None else Fl * f
        if Fl is None:
            Fl = xp.ones_like(h)
        hkl = hkl0 = None
    else:
        hkl, hkl0 = xp.stack((h, k, l), axis=-1), xp.stack((h0, k0, l0), axis=-1)
        Fl = _lattice(setup, xp, hkl, hkl0, N)
    if setup.grid_w is None:
        F = setup.default_F_w
        return (Fl * Fl) * (F * F), Fl
    if hkl is None:
        hkl, hkl0 = xp.stack((h, k, l), axis=-1), xp.stack((h0, k0, l0), axis=-1)
    amp = _amplitudes(setup, xp, hkl, hkl0) * Fl
    return amp * amp, Fl


def render_tile(setup: Setup, f_idx, s_idx, q_block: int):
    """Pixel values (P,) in the working dtype for the tile ``s_idx`` x ``f_idx`` (row order)."""
    ctx, g = setup.ctx, setup.frame.ctx
    xp = ctx.xp
    P = s_idx.shape[0] * f_idx.shape[0]
    T, S, K = setup.thick.count, setup.oversample ** 2, setup.n_sources
    flagged = setup.oversample_omega or setup.oversample_polar or setup.oversample_thick
    d, omega, cap = _sub_pixel_geometry(setup, f_idx, s_idx, all_factors=flagged)
    fr = setup.frame
    if flagged:
        return _render_running(setup, d, omega, cap, P, T, S, K)
    # sources outermost: (K, P, T, S), long inner loops
    lam = xp.reshape(fr.wavelength_m, (K, 1, 1, 1))
    scat = tuple((c - xp.reshape(i, (K, 1, 1, 1))) / lam for c, i in zip(d, fr.incident_xyz))  # 1/m
    valid = None
    if setup.dmin_m > 0:
        stol2 = 0.25 * (scat[0] * scat[0] + scat[1] * scat[1] + scat[2] * scat[2])
        valid = ~(4.0 * setup.dmin_m ** 2 * stol2 > 1.0)  # dmin > 1 / (2 stol), stol > 0
    polar = None
    if setup.polarization_correction:
        if valid is not None:   # the first path dmin keeps: every path's value is needed
            dk = tuple(c[None, ...] for c in d)
            col = lambda v: tuple(xp.reshape(c, (K, 1, 1, 1)) for c in v)  # noqa: E731
            polar = _polarization(setup, dk, col(fr.incident_xyz),
                                  tuple(col(v) for v in fr.polar_frame_xyz))   # (K, P, T, S)
            polar = _first_kept(xp, _sources_last(xp, polar), _sources_last(xp, valid), P)
        else:                   # only the first path's
            d0 = tuple(c[:, 0, 0] for c in d)
            first = lambda v: tuple(c[0] for c in v)  # noqa: E731
            (bx, by, bz), (ex, ey, ez) = fr.polar_frame_xyz
            polar = _polarization(setup, d0, first(fr.incident_xyz),
                                  (first((bx, by, bz)), first((ex, ey, ez))))
    scat_w = tuple(ctx.asarray(c) for c in scat)
    Q = int(setup.orientations_w.shape[0])
    total = None
    for q0 in range(0, Q, q_block):  # blocks of orientations (only when memory demands)
        terms, _ = _terms(setup, scat_w, setup.orientations_w[q0:q0 + q_block, ...])
        part = terms[0, ...] if terms.shape[0] == 1 else xp.sum(terms, axis=0)
        total = part if total is None else total + part                 # (K, P, T, S)
    if valid is not None:
        total = xp.where(ctx.asarray(valid, dtype=xp.bool), total, xp.zeros_like(total))
    total = total[0, ...] if K == 1 else xp.sum(total, axis=0)         # (P, T, S)
    I = setup.I_bg_w + (xp.reshape(total, (P,)) if T * S == 1 else xp.sum(xp.reshape(total, (P, T * S)), axis=1))
    # cached factors: solid angle of the first sub-pixel, polarization of the
    # first path that was not cut by dmin, capture fraction of the last layer
    factor = omega
    if cap is not None:
        factor = factor * cap
    if polar is not None:
        factor = factor * polar
    return setup.scale_w * I * ctx.asarray(factor)


def _sources_last(xp, x):
    """(K, P, T, S) -> (P, T, S, K): the reference's path order (layer, sub-pixel, source)."""
    return xp.permute_dims(x, (1, 2, 3, 0))


def _polarization(setup: Setup, d, inc, frame):
    """Kahn factor for diffracted components ``d`` and incident/frame components (broadcasting)."""
    xp = setup.frame.ctx.xp
    kahn = setup.frame.kahn
    (bx, by, bz), (ex, ey, ez) = frame
    c2t = d[0] * inc[0] + d[1] * inc[1] + d[2] * inc[2]
    if is_scalar(kahn) and kahn == 0:
        return 0.5 * (1.0 + c2t * c2t)  # unpolarised: the azimuth drops out
    return kahn_from_projections(xp, c2t, d[0] * ex + d[1] * ey + d[2] * ez,
                                 d[0] * bx + d[1] * by + d[2] * bz, kahn)


def _first_kept(xp, values, valid, P):
    """values (P, T, S, K) at the first (t, s, k) that ``valid`` keeps; 0 where none is kept."""
    flat = xp.reshape(values, (P, -1))
    if valid is None:
        return flat[:, 0]
    v = xp.reshape(valid, (P, -1))
    first = v & (xp.cumulative_sum(xp.astype(v, xp.int32), axis=1) == 1)
    return xp.sum(xp.where(first, flat, xp.zeros_like(flat)), axis=1)


def _render_running(setup, d, omega, cap, P, T, S, K):
    """The reference's running-sum semantics under -oversample_omega/_polar/_thick.

    After every term the running sum is multiplied by the current factors, so
    a term is scaled by the product of the factors of itself and of every later
    term.  Within a (layer, sub-pixel, source) group the factor g is constant,
    giving g^c for c counted terms; across groups the products are formed from
    log-sums with an explicit count of zero factors.  Arrays here are in the
    reference's path order (P, T, S, K).
    """
    ctx, g = setup.ctx, setup.frame.ctx
    xp = ctx.xp
    fr = setup.frame
    shape = (P, T, S, K)
    scat = tuple((c[..., None] - i) / fr.wavelength_m for c, i in zip(d, fr.incident_xyz))
    scat_w = tuple(ctx.asarray(c) for c in scat)
    valid = polar = None
    if setup.dmin_m > 0:
        stol2 = 0.25 * (scat[0] * scat[0] + scat[1] * scat[1] + scat[2] * scat[2])
        valid = ~(4.0 * setup.dmin_m ** 2 * stol2 > 1.0)
    if setup.polarization_correction or setup.oversample_polar:
        polar = _polarization(setup, tuple(c[..., None] for c in d), fr.incident_xyz, fr.polar_frame_xyz)
    if cap is None:  # no sensor thickness: the factor is 1, or 0 when it is recomputed per path
        cap = xp.zeros_like(omega) if setup.oversample_thick else xp.ones_like(omega)
    if polar is None:
        polar = xp.ones(shape, dtype=g.dtype, device=g.device)
    if valid is None:
        valid = xp.ones(shape, dtype=xp.bool, device=g.device)
    gfac = xp.ones(shape, dtype=g.dtype, device=g.device)
    if setup.oversample_thick:
        gfac = gfac * cap[..., None]
    if setup.oversample_polar:
        gfac = gfac * polar
    if setup.oversample_omega:
        gfac = gfac * omega[..., None]
    G = P * T * S * K
    gw = ctx.asarray(xp.reshape(gfac, (G,)))
    vw = xp.reshape(ctx.asarray(valid, dtype=xp.bool), (G,))
    terms, Fl = _terms(setup, scat_w, setup.orientations_w)
    terms, Fl = orientation_last(xp, terms), orientation_last(xp, Fl)   # (P, T, S, K, Q)
    Q = int(terms.shape[-1])
    terms = xp.reshape(terms, (G, Q))
    Fl = xp.reshape(Fl, (G, Q))
    if setup.water_on:  # host decision (I_bg may be a traced array)
        counted = xp.ones(Fl.shape, dtype=xp.bool, device=ctx.device)
    else:
        counted = Fl != 0
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
    factor = xp.ones((P,), dtype=g.dtype, device=g.device)
    if not setup.oversample_thick:
        factor = factor * cap[:, T - 1, 0]
    if not setup.oversample_polar:
        pol = polar if setup.polarization_correction else xp.ones_like(polar)
        factor = factor * _first_kept(xp, pol, valid, P)
    if not setup.oversample_omega:
        factor = factor * omega[:, 0, 0]
    return setup.scale_w * I * ctx.asarray(factor)
