"""Where the sub-pixel paths of a tile go: positions, directions, and projections onto vectors.

A path is one (sensor layer, sub-pixel) of one pixel.  On a flat detector
with an orthonormal frame the kernel never forms positions: every projection
is a per-row plus a per-column part (:class:`FlatPaths`).  Curved detectors
and frames that are not orthonormal use explicit positions
(:class:`ExplicitPaths`) through the same interface.
"""

from __future__ import annotations

import numpy as np

from .._backend import is_host_array
from ..geometry.vectors import rotate_axis
from ..physics.detector_response import capture_fraction, solid_angle
from .inputs import KernelInputs


def components(v):
    """x, y, z of a (3,) or (..., 3) array, as arrays."""
    return v[..., 0], v[..., 1], v[..., 2]


def sub_pixel_positions(k: KernelInputs, f_idx, s_idx):
    """Sub-pixel positions (m) of the tile ``s_idx`` (R,) x ``f_idx`` (C,) as x, y, z arrays (P, T, S).

    P = R * C pixels in row order, T sensor layers, S = oversample^2 sub-pixels
    (row-major over sub-slow, sub-fast).  Built by broadcasting a per-row and a
    per-column part; the curved detector then bends the flat positions.
    """
    setup = k.setup
    fr = k.frame
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
    p0, f, s, o = (components(v) for v in (fr.pix0, fr.fdet, fr.sdet, fr.odet))
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
        pos = list(components(rotate_axis(xp, tilted, fr.fdet, flat[..., 2] / fr.distance_m)))
    return pos


def sub_pixel_geometry(k: KernelInputs, f_idx, s_idx):
    """Diffracted directions and per-path factors of a tile from explicit positions.

    Used by the running-sum path (``-oversample_*`` flags) and the trace.
    Vectors are separate x, y, z arrays of shape (P, T, S) (structure of
    arrays); solid angle and capture fraction are given for every path.
    Returns ``(dx, dy, dz), omega, capture`` (capture None without a sensor
    thickness).
    """
    setup = k.setup
    fr = k.frame
    g = fr.ctx
    xp = g.xp
    T = setup.thick.count
    o = components(fr.odet)
    pos = sub_pixel_positions(k, f_idx, s_idx)
    R = xp.sqrt(pos[0] * pos[0] + pos[1] * pos[1] + pos[2] * pos[2])
    d = tuple(c / R for c in pos)
    omega = solid_angle(xp, R, fr.pixel_m, fr.close_m, setup.point_pixel)
    cap = None
    if setup.thick.range > 0 or setup.oversample_thick:
        t = xp.reshape(g.arange(T), (1, T, 1))
        parallax = d[0] * o[0] + d[1] * o[1] + d[2] * o[2]
        cap = capture_fraction(xp, t, fr.layer_step_m, fr.mu_per_m, parallax)
        if setup.sensor_present is not None:  # an array thickness of 0: no sensor factor, as for a plain 0
            cap = xp.where(g.asarray(setup.sensor_present, dtype=xp.bool), cap, xp.ones_like(cap))
    return d, omega, cap


def _host_zero(v) -> bool:
    """True when ``v`` is a plain NumPy array of zeros (never for arrays that may carry gradients)."""
    return is_host_array(v) and not np.any(v)


class FlatPaths:
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

    def __init__(self, k: KernelInputs, f_idx, s_idx):
        setup = k.setup
        fl = k.frame.flat
        g = k.gctx
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
        full = (x.shape[0], T, os_, os_, R, C)
        if tuple(x.shape) != full:   # (a full-shape sum stays the writable array it is)
            x = xp.broadcast_to(x, full)
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


class ExplicitPaths:
    """The same interface as :class:`FlatPaths` from explicit positions (curved detectors,
    frames that are not orthonormal)."""

    def __init__(self, k: KernelInputs, f_idx, s_idx):
        self.g = g = k.gctx
        pos = sub_pixel_positions(k, f_idx, s_idx)                     # x, y, z (P, T, S)
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


def tile_paths(k: KernelInputs, f_idx, s_idx):
    """The paths of a tile: projections on a flat orthonormal detector, explicit positions otherwise."""
    if k.frame.flat is not None:
        return FlatPaths(k, f_idx, s_idx)
    return ExplicitPaths(k, f_idx, s_idx)


def host_all_positive(v) -> bool:
    """True when ``v`` is a plain NumPy array of positive values (never for arrays that may carry gradients)."""
    return is_host_array(v) and bool(np.all(v > 0))


__all__ = ["components", "sub_pixel_positions", "sub_pixel_geometry", "FlatPaths", "ExplicitPaths",
           "tile_paths", "host_all_positive"]
