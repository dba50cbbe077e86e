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

import numpy as np

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
    incident_g: Any = None      # (K, 3) incident directions, geometry dtype
    polar_be_g: Any = None      # (K, 2, 3) polarization B and E axes, geometry dtype
    flat: Any = None      # FlatFrame when the detector is flat with an orthonormal frame, else None


@dataclass
class FlatFrame:
    """A flat detector in its own orthonormal frame, in the geometry dtype.

    A sub-pixel at slow offset y, fast offset x and layer offset z sits at
    y sdet + x fdet + z odet with y = y0 + slow, x = x0 + fast, z = z0 + layer
    (y0, x0, z0 the coordinates of pix0 in the frame).  Any projection v . pos
    is then a per-row part plus a per-column part (plus a per-layer part), and
    so is |pos|^2, the three axes being orthonormal: the kernel never forms
    the positions themselves.
    """

    sdet: Any
    fdet: Any
    odet: Any
    y0: Any
    x0: Any
    z0: Any
    pixel_m: Any
    layer_step_m: Any


_ORTHONORMAL_TOL = 1e-12


def flat_frame(setup: Setup):
    """The :class:`FlatFrame` of a setup, or None (curved detector, a frame that is not orthonormal,
    or values that cannot be read on the host, such as JAX tracers)."""
    if setup.curved:
        return None
    from .._backend import to_numpy

    dg = setup.detector
    try:
        M = np.stack([np.asarray(to_numpy(v), dtype=np.float64).reshape(3) for v in (dg.sdet, dg.fdet, dg.odet)])
    except Exception:  # a traced value: no host copy
        return None
    if not np.all(np.isfinite(M)) or np.max(np.abs(M @ M.T - np.eye(3))) > _ORTHONORMAL_TOL:
        return None
    g = setup.gctx
    A = g.asarray
    s, f, o, p0 = A(dg.sdet), A(dg.fdet), A(dg.odet), A(dg.pix0_m)
    xp = g.xp
    step = setup.thick.step
    return FlatFrame(sdet=s, fdet=f, odet=o, y0=xp.sum(p0 * s), x0=xp.sum(p0 * f), z0=xp.sum(p0 * o),
                     pixel_m=A(dg.pixel_size_m), layer_step_m=step if is_scalar(step) else A(step))


def tile_frame(setup: Setup) -> TileFrame:
    """The :class:`TileFrame` of a setup (working dtype if float32, else the geometry dtype)."""
    t = setup.ctx if setup.ctx.dtype_name == "float32" else setup.gctx
    dg = setup.detector
    A = t.asarray
    keep = lambda v: v if is_scalar(v) else A(v)  # noqa: E731
    inc = A(setup.sources.incident)
    b_in, e_in = polarization_frame(t.xp, inc, A(dg.polar))
    xyz = lambda v: (v[:, 0], v[:, 1], v[:, 2])  # noqa: E731
    inc_g, dg_polar = setup.gctx.asarray(setup.sources.incident), setup.gctx.asarray(dg.polar)
    return TileFrame(
        ctx=t, pix0=A(dg.pix0_m), fdet=A(dg.fdet), sdet=A(dg.sdet), odet=A(dg.odet), beam=A(dg.beam),
        pixel_m=A(dg.pixel_size_m), close_m=A(dg.close_distance_m), distance_m=A(dg.distance_m),
        layer_step_m=keep(setup.thick.step), mu_per_m=keep(setup.mu_per_m),
        incident_xyz=xyz(inc), wavelength_m=A(setup.sources.wavelength_m),
        polar_frame_xyz=(xyz(b_in), xyz(e_in)), kahn=keep(setup.kahn), flat=flat_frame(setup),
        incident_g=inc_g, polar_be_g=setup.gctx.xp.stack(polarization_frame(setup.gctx.xp, inc_g, dg_polar), axis=1),
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


def _sub_pixel_geometry(setup: Setup, f_idx, s_idx):
    """Diffracted directions and per-path factors of a tile from explicit positions.

    Used by the running-sum path (``-oversample_*`` flags) and the trace.
    Vectors are separate x, y, z arrays of shape (P, T, S) (structure of
    arrays); solid angle and capture fraction are given for every path.
    Returns ``(dx, dy, dz), omega, capture`` (capture None without a sensor
    thickness).
    """
    fr = setup.frame
    g = fr.ctx
    xp = g.xp
    T = setup.thick.count
    o = _components(fr.odet)
    pos = sub_pixel_positions(setup, f_idx, s_idx)
    R = xp.sqrt(pos[0] * pos[0] + pos[1] * pos[1] + pos[2] * pos[2])
    d = tuple(c / R for c in pos)
    omega = solid_angle(xp, R, fr.pixel_m, fr.close_m, setup.point_pixel)
    cap = None
    if setup.thick.range > 0 or setup.oversample_thick:
        t = xp.reshape(g.arange(T), (1, T, 1))
        parallax = d[0] * o[0] + d[1] * o[1] + d[2] * o[2]
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


def _odd_grating(setup: Setup) -> bool:
    """Whether the square transform may use :func:`lattice.grating_odd` on every axis.

    For odd N the grating function U_(N-1)(cos pi h) is even in the cosine,
    so the sign (-1)^h0 drops out and no nearest index h0 is needed; with no
    structure-factor grid nothing else needs h0 either.
    """
    if setup.shape != "square" or setup.grid_w is not None:
        return False
    return all(lattice.is_unit_count(n) or (lattice.is_integral(n) and int(n) % 2 == 1
                                             and n <= lattice.CHEBYSHEV_MAX_N) for n in setup.N_w)


def _terms(setup: Setup, scat, orient):
    """|F_cell F_latt|^2 for every orientation and path (Q, ...), and F_latt."""
    return _terms_hkl(setup, _miller(setup, scat, orient))


def _terms_hkl(setup: Setup, hkl3):
    """|F_cell F_latt|^2 and F_latt from h, k, l (three arrays of one shape)."""
    xp = setup.ctx.xp
    h, k, l = hkl3
    N = setup.N_w
    if _odd_grating(setup):
        direct = setup.ctx.dtype_name == "float64" and setup.ctx.name != "numpy"
        Fl = None
        for x, n in ((h, N[0]), (k, N[1]), (l, N[2])):
            if not lattice.is_unit_count(n):
                f = lattice.grating_odd(xp, x, int(n), direct=direct)
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


class _FlatPaths:
    """The sub-pixel paths of a tile on a flat detector, as projections (see :class:`FlatFrame`).

    ``dot(V)`` is V . pos for every path of the tile, (M, T, S, P), for M
    vectors V (M, 3); ``norm2()`` is |pos|^2 and ``perp2(I)`` |pos x i|^2.
    Each is one broadcast addition of a per-row part and a per-column part
    (the layer part folded into the latter): one operation per path.  Pixels
    are the innermost axis (P = rows x columns of the tile, row order), so
    every operation runs over long contiguous loops whatever the
    oversampling.  ``dot_at`` / ``norm2_at`` give the same for the first
    sub-pixel of one layer, (M, P).  Everything is in the geometry dtype
    (float64 where the backend has it).
    """

    def __init__(self, setup: Setup, f_idx, s_idx):
        fl = setup.frame.flat
        g = setup.gctx
        xp = g.xp
        self.g = g
        os_ = setup.oversample
        sub = fl.pixel_m / os_
        j = g.arange(os_)
        # sub-pixel coordinates, sub-pixel index first: (os, R) and (os, C)
        self.ys = fl.y0 + (sub * (s_idx[None, :] * os_ + j[:, None]) + sub / 2.0)
        self.xs = fl.x0 + (sub * (f_idx[None, :] * os_ + j[:, None]) + sub / 2.0)
        T = setup.thick.count
        self.zs = fl.z0 + g.arange(T) * fl.layer_step_m if T > 1 else xp.reshape(fl.z0, (1,))
        self.frame = fl
        self.shape = (s_idx.shape[0], f_idx.shape[0], T, os_)

    def _coeffs(self, V):
        xp = self.g.xp
        fl = self.frame
        return xp.sum(V * fl.sdet, axis=-1), xp.sum(V * fl.fdet, axis=-1), xp.sum(V * fl.odet, axis=-1)

    def _rows(self, a):
        """(M, os, R) -> broadcastable (M, 1, os, 1, R, 1)."""
        R, C, T, os_ = self.shape
        return self.g.xp.reshape(a, (a.shape[0], 1, os_, 1, R, 1))

    def _cols(self, b, c):
        """(M, os, C) and (M, T) -> (M, T, 1, os, 1, C)."""
        xp = self.g.xp
        R, C, T, os_ = self.shape
        M = b.shape[0]
        return xp.reshape(b, (M, 1, 1, os_, 1, C)) + xp.reshape(c, (M, T, 1, 1, 1, 1))

    def _out(self, x):
        R, C, T, os_ = self.shape
        xp = self.g.xp
        x = xp.broadcast_to(x, (x.shape[0], T, os_, os_, R, C))
        return xp.reshape(x, (x.shape[0], T, os_ * os_, R * C))

    def _full(self, a, b, c):
        """a (M, os, R) + b (M, os, C) + c (M, T) over (M, T, S, P)."""
        return self._out(self._rows(a) + self._cols(b, c))

    def _first(self, a, b, c, t: int):
        xp = self.g.xp
        R, C, T, os_ = self.shape
        M = a.shape[0]
        A = xp.reshape(a[:, 0, :], (M, R, 1))
        B = xp.reshape(b[:, 0, :] + c[:, t:t + 1], (M, 1, C))
        return xp.reshape(A + B, (M, R * C))

    def _parts(self, V):
        cs, cf, co = self._coeffs(V)
        return cs[:, None, None] * self.ys, cf[:, None, None] * self.xs, co[:, None] * self.zs

    def dot(self, V):
        return self._full(*self._parts(V))

    def dot_at(self, V, t: int):
        return self._first(*self._parts(V), t)

    def _squares(self):
        return (self.ys * self.ys)[None, ...], (self.xs * self.xs)[None, ...], (self.zs * self.zs)[None, ...]

    def norm2(self):
        return self._full(*self._squares())[0, ...]

    def norm2_at(self, t: int):
        return self._first(*self._squares(), t)[0, :]

    def perp2(self, I):
        """|pos x i|^2 for unit vectors I (K, 3): (K, T, S, P), free of cancellation near i.

        In frame coordinates pos = (y, x, z) and i = (i_s, i_f, i_o), the cross
        product has components (x i_o - z i_f, z i_s - y i_o, y i_f - x i_s).
        When i has no slow component (known on the host) its square is
        y^2 (i_o^2 + i_f^2) + (x i_o - z i_f)^2, a row part plus a column part;
        otherwise each component is formed (one addition) and squared.
        """
        xp = self.g.xp
        cs, cf, co = self._coeffs(I)
        K = I.shape[0]
        R, C, T, os_ = self.shape
        k = lambda v: xp.reshape(v, (K, 1, 1, 1, 1, 1))  # noqa: E731
        X = xp.reshape(self.xs, (1, 1, 1, os_, 1, C))
        Z = xp.reshape(self.zs, (1, T, 1, 1, 1, 1))
        Y = xp.reshape(self.ys, (1, 1, os_, 1, R, 1))
        c1 = X * k(co) - Z * k(cf)                                  # no row part
        if _host_zero(cs):
            return self._out((Y * Y) * k(co * co + cf * cf) + c1 * c1)
        c2 = Z * k(cs) - Y * k(co)
        c3 = Y * k(cf) - X * k(cs)
        return self._out(c1 * c1 + c2 * c2 + c3 * c3)


class _ExplicitPaths:
    """The same interface as :class:`_FlatPaths` from explicit positions (curved detectors,
    frames that are not orthonormal)."""

    def __init__(self, setup: Setup, f_idx, s_idx):
        self.g = g = setup.gctx
        pos = sub_pixel_positions(setup, f_idx, s_idx)                     # x, y, z (P, T, S)
        self.pos = tuple(g.xp.permute_dims(g.asarray(c), (1, 2, 0)) for c in pos)   # (T, S, P)

    def _proj(self, V, pos):
        xp = self.g.xp
        shape = (V.shape[0],) + (1,) * pos[0].ndim
        return sum(xp.reshape(V[:, i], shape) * pos[i][None, ...] for i in range(3))

    def dot(self, V):
        return self._proj(V, self.pos)

    def dot_at(self, V, t: int):
        return self._proj(V, tuple(c[t, 0, :] for c in self.pos))

    def norm2(self):
        x, y, z = self.pos
        return x * x + y * y + z * z

    def norm2_at(self, t: int):
        x, y, z = (c[t, 0, :] for c in self.pos)
        return x * x + y * y + z * z

    def perp2(self, I):
        xp = self.g.xp
        x, y, z = (c[None, ...] for c in self.pos)
        k = lambda v: xp.reshape(v, (I.shape[0], 1, 1, 1))  # noqa: E731
        ix, iy, iz = k(I[:, 0]), k(I[:, 1]), k(I[:, 2])
        c1, c2, c3 = y * iz - z * iy, z * ix - x * iz, x * iy - y * ix
        return c1 * c1 + c2 * c2 + c3 * c3


def _host_zero(v) -> bool:
    """True when ``v`` is a plain NumPy array of zeros (never for arrays that may carry gradients)."""
    return isinstance(v, np.ndarray) and not np.any(v)


def _host_all_positive(v) -> bool:
    return isinstance(v, np.ndarray) and bool(np.all(v > 0))


def _tile_paths(setup: Setup, f_idx, s_idx):
    if setup.frame.flat is not None:
        return _FlatPaths(setup, f_idx, s_idx)
    return _ExplicitPaths(setup, f_idx, s_idx)


class _MillerTile:
    """h, k, l of every path of a tile for a block of orientations, in the geometry dtype.

    h = a . (pos / R - i) / lambda.  At low angles a . pos / R and a . i are
    both about |a| / lambda, large next to h, and forming h as their
    difference loses ~|a| / lambda ulps.  ``stable`` avoids that
    cancellation: with a_perp = a - (a . i) i and p_par = pos . i,

        R a . (pos / R - i) = a_perp . pos - (a . i) (R - p_par),

    where a_perp . pos is small near the beam and
    R - p_par = |pos x i|^2 / (R + p_par) (downstream of the sample; R - p_par
    itself upstream) cancels nothing.  What remains is the rounding of a_perp
    itself (nothing when the beam lies along a frame axis, at most a few
    ulp(|a| / lambda) otherwise, as for the reference's own formula; see
    tests/test_kernel_pieces.py).  A float32 image rounds h to float32,
    whose ulp is ~1e8 times that loss: there the shorter difference form
    (still evaluated in float64) is used.  Calling the object with (q0, q1)
    gives h, k, l, each (Qb, K, T, S, P).
    """

    def __init__(self, setup: Setup, paths, r, inv_r, stable: bool):
        g = setup.gctx
        gx = g.xp
        self.g, self.paths, self.stable = g, paths, stable
        self.K = K = setup.n_sources
        self.orient = g.asarray(setup.orientations_m)
        self.inc = inc = setup.frame.incident_g
        lam = g.asarray(setup.sources.wavelength_m)
        self.gap = None
        if stable:
            p_par = paths.dot(inc)                                               # (K, T, S, P)
            rho2 = paths.perp2(inc)
            if _host_all_positive(p_par):
                gap = rho2 / (r[None, ...] + p_par)
            else:
                ahead = p_par > 0
                den = gx.where(ahead, r[None, ...] + p_par, gx.ones_like(p_par))
                gap = gx.where(ahead, rho2 / den, r[None, ...] - p_par)          # R - p_par
            self.gap = gap[None, ...]
        if K == 1:  # 1/lambda folded into the projections
            self.w, self.lam_fold, self.inv_lam = inv_r[None, None, ...], lam[0], None
        else:
            self.inv_lam = 1.0 / lam
            self.w = gx.reshape(self.inv_lam, (1, K, 1, 1, 1)) * inv_r[None, None, ...]
            self.lam_fold = 1.0

    def __call__(self, q0: int, q1: int):
        gx, paths, K = self.g.xp, self.paths, self.K
        Vq = self.orient[q0:q1, ...]
        Qb = int(Vq.shape[0])
        Vq = gx.reshape(Vq, (Qb * 3, 3)) / self.lam_fold                    # rows a, b, c of each orientation
        c = gx.matmul(Vq, gx.permute_dims(self.inc, (1, 0)))                 # (Qb*3, K): a . i_k
        if self.stable:
            a_perp = Vq[:, None, :] - c[:, :, None] * self.inc[None, :, :]    # (Qb*3, K, 3)
            U = paths.dot(gx.reshape(a_perp, (Qb * 3 * K, 3)))
            U = gx.reshape(U, (Qb, 3, K) + tuple(U.shape[1:]))
            c = gx.reshape(c, (Qb, 3, K, 1, 1, 1))
            return tuple((U[:, i, ...] - c[:, i, ...] * self.gap) * self.w for i in range(3))
        U = paths.dot(Vq)
        U = gx.reshape(U, (Qb, 3, 1) + tuple(U.shape[1:]))
        c = gx.reshape(c, (Qb, 3, K, 1, 1, 1))
        if K > 1:
            c = c * gx.reshape(self.inv_lam, (1, 1, K, 1, 1, 1))
        return tuple(U[:, i, ...] * self.w - c[:, i, ...] for i in range(3))


def render_tile(setup: Setup, f_idx, s_idx, q_block: int):
    """Pixel values (P,) in the working dtype for the tile ``s_idx`` x ``f_idx`` (row order).

    The scattering geometry (path lengths, directions, h, k, l and the
    per-pixel factors) is evaluated in the geometry dtype; h, k, l are then
    rounded once to the working dtype, in which the lattice and
    structure-factor terms are evaluated and summed.  In float32 this keeps
    h, k, l as accurate as float32 can hold them: forming them in float32
    would lose several ulps to the cancellation in a . (d - i) / lambda.
    """
    ctx, g = setup.ctx, setup.gctx
    xp, gx = ctx.xp, g.xp
    P = s_idx.shape[0] * f_idx.shape[0]
    T, S, K = setup.thick.count, setup.oversample ** 2, setup.n_sources
    if setup.oversample_omega or setup.oversample_polar or setup.oversample_thick:
        d, omega, cap = _sub_pixel_geometry(setup, f_idx, s_idx)
        return _render_running(setup, d, omega, cap, P, T, S, K)
    fr = setup.frame
    paths = _tile_paths(setup, f_idx, s_idx)                  # arrays (..., T, S, P): pixels innermost
    r = gx.sqrt(paths.norm2())                                # (T, S, P)
    inv_r = 1.0 / r
    one_path = T * S == 1
    inv_r0 = gx.reshape(inv_r, (P,)) if one_path else 1.0 / gx.sqrt(paths.norm2_at(0))
    # cached per-pixel factors: solid angle of the first sub-pixel, capture
    # fraction of the last layer, polarization of the first path dmin keeps
    dg = setup.detector
    if setup.point_pixel:
        factor = inv_r0 * inv_r0
    else:
        pix, close = g.asarray(dg.pixel_size_m), g.asarray(dg.close_distance_m)
        factor = (pix * pix * close) * (inv_r0 * inv_r0) * inv_r0
    if setup.thick.range > 0:
        inv_rl = inv_r0 if T == 1 else 1.0 / gx.sqrt(paths.norm2_at(T - 1))
        parallax = paths.dot_at(gx.reshape(g.asarray(dg.odet), (1, 3)), T - 1)[0, :] * inv_rl
        step, mu = setup.thick.step, setup.mu_per_m
        step, mu = (v if is_scalar(v) else g.asarray(v) for v in (step, mu))
        factor = factor * capture_fraction(gx, float(T - 1), step, mu, parallax)
    inc_g, lam_g = fr.incident_g, g.asarray(setup.sources.wavelength_m)
    col = lambda v: gx.reshape(v, (K, 1, 1, 1))  # noqa: E731
    valid = None
    if setup.dmin_m > 0:   # the reference's test on the explicit scattering vector
        dc = paths.dot(g.asarray(np.eye(3))) * inv_r[None, ...]
        d = (dc[0, ...], dc[1, ...], dc[2, ...])
        scat = tuple((c - col(inc_g[:, i])) / col(lam_g) for i, c in enumerate(d))     # (K, T, S, P)
        stol2 = 0.25 * (scat[0] * scat[0] + scat[1] * scat[1] + scat[2] * scat[2])
        valid = ~(4.0 * setup.dmin_m ** 2 * stol2 > 1.0)  # dmin > 1 / (2 stol), stol > 0
    if setup.polarization_correction:
        be = fr.polar_be_g
        if valid is not None:   # the first path dmin keeps: every path's value is needed
            xyz = lambda v: tuple(col(v[:, i]) for i in range(3))  # noqa: E731
            polar = _polarization(setup, tuple(c[None, ...] for c in d), xyz(inc_g),
                                  (xyz(be[:, 0, :]), xyz(be[:, 1, :])), xp=gx)   # (K, T, S, P)
            path_order = lambda x: gx.permute_dims(x, (3, 1, 2, 0))  # noqa: E731  (P, T, S, K)
            polar = _first_kept(gx, path_order(polar), path_order(valid), P)
        else:                   # only the first path's
            unpolarised = _unpolarised(setup.kahn)
            V = inc_g[0:1, :] if unpolarised else gx.stack((inc_g[0, :], be[0, 1, :], be[0, 0, :]))
            proj = paths.dot_at(V, 0) * inv_r0
            c2t = proj[0, :]
            if unpolarised:
                polar = 0.5 * (1.0 + c2t * c2t)
            else:
                kahn = setup.kahn if is_scalar(setup.kahn) else g.asarray(setup.kahn)
                polar = kahn_from_projections(gx, c2t, proj[1, :], proj[2, :], kahn)
        factor = factor * polar
    stable = not (ctx.dtype_name == "float32" and g.dtype_name == "float64")
    miller = _MillerTile(setup, paths, r, inv_r, stable)
    Q = int(setup.orientations_m.shape[0])
    total = None
    for q0 in range(0, Q, q_block):  # blocks of orientations (only when memory demands)
        hkl = tuple(ctx.asarray(x) for x in miller(q0, q0 + q_block))     # (Qb, K, T, S, P) each
        terms, _ = _terms_hkl(setup, hkl)
        part = terms[0, ...] if terms.shape[0] == 1 else xp.sum(terms, axis=0)
        total = part if total is None else total + part                  # (K, T, S, P)
    if valid is not None:
        total = xp.where(ctx.asarray(valid, dtype=xp.bool), total, xp.zeros_like(total))
    total = total[0, ...] if K == 1 else xp.sum(total, axis=0)          # (T, S, P)
    I = xp.reshape(total, (P,)) if one_path else xp.sum(xp.reshape(total, (T * S, P)), axis=0)
    if setup.water_on:
        I = setup.I_bg_w + I
    return (setup.scale_w * ctx.asarray(factor)) * I


def _unpolarised(kahn) -> bool:
    return is_scalar(kahn) and kahn == 0



def _sources_last(xp, x):
    """(K, P, T, S) -> (P, T, S, K): the reference's path order (layer, sub-pixel, source)."""
    return xp.permute_dims(x, (1, 2, 3, 0))


def _polarization(setup: Setup, d, inc, frame, xp=None):
    """Kahn factor for diffracted components ``d`` and incident/frame components (broadcasting)."""
    kahn = setup.frame.kahn
    if xp is None:
        xp = setup.frame.ctx.xp
    elif not is_scalar(setup.kahn):
        kahn = setup.gctx.asarray(setup.kahn)
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
